"""Transactions: what drivers receive, one user and one mailbox at a time, as in Dovecot.

A Dovecot mailbox transaction (or a mailbox operation) becomes one :class:`Transaction`.
Drivers see ``begin_txn``, then per message (or once for the mailbox) the events, then
``end_txn(success)``. A rolled-back transaction has no events and reaches drivers only as
``begin_txn``/``end_txn(False)``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import orjson

from push_notification.errors import EventError
from push_notification.events import (
    _UINT32_MAX,
    EVENT_ORDER,
    FAST_EVENT_BUILDERS,
    INT64_RANGE,
    Event,
    MessageEvent,
    event_from_dict,
    integer,
    shown,
    slot_builder,
    unfrozen_twin,
)

#: Where OX (and scripts following it) keep a user's push activation.
OX_METADATA_KEY = "/private/vendor/vendor.dovecot/http-notify"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


T = TypeVar("T")


class cached_property(Generic[T]):
    """functools.cached_property without its per-access lock (Python 3.11): the dispatcher
    reads these once per transaction per instance, on the hot path."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> T:
        if instance is None:
            return self  # type: ignore[return-value]
        value = instance.__dict__[self.name] = self.func(instance)
        return value


def new_transaction_id() -> str:
    """A stable id drivers may pass on as an idempotency key."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """The mail user a transaction belongs to, with the fields Dovecot's Lua user object has.

    ``extra`` keeps any further fields the sender knew (Dovecot's booleans such as
    ``anonymous``), so drivers that mirror Dovecot's API can expose them.
    """

    username: str
    service: str = ""
    session_id: str = ""
    home: str | None = None
    uid: int | None = None
    gid: int | None = None
    session_create_time: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"username": self.username}
        for key in ("service", "session_id", "home", "uid", "gid", "session_create_time"):
            value = getattr(self, key)
            if value not in (None, ""):
                data[key] = value
        data.update(self.extra)
        return data


#: The user fields with their own attribute, and their JSON type.
_USER_FIELDS: dict[str, type] = {
    "username": str, "service": str, "session_id": str, "home": str,
    "uid": int, "gid": int, "session_create_time": int,
}  # fmt: skip
_STATUS_FIELDS = ("messages", "recent", "unseen", "uidvalidity", "uidnext")


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """The transaction's mailbox after the change, as ``mailbox_get_status`` reports it."""

    messages: int
    recent: int
    unseen: int
    uidvalidity: int
    uidnext: int

    def to_dict(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in _STATUS_FIELDS}


@dataclass(frozen=True, slots=True)
class Message:
    """The events of one message within a transaction (Dovecot's ``process_msg`` unit)."""

    uid: int
    uid_validity: int
    events: tuple[MessageEvent, ...]


