"""The 12 RFC 5423 events Dovecot's push-notification framework provides, as typed values.

Field names follow Dovecot's Lua event tables (``uid_validity``, ``from_address``...), so a
driver author who knows Dovecot knows these. ``from`` is a Python keyword: the attribute
is ``from_``, the JSON key stays ``from``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from push_notification.errors import EventError, UnsupportedEventError, closest

#: System flags in Dovecot's bit order, the order every flag list is reported in.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
_FLAG_ORDER = {flag.lower(): (i, flag) for i, flag in enumerate(SYSTEM_FLAGS)}

UNSUPPORTED_EVENTS = {
    "Login": "authentication",
    "Logout": "authentication",
    "QuotaExceed": "the quota plugin",
    "QuotaWithin": "the quota plugin",
}

_UINT32_MAX = 0xFFFFFFFF
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)
#: A message's Date: years 1 to 9999, what every date library in a driver can represent.
_DATE_RANGE = (-62135596800, 253402300799)
#: A Date: header's zone offset in minutes (RFC 5322 allows +-9959).
_TZ_RANGE = (-5999, 5999)
#: An integer sent as text (``cli send`` passes fields as text): a sign and at most 20 digits.
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}")
_SHOWN_MAX = 60
T = TypeVar("T")


def shown(value: Any) -> str:
    """``value`` for an error message: its repr, one line, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else f"{text[: _SHOWN_MAX - 3]}..."


def canonical_flags(flags: Any, *, field: str = "flags") -> tuple[str, ...]:
    """System flags de-duplicated, spelled and ordered as Dovecot reports them."""
    if type(flags) is list and not flags:
        return ()  # most messages: nothing to look up
    if isinstance(flags, str):
        flags = flags.split()
    if not isinstance(flags, (list, tuple)):
        raise EventError(f'{field}: expected a list of flags such as ["\\\\Seen"], got {shown(flags)}')
    seen: dict[int, str] = {}
    for flag in flags:
        known = _FLAG_ORDER.get(flag.lower()) if isinstance(flag, str) else None
        if known is None:
            raise EventError(
                f"{field}: unknown system flag {shown(flag)} (use one of {' '.join(SYSTEM_FLAGS)};"
                " keywords go in the keywords field)"
            )
        seen[known[0]] = known[1]
    return tuple(seen[i] for i in sorted(seen))