@dataclass(frozen=True, kw_only=True)
class Transaction:
    """One committed (or rolled-back) transaction of one user on one mailbox."""

    user: User
    mailbox: str
    events: tuple[Event, ...] = ()
    success: bool = True
    id: str = field(default_factory=new_transaction_id)
    #: Server METADATA the sender forwarded (key → value), e.g. :data:`OX_METADATA_KEY`.
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    #: The mailbox's status after the change, when the sender took a snapshot.
    status: MailboxStatus | None = None

    def __post_init__(self) -> None:
        _check_consistent(self)

    @cached_property
    def mailbox_events(self) -> tuple[Event, ...]:
        """Mailbox-level events (Dovecot's ``process_mbox`` unit)."""
        return tuple(e for e in self.events if not isinstance(e, MessageEvent))

    @cached_property
    def messages(self) -> tuple[Message, ...]:
        """Message events grouped by message (in order of first appearance), each message's
        events in Dovecot's event order."""
        groups: dict[tuple[int, int], list[MessageEvent]] = {}
        for event in self.events:
            if isinstance(event, MessageEvent):
                groups.setdefault((event.uid, event.uid_validity), []).append(event)
        return tuple(
            Message(uid, uidv, tuple(evs) if len(evs) == 1 else tuple(sorted(evs, key=_event_order)))
            for (uid, uidv), evs in groups.items()
        )

    @cached_property
    def hook_calls(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The hooks between ``begin_txn`` and ``end_txn``, in Dovecot's order, with arguments."""
        if not self.success:
            return ()
        events = self.events
        if len(events) == 1:  # the common case (one delivery, one flag change): no grouping
            event = events[0]
            if isinstance(event, MessageEvent):
                message = _new_message({"uid": event.uid, "uid_validity": event.uid_validity, "events": (event,)})
                return (("process_msg", (self, message)), (event.hook, (self, event)))
            return (("process_mbox", (self,)), (event.hook, (self, event)))
        calls: list[tuple[str, tuple[Any, ...]]] = []
        if self.mailbox_events:
            calls.append(("process_mbox", (self,)))
            calls.extend((event.hook, (self, event)) for event in self.mailbox_events)
        for message in self.messages:
            calls.append(("process_msg", (self, message)))
            calls.extend((event.hook, (self, event)) for event in message.events)
        return tuple(calls)

    @cached_property
    def json(self) -> str:
        """:meth:`to_dict` as compact JSON text: what durable queues store. A transaction read
        by :func:`transaction_from_json` keeps the text it came from, so it is not encoded twice."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form accepted by ``POST /v1/transactions`` (see ``transaction_from_dict``)."""
        data: dict[str, Any] = {
            "id": self.id,
            "user": self.user.to_dict(),
            "mailbox": self.mailbox,
            "success": self.success,
            "events": [event.to_dict() for event in self.events],
        }
        if self.metadata:
            data["metadata"] = dict(self.metadata)
        if self.status is not None:
            data["status"] = self.status.to_dict()
        return data


def _check_consistent(txn: Transaction) -> None:
    """What no field shows alone: a rollback has no events, and every event is in the mailbox."""
    if not txn.success and txn.events:
        raise EventError("a rolled-back transaction (success=false) cannot carry events")
    mailbox = txn.mailbox
    for event in txn.events:
        if event.mailbox != mailbox:
            raise EventError(
                f"{event.name}: mailbox {event.mailbox!r} differs from the transaction's"
                f" mailbox {mailbox!r}; send one transaction per mailbox"
            )


def _new_transaction(values: dict[str, Any]) -> Transaction:
    """``Transaction(**values)`` for the parser, whose values are checked and complete (every
    field given): the frozen dataclass ``__init__`` sets its fields one ``object.__setattr__``
    at a time; here the instance dict is filled at once, then the same consistency check runs."""
    txn = object.__new__(Transaction)
    txn.__dict__.update(values)
    _check_consistent(txn)
    return txn


_new_user = slot_builder(User)
_new_message = slot_builder(Message)
_new_status = slot_builder(MailboxStatus)


def _event_order(event: Event) -> int:
    return EVENT_ORDER[event.name]


_TXN_FIELDS = {"id", "user", "mailbox", "success", "events", "metadata", "status"}
#: Where a JSON text may hold a UTF-16 surrogate escape (the only way to a lone surrogate).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
#: The JSON values a user field outside the known ones may hold (Dovecot's are booleans).
_SCALARS = (str, int, float, bool, type(None))
# The exact types a JSON decoder gives: checked in one C call per container (``map(type, ...)``)
# before any value is looked at one by one in Python, which only a mistake then needs.
_SCALAR_TYPES = frozenset(_SCALARS)
_STR_ONLY = frozenset((str,))


_TOO_DEEP = "nested too deeply (a transaction is at most 4 levels deep)"
_SURROGATE_ERROR = EventError(
    "transaction: a string holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode; send UTF-8 text"
)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


#: Strict JSON: NaN and Infinity (which Python's json accepts) are refused.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def transaction_from_dict(data: Any, *, max_events: int | None = None) -> Transaction:
    """Validate the JSON form of a transaction; every mistake is one :class:`EventError` line.

    Strings that are not valid Unicode (a lone UTF-16 surrogate) are refused first, so no
    later step (error messages, logs, the queue's UTF-8 text) ever sees one. ``max_events``
    bounds the events of one transaction (the ingress passes ``ingress_max_events``).

    The form (the README's "The ingress" shows it with every field)::

        {"id": "optional stable id", "user": {"username": "alice", "service": "lmtp", ...},
         "mailbox": "INBOX", "success": true,
         "events": [{"name": "MessageNew", "uid": 1, "uid_validity": 1700000000, ...}],
         "metadata": {"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},
         "status": {"messages": 1, "recent": 1, "unseen": 1, "uidvalidity": 1700000000, "uidnext": 2}}
    """
    _refuse_surrogates(data)
    return _from_dict(data, max_events)


def _from_dict(data: Any, max_events: int | None) -> Transaction:
    txn = _fast_from_dict(data, max_events)
    return _checked_from_dict(data, max_events) if txn is None else txn


#: ``"events"`` left out (never changed).
_NO_EVENTS: list[Any] = []


def _fast_from_dict(data: Any, max_events: int | None) -> Transaction | None:
    """The transaction as Dovecot's bridge sends it, checked and built in one pass; None at the
    first value that is not exactly what the bridge sends: :func:`_checked_from_dict` then
    decides, and names the mistake (so this never needs an error message of its own)."""
    if type(data) is not dict or not data.keys() <= _TXN_FIELDS:
        return None
    get = data.get
    mailbox = get("mailbox")
    events_data = get("events", _NO_EVENTS)
    if type(mailbox) is not str or not mailbox or type(events_data) is not list:
        return None
    if max_events is not None and len(events_data) > max_events:
        return None
    events = []
    for item in events_data:
        name = item.get("name") if type(item) is dict else None
        build = FAST_EVENT_BUILDERS.get(name) if type(name) is str else None
        event = None if build is None else build(item, mailbox)  # in ``mailbox``: consistent
        if event is None:
            return None
        events.append(event)
    success = get("success", True)
    if success is not True and (success is not False or events):
        return None
    txn_id = get("id")
    if txn_id is None or (type(txn_id) is str and not txn_id):
        txn_id = new_transaction_id()
    elif type(txn_id) is not str or not _visible_ascii(txn_id):
        return None
    user = _fast_user(get("user"))
    status = get("status")
    if status is not None:
        status = _fast_status(status)
        if status is None:
            return None
    try:
        metadata = _metadata_from(get("metadata"))
    except EventError:
        return None
    if user is None:
        return None
    txn = object.__new__(Transaction)
    txn.__dict__.update(
        user=user, mailbox=mailbox, events=tuple(events), success=success, id=txn_id, metadata=metadata, status=status
    )
    return txn


_UnfrozenUser = unfrozen_twin(User)
_USER_KEYS = frozenset(_USER_FIELDS)
#: The values of further user fields taken without a look (a float: the checked way, as a JSON
#: decoder other than Python's may make one of a huge integer).
_PLAIN_EXTRA = frozenset((str, int, bool, type(None)))


def _fast_user(data: Any) -> User | None:
    """:func:`_user_from` for a user as the bridge sends it, or None where only it can tell."""
    if type(data) is str:
        data = {"username": data}
    elif type(data) is not dict:
        return None
    get = data.get
    user = object.__new__(_UnfrozenUser)
    user.username = username = get("username")
    user.service = service = get("service", "")
    user.session_id = session_id = get("session_id", "")
    user.home = home = get("home")
    if type(username) is not str or not username or not _STR_OR_NONE.issuperset(map(type, (service, session_id, home))):
        return None
    low, high = INT64_RANGE
    for key in ("uid", "gid", "session_create_time"):
        value = get(key)
        if value is not None and (type(value) is not int or not low <= value <= high):
            return None
    user.uid = get("uid")
    user.gid = get("gid")
    user.session_create_time = get("session_create_time")
    if data.keys() <= _USER_KEYS:
        user.extra = _EMPTY
    else:
        extra = {key: value for key, value in data.items() if key not in _USER_KEYS}
        if not _PLAIN_EXTRA.issuperset(map(type, extra.values())):
            return None
        user.extra = MappingProxyType(extra)
    user.__class__ = User
    return user  # type: ignore[no-any-return]


_UnfrozenStatus = unfrozen_twin(MailboxStatus)
_STATUS_KEYS = frozenset(_STATUS_FIELDS)
_INT_ONLY = frozenset((int,))
_STR_OR_NONE = frozenset((str, type(None)))


def _fast_status(data: Any) -> MailboxStatus | None:
    """:func:`_status_from` for a status as the bridge sends it, or None where only it can tell."""
    if type(data) is not dict or not data.keys() <= _STATUS_KEYS:
        return None  # further keys are ignored, but need the checked way's look at them
    try:
        values = (data["messages"], data["recent"], data["unseen"], data["uidvalidity"], data["uidnext"])
    except KeyError:
        return None
    if not _INT_ONLY.issuperset(map(type, values)) or min(values) < 0 or max(values) > _UINT32_MAX:
        return None
    status = object.__new__(_UnfrozenStatus)
    status.messages, status.recent, status.unseen, status.uidvalidity, status.uidnext = values
    status.__class__ = MailboxStatus
    return status  # type: ignore[no-any-return]


def _checked_from_dict(data: Any, max_events: int | None) -> Transaction:
    """Every check one at a time, in the order the sender's mistakes are reported."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise EventError(f"a transaction must be a JSON object, got {type(data).__name__}")
    if not _TXN_FIELDS.issuperset(data):
        unknown = set(data) - _TXN_FIELDS
        names = ", ".join(shown(name) for name in sorted(unknown)[:5])
        raise EventError(f"transaction: unknown field(s) {names} (fields: {', '.join(sorted(_TXN_FIELDS))})")
    mailbox = data.get("mailbox")
    if not isinstance(mailbox, str) or not mailbox:
        raise EventError("transaction: 'mailbox' must be a non-empty string such as \"INBOX\"")
    events_data = data.get("events", [])
    if not isinstance(events_data, list):
        raise EventError("transaction: 'events' must be a list of event objects")
    if max_events is not None and len(events_data) > max_events:
        raise EventError(
            f"transaction: {len(events_data)} events, more than the {max_events} allowed in one transaction"
            " (ingress_max_events); send them as several transactions"
        )
    events = []
    for i, item in enumerate(events_data, 1):
        try:
            events.append(event_from_dict(item, mailbox=mailbox))
        except EventError as exc:
            raise EventError(f"event {i}: {exc}") from None
    success = data.get("success", True)
    if not isinstance(success, bool):
        raise EventError("transaction: 'success' must be true or false")
    txn_id = data.get("id")
    if txn_id is None or txn_id == "":
        txn_id = new_transaction_id()
    elif not isinstance(txn_id, str) or not _visible_ascii(txn_id):
        raise EventError(
            f"transaction: 'id' must be 1 to 200 visible ASCII characters (no spaces or control characters),"
            f" got {shown(txn_id)}"
        )
    return _new_transaction(
        {
            "user": _user_from(data.get("user")),
            "mailbox": mailbox,
            "events": tuple(events),
            "success": success,
            "id": txn_id,
            "metadata": _metadata_from(data.get("metadata")),
            "status": _status_from(data.get("status")),
        }
    )


def _visible_ascii(txn_id: str) -> bool:
    """1 to 200 visible ASCII characters (0x21 to 0x7e), checked without a regex engine."""
    return 0 < len(txn_id) <= 200 and txn_id.isascii() and txn_id.isprintable() and " " not in txn_id


def transaction_from_json(text: str | bytes, *, max_events: int | None = None) -> Transaction:
    """Parse and validate one transaction's JSON text (UTF-8); invalid JSON is an
    :class:`EventError` too, including JSON nested deeper than Python can parse.

    When the text names its ``id`` it is kept as the transaction's :attr:`~Transaction.json`:
    it reads back as the same transaction. (Without an id, a new one is drawn, which the text
    does not hold.)
    """
    if type(text) is bytes or type(text) is str:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the checked way says why, as Python's json does
        else:
            txn = _fast_from_dict(data, max_events)
            if txn is not None:
                if data.get("id"):
                    txn.__dict__["json"] = text if isinstance(text, str) else text.decode()
                return txn
    return _checked_from_json(text, max_events)


# orjson decodes a text as Python's json does, at a third of the cost, except for texts the
# checked way refuses anyway or :func:`_fast_from_dict` never accepts: it refuses lone UTF-16
# surrogates (escaped or not), NaN, Infinity, numbers beyond a double (1e400), invalid UTF-8,
# and nesting past 1024 levels; it makes a float of an integer beyond 64 bits; it accepts
# nesting Python's json refuses for depth. The fast way accepts no float and no container
# deeper than a flag list. Whatever orjson refuses, or the fast way does not accept, goes the
# checked way below, with Python's own decoder and its error messages.
def _checked_from_json(text: str | bytes, max_events: int | None) -> Transaction:
    try:
        if isinstance(text, bytes):
            text = text.decode()  # strict: UTF-8 cannot carry a surrogate
        elif not text.isascii():
            text.encode()
        data = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise EventError("invalid JSON: the text is not UTF-8") from None
    except UnicodeEncodeError:
        raise _SURROGATE_ERROR from None
    except RecursionError:
        raise EventError(f"invalid JSON: {_TOO_DEEP}") from None
    except ValueError as exc:
        raise EventError(f"invalid JSON: {exc}") from None
    # A substring scan first: most texts hold no escape at all, and the regex costs more.
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        _refuse_surrogates(data)
    txn = _checked_from_dict(data, max_events)
    if isinstance(data, dict) and data.get("id"):
        txn.__dict__["json"] = text
    return txn


def _refuse_surrogates(data: Any) -> None:
    """An EventError if any string (key or value) holds a lone surrogate: such text cannot be
    encoded as UTF-8, so a queue, a log or an endpoint would fail on it later."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise _SURROGATE_ERROR from None
    except RecursionError:
        raise EventError(f"transaction: {_TOO_DEEP}") from None
    except (TypeError, ValueError):
        pass  # not JSON data at all: the checks that follow name the wrong type


def _user_from(data: Any) -> User:
    if isinstance(data, str):
        data = {"username": data}
    # As Dovecot sends it (a dict with a username string), no ABC check is needed.
    as_sent = type(data) is dict and type(data.get("username")) is str and data["username"]
    if not as_sent and (
        not isinstance(data, Mapping) or not isinstance(data.get("username"), str) or not data["username"]
    ):
        raise EventError("transaction: 'user' must be an object with a \"username\" string")
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    low, high = INT64_RANGE
    for key, value in data.items():
        kind = _USER_FIELDS.get(key)
        if kind is None:
            extra[key] = value
        elif value is None or (type(value) is kind is str) or (type(value) is kind is int and low <= value <= high):
            known[key] = value  # as Dovecot sends it: no conversion needed
        else:
            known[key] = _user_field(key, value)
    if extra and not _SCALAR_TYPES.issuperset(map(type, extra.values())):
        for key, value in extra.items():
            if not isinstance(value, _SCALARS):
                raise EventError(f"user field {shown(key)}: expected a string, number or boolean, got {shown(value)}")
    known["extra"] = MappingProxyType(extra) if extra else _EMPTY
    return _new_user(known)


def _user_field(key: str, value: Any) -> Any:
    """A user field of an unexpected type: an integral float is an integer (Lua numbers)."""
    if _USER_FIELDS[key] is int and not isinstance(value, str):
        return integer(f"user.{key}", value, *INT64_RANGE)
    expected = "an integer" if _USER_FIELDS[key] is int else "a string"
    raise EventError(f"user.{key}: expected {expected}, got {shown(value)}")


def _metadata_from(data: Any) -> Mapping[str, str]:
    if data is None:
        return _EMPTY
    if type(data) is dict and _STR_ONLY.issuperset(map(type, data)) and _STR_ONLY.issuperset(map(type, data.values())):
        return MappingProxyType(dict(data))
    if not isinstance(data, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise EventError("transaction: 'metadata' must map METADATA keys to string values")
    return MappingProxyType(dict(data))


def _status_from(data: Any) -> MailboxStatus | None:
    if data is None:
        return None
    if type(data) is not dict and not isinstance(data, Mapping):
        raise EventError("transaction: 'status' must be an object")
    values = {}
    for key in _STATUS_FIELDS:
        value = data.get(key)
        if type(value) is not int or not 0 <= value <= _UINT32_MAX:
            if isinstance(value, str):
                raise EventError(f"status.{key}: expected a non-negative integer, got {shown(value)}")
            value = integer(f"status.{key}", value, 0, _UINT32_MAX)
        values[key] = value
    return _new_status(values)