def _keywords(value: Any, *, field: str) -> tuple[str, ...]:
    if type(value) is list and not value:
        return ()
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) for k in value):
        raise EventError(f"{field}: expected a list of keyword strings, got {shown(value)}")
    return tuple(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One RFC 5423 event inside a transaction. Every event names its mailbox (a UTF-8 vname)."""

    name: ClassVar[str]
    #: Name of the pluggy hook that receives this event (``message_new`` for MessageNew).
    hook: ClassVar[str]
    mailbox: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used on the ingress and in spool files."""
        data: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            data[_json_key(f.name)] = list(value) if isinstance(value, tuple) else value
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxEvent(Event):
    """An event about a whole mailbox (create, delete, rename, (un)subscribe)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEvent(Event):
    """An event about one message, identified by UID within the mailbox's UIDVALIDITY."""

    uid: int
    uid_validity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSaved(MessageEvent):
    """Fields of a saved message, as Dovecot's message fill collects them.

    ``from``, ``to`` and ``subject`` are raw header values (RFC 2047 encoded-words kept);
    the ``*_utf8``/address/display-name fields are decoded. ``None`` means unknown.
    ``date`` is the Date: header as UTC epoch, ``tz`` its offset in minutes.
    """

    from_: str | None = None
    to: str | None = None
    subject: str | None = None
    subject_utf8: str | None = None
    from_address: str | None = None
    from_display_name: str | None = None
    to_address: str | None = None
    to_display_name: str | None = None
    date: int | None = None
    tz: int | None = None
    snippet: str | None = None
    message_id: str | None = None
    flags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageNew(MessageSaved):
    """A message was delivered (LMTP/LDA, including Sieve fileinto) into the mailbox."""

    name: ClassVar[str] = "MessageNew"
    hook: ClassVar[str] = "message_new"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageAppend(MessageSaved):
    """A message was appended by a client (IMAP APPEND, COPY, MOVE, doveadm save)."""

    name: ClassVar[str] = "MessageAppend"
    hook: ClassVar[str] = "message_append"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageExpunge(MessageEvent):
    """A message was expunged."""

    name: ClassVar[str] = "MessageExpunge"
    hook: ClassVar[str] = "message_expunge"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRead(MessageEvent):
    r"""``\Seen`` was newly set on a message."""

    name: ClassVar[str] = "MessageRead"
    hook: ClassVar[str] = "message_read"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageTrash(MessageEvent):
    r"""``\Deleted`` was newly set on a message."""

    name: ClassVar[str] = "MessageTrash"
    hook: ClassVar[str] = "message_trash"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagsSet(MessageEvent):
    """Flags and keywords newly set on a message (either may be empty, as in Dovecot)."""

    name: ClassVar[str] = "FlagsSet"
    hook: ClassVar[str] = "flags_set"
    flags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagsClear(MessageEvent):
    """Flags and keywords cleared on a message, with everything it had before the change."""

    name: ClassVar[str] = "FlagsClear"
    hook: ClassVar[str] = "flags_clear"
    flags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    flags_old: tuple[str, ...] = ()
    keywords_old: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxCreate(MailboxEvent):
    """A mailbox was created (IMAP CREATE, autocreate)."""

    name: ClassVar[str] = "MailboxCreate"
    hook: ClassVar[str] = "mailbox_create"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxDelete(MailboxEvent):
    """A mailbox was deleted."""

    name: ClassVar[str] = "MailboxDelete"
    hook: ClassVar[str] = "mailbox_delete"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxRename(MailboxEvent):
    """A mailbox was renamed; ``mailbox`` is the new name, ``mailbox_old`` the old one."""

    name: ClassVar[str] = "MailboxRename"
    hook: ClassVar[str] = "mailbox_rename"
    mailbox_old: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxSubscribe(MailboxEvent):
    """A mailbox was subscribed to."""

    name: ClassVar[str] = "MailboxSubscribe"
    hook: ClassVar[str] = "mailbox_subscribe"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxUnsubscribe(MailboxEvent):
    """A mailbox was unsubscribed from."""

    name: ClassVar[str] = "MailboxUnsubscribe"
    hook: ClassVar[str] = "mailbox_unsubscribe"


#: Every supported event type by name, in Dovecot's registration order (which is also the
#: order in which events of one message reach drivers).
EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        FlagsClear,
        FlagsSet,
        MailboxCreate,
        MailboxDelete,
        MailboxRename,
        MailboxSubscribe,
        MailboxUnsubscribe,
        MessageAppend,
        MessageExpunge,
        MessageNew,
        MessageRead,
        MessageTrash,
    )
}
EVENT_ORDER = {name: i for i, name in enumerate(EVENT_TYPES)}
_BY_LOWER = {name.lower(): cls for name, cls in EVENT_TYPES.items()}


def slot_builder(cls: type[T]) -> Callable[[Mapping[str, Any]], T]:
    """A constructor for a frozen, slotted dataclass that takes already checked field values
    (attribute → value): what the parser builds every event and user with.

    The dataclass ``__init__`` of a frozen class goes through ``object.__setattr__`` (a name
    lookup in the class hierarchy) once per field; this sets each slot through its descriptor,
    worked out once per class. The object is the same as ``cls(**values)`` makes (no
    ``__post_init__`` runs: the classes built this way have none).
    """
    required: list[tuple[Callable[[Any, Any], None], str]] = []
    optional: list[tuple[Callable[[Any, Any], None], str, Any]] = []
    made: list[tuple[Callable[[Any, Any], None], str, Callable[[], Any]]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        setter = getattr(cls, f.name).__set__
        if f.default is not dataclasses.MISSING:
            optional.append((setter, f.name, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            made.append((setter, f.name, f.default_factory))
        else:
            required.append((setter, f.name))
    new = object.__new__

    def build(values: Mapping[str, Any]) -> T:
        obj = new(cls)
        for set_slot, attr in required:
            set_slot(obj, values[attr])
        get = values.get
        for set_slot, attr, default in optional:
            set_slot(obj, get(attr, default))
        for set_slot, attr, factory in made:
            set_slot(obj, values[attr] if attr in values else factory())
        return obj

    return build


def unfrozen_twin(cls: type) -> type[Any]:
    """A subclass of the frozen, slotted dataclass ``cls`` with the same slots, whose slots
    plain assignment sets: a fast builder fills a twin, then makes it a ``cls`` with
    ``obj.__class__ = cls`` (Python allows it: the layouts are the same).

    Setting a slot of ``cls`` itself takes a call of its descriptor (``object.__setattr__``
    or ``slot.__set__``), ten times what an assignment costs; the object that comes out is
    the one ``cls(**values)`` makes (no ``__post_init__`` runs: no class built so has one).
    """
    namespace = {"__slots__": (), "__setattr__": object.__setattr__, "__delattr__": object.__delattr__}
    return type(f"_Unfrozen{cls.__name__}", (cls,), namespace)


def _json_key(attr: str) -> str:
    return "from" if attr == "from_" else attr


def event_type(name: str) -> type[Event]:
    """The event class for ``name`` (case-insensitive, as Dovecot matches), or a clear error."""
    cls = _BY_LOWER.get(name.lower()) if isinstance(name, str) else None
    if cls is not None:
        return cls
    for unsupported, handler in UNSUPPORTED_EVENTS.items():
        if isinstance(name, str) and name.lower() == unsupported.lower():
            raise UnsupportedEventError(
                f"event {unsupported!r} is not supported by the notification framework"
                f" ({handler} handles it); supported events: {' '.join(EVENT_TYPES)}"
            )
    raise EventError(f"unknown event {shown(name)}{_near_miss(name)}; supported events: {' '.join(EVENT_TYPES)}")


def _near_miss(name: object) -> str:
    """`` (did you mean 'MessageNew'?)`` for a misspelt event name, else nothing. Only short
    names are compared: an event name is at most 18 characters, hostile input may be long."""
    if not isinstance(name, str) or len(name) > 40:
        return ""
    close = closest(name.lower(), _BY_LOWER)
    return f" (did you mean {_BY_LOWER[close].name!r}?)" if close else ""


# Field checks take the event's name and the field's key apart: "Event.field" is formatted
# only for an error message, not for every field of every event.
def integer(where: str, value: Any, low: int, high: int) -> int:
    """``value`` as an integer in ``low..high``: a JSON integer, an integral number or the text
    of one (``"42"``, at most 20 digits); anything else is one EventError line."""
    if type(value) is not int:
        if (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and _INTEGER_TEXT.fullmatch(value)
        ):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise EventError(f"{where}: expected an integer, got {shown(value)}")
    if not low <= value <= high:
        raise EventError(f"{where}: {shown(value)} is outside {low}..{high}")
    return value


def _check_uint(event: str, key: str, value: Any) -> int:
    if type(value) is int and 0 <= value <= _UINT32_MAX:
        return value
    return integer(f"{event}.{key}", value, 0, _UINT32_MAX)


def _check_date(event: str, key: str, value: Any) -> int:
    if type(value) is int and _DATE_RANGE[0] <= value <= _DATE_RANGE[1]:
        return value
    return integer(f"{event}.{key}", value, *_DATE_RANGE)


def _check_tz(event: str, key: str, value: Any) -> int:
    if type(value) is int and _TZ_RANGE[0] <= value <= _TZ_RANGE[1]:
        return value
    return integer(f"{event}.{key}", value, *_TZ_RANGE)


#: One flag as Dovecot's bridge spells it → its canonical one-flag tuple: most flag lists.
_ONE_FLAG = {flag: (flag,) for flag in SYSTEM_FLAGS}


def _known_one_flag(value: Any) -> tuple[str, ...] | None:
    """The canonical tuple of a one-system-flag list (the common case, no sorting), else None."""
    if type(value) is list and len(value) == 1:
        flag = value[0]
        if type(flag) is str:
            return _ONE_FLAG.get(flag)
    return None


def _check_flags(event: str, key: str, value: Any) -> tuple[str, ...]:
    known = _known_one_flag(value)
    if known is not None:
        return known
    return canonical_flags(value, field=f"{event}.{key}")


def _check_keywords(event: str, key: str, value: Any) -> tuple[str, ...]:
    return _keywords(value, field=f"{event}.{key}")


_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    "uid": _check_uint,
    "uid_validity": _check_uint,
    "date": _check_date,
    "tz": _check_tz,
    "flags": _check_flags,
    "flags_old": _check_flags,
    "keywords": _check_keywords,
    "keywords_old": _check_keywords,
}


@dataclasses.dataclass(frozen=True, slots=True)
class _Fields:
    """How one event type's JSON fields are checked, worked out once per type: the parser's
    loop then does one dict lookup per field, and checks a string field without a call."""

    cls: type[Event]
    #: Makes the event from checked values (see :func:`slot_builder`).
    build: Callable[[Mapping[str, Any]], Event]
    #: JSON key → (attribute, check); check None: a string, checked inline.
    by_key: dict[str, tuple[str, Callable[[str, str, Any], Any] | None]]
    #: ``(JSON key, attribute)`` of the fields without a default.
    required: tuple[tuple[str, str], ...]
    #: Their attributes, to check all at once.
    required_attrs: frozenset[str]


def _fields_of(cls: type[Event]) -> _Fields:
    by_key: dict[str, tuple[str, Callable[[str, str, Any], Any] | None]] = {}
    required = []
    for f in dataclasses.fields(cls):
        key = _json_key(f.name)
        by_key[key] = (f.name, _CHECKS.get(f.name))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append((key, f.name))
    return _Fields(cls, slot_builder(cls), by_key, tuple(required), frozenset(attr for _key, attr in required))


#: By the exact names Dovecot's bridge sends (other spellings go through :func:`event_type`).
_FIELDS = {name: _fields_of(cls) for name, cls in EVENT_TYPES.items()}


def event_from_dict(data: Mapping[str, Any], *, mailbox: str | None = None) -> Event:
    """Build an event from its JSON form, checking every field; ``mailbox`` fills a missing one.

    ``null`` is the same as leaving a field out: a default for an optional field, the
    "missing required field" error for a required one (``"uid": null`` can never be delivered).
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        raise EventError(f"an event must be a JSON object, got {type(data).__name__}")
    if "name" not in data:
        raise EventError('event has no \'name\' (e.g. "name": "MessageNew")')
    name = data["name"]
    fields = _FIELDS.get(name) if type(name) is str else None
    if fields is None:
        fields = _FIELDS[event_type(name).name]
    cls = fields.cls
    name = cls.name
    by_key = fields.by_key
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        spec = by_key.get(key)
        if spec is None:
            if key == "name":
                continue
            raise EventError(f"{name}: unknown field {shown(key)} (fields: {', '.join(by_key)})")
        if value is None:
            continue
        attr, check = spec
        if check is not None:
            kwargs[attr] = check(name, key, value)
        elif type(value) is str:
            kwargs[attr] = value
        else:
            raise EventError(f"{name}.{key}: expected a string, got {shown(value)}")
    if "mailbox" not in kwargs and mailbox is not None:
        kwargs["mailbox"] = mailbox
    if not fields.required_attrs <= kwargs.keys():
        missing = [key for key, attr in fields.required if attr not in kwargs]
        raise EventError(f"{name}: missing required field(s) {', '.join(missing)}")
    return fields.build(kwargs)


# -- Fast builders: an event as Dovecot's bridge sends it, without a call per field ------------
#
# For each event type, a function generated once (as dataclasses generate ``__init__``) checks
# the fields in straight-line code and fills an unfrozen twin. It only ever accepts: at the first
# value that is not exactly what the bridge sends (a float or text uid, an unknown field, an odd
# flag...) it answers None, and the transaction goes the checked way (:func:`event_from_dict`),
# which takes the same decisions and names the mistake. So a fast builder has no error message
# of its own to get wrong; tests/test_parse_equivalence.py compares both ways on generated input.

_STR_ONLY = frozenset((str,))


def _fast_flags(value: Any) -> tuple[str, ...] | None:
    """What :func:`canonical_flags` makes of a flag list, or None where it refuses it."""
    known = _known_one_flag(value)
    if known is not None:
        return known
    try:
        return canonical_flags(value)
    except EventError:
        return None


def _fast_keywords(value: Any) -> tuple[str, ...] | None:
    """What the keywords check makes of a keyword list, or None where it refuses it."""
    if type(value) is list and _STR_ONLY.issuperset(map(type, value)):
        return tuple(value)
    try:
        return _keywords(value, field="keywords")
    except EventError:
        return None


def _int_between(low: int, high: int) -> str:
    return f"if v is not None and (type(v) is not int or not {low} <= v <= {high}):\n    return None"


def _tuple_by(convert: str) -> str:
    return (
        "if v is None or type(v) is list and not v:\n    v = ()\n"
        f"else:\n    v = {convert}(v)\n    if v is None:\n        return None"
    )


#: Attribute → the lines that accept its value ``v`` (and convert it), or ``return None``.
_FAST_CHECKS = {
    # A transaction's events are all in its mailbox: one left out is in it.
    "mailbox": "if v is None:\n    v = mailbox\nelif type(v) is not str or v != mailbox:\n    return None",
    "uid": f"if type(v) is not int or not 0 <= v <= {_UINT32_MAX}:\n    return None",
    "uid_validity": f"if type(v) is not int or not 0 <= v <= {_UINT32_MAX}:\n    return None",
    "date": _int_between(*_DATE_RANGE),
    "tz": _int_between(*_TZ_RANGE),
    "flags": _tuple_by("flags"),
    "flags_old": _tuple_by("flags"),
    "keywords": _tuple_by("keywords"),
    "keywords_old": _tuple_by("keywords"),
}
_REQUIRED_STR = "if type(v) is not str:\n    return None"
_OPTIONAL_STR = "if v is not None and type(v) is not str:\n    return None"

FastEventBuilder = Callable[[dict[str, Any], str], "Event | None"]


def _fast_builder(cls: type[Event]) -> FastEventBuilder:
    """``build(data, mailbox)``: the ``cls`` event that ``data`` (a dict) describes in the
    transaction's ``mailbox``, or None where only the checked way can tell."""
    lines = ["def build(data, mailbox):", "    if not data.keys() <= keys:", "        return None"]
    lines += ["    get = data.get", "    obj = new(twin)"]
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        check = _FAST_CHECKS.get(f.name, _REQUIRED_STR if required else _OPTIONAL_STR)
        lines.append(f"    v = get({_json_key(f.name)!r})")
        lines += [f"    {line}" for line in check.splitlines()]
        lines.append(f"    obj.{f.name} = v")
    lines += ["    obj.__class__ = cls", "    return obj"]
    keys = frozenset(["name", *(_json_key(f.name) for f in dataclasses.fields(cls))])
    namespace: dict[str, Any] = {"keys": keys, "new": object.__new__, "twin": unfrozen_twin(cls), "cls": cls}
    namespace.update(flags=_fast_flags, keywords=_fast_keywords)
    exec("\n".join(lines), namespace)  # the lines above, nothing from outside
    build: FastEventBuilder = namespace["build"]
    return build


#: By the exact name Dovecot's bridge sends.
FAST_EVENT_BUILDERS: dict[str, FastEventBuilder] = {name: _fast_builder(cls) for name, cls in EVENT_TYPES.items()}
