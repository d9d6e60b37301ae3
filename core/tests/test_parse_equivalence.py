"""The fast parser accepts and refuses exactly what the parser before it did, with the same text.

``transaction_from_json`` was made cheaper twice: first events, users and transactions built
without a per-field ``object.__setattr__``, type checks by ``type(x) is dict`` before the ABC
check, a one-flag shortcut; then a fast way in front of the checked one: orjson decodes, and
generated builders accept a transaction as the bridge sends it in one pass (anything else goes
the checked way, with Python's json). Below is a frozen copy of the parser before both changes:
the old ``event_from_dict``, ``_from_dict``, ``_user_from``, ``_status_from`` and
``transaction_from_json``, building through the dataclass constructors and decoding with Python's
json; the helpers it left alone are imported. Hypothesis then compares both over bridge-shaped
and hostile input, texts where orjson and Python's json part ways included: the same
transaction, or the same error.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from push_notification import events as ev
from push_notification import transaction as tx
from push_notification.errors import EventError
from push_notification.events import EVENT_TYPES, SYSTEM_FLAGS, Event, canonical_flags, event_type, integer, shown
from push_notification.transaction import MailboxStatus, Transaction, User, transaction_from_json

# -- the frozen copy (as of the commit before the fast path) ----------------------------------

_OLD_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    **ev._CHECKS,
    "flags": lambda event, key, value: canonical_flags(value, field=f"{event}.{key}"),
    "flags_old": lambda event, key, value: canonical_flags(value, field=f"{event}.{key}"),
}


def _old_fields_of(cls: type[Event]) -> tuple[type[Event], dict[str, Any], tuple[tuple[str, str], ...]]:
    by_key: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        key = "from" if f.name == "from_" else f.name
        by_key[key] = (f.name, _OLD_CHECKS.get(f.name))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append((key, f.name))
    return cls, by_key, tuple(required)


_OLD_FIELDS = {name: _old_fields_of(cls) for name, cls in EVENT_TYPES.items()}


def old_event_from_dict(data: Any, *, mailbox: str | None = None) -> Event:
    if not isinstance(data, Mapping):
        raise EventError(f"an event must be a JSON object, got {type(data).__name__}")
    if "name" not in data:
        raise EventError('event has no \'name\' (e.g. "name": "MessageNew")')
    name = data["name"]
    fields = _OLD_FIELDS.get(name) if type(name) is str else None
    if fields is None:
        fields = _OLD_FIELDS[event_type(name).name]
    cls, by_key, required = fields
    name = cls.name
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
    for _key, attr in required:
        if attr not in kwargs:
            missing = [key for key, attr in required if attr not in kwargs]
            raise EventError(f"{name}: missing required field(s) {', '.join(missing)}")
    return cls(**kwargs)


def old_from_dict(data: Any, max_events: int | None) -> Transaction:
    if not isinstance(data, Mapping):
        raise EventError(f"a transaction must be a JSON object, got {type(data).__name__}")
    if not tx._TXN_FIELDS.issuperset(data):
        unknown = set(data) - tx._TXN_FIELDS
        names = ", ".join(shown(name) for name in sorted(unknown)[:5])
        raise EventError(f"transaction: unknown field(s) {names} (fields: {', '.join(sorted(tx._TXN_FIELDS))})")
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
            events.append(old_event_from_dict(item, mailbox=mailbox))
        except EventError as exc:
            raise EventError(f"event {i}: {exc}") from None
    success = data.get("success", True)
    if not isinstance(success, bool):
        raise EventError("transaction: 'success' must be true or false")
    txn_id = data.get("id")
    if txn_id is None or txn_id == "":
        txn_id = tx.new_transaction_id()
    elif not isinstance(txn_id, str) or not tx._visible_ascii(txn_id):
        raise EventError(
            f"transaction: 'id' must be 1 to 200 visible ASCII characters (no spaces or control characters),"
            f" got {shown(txn_id)}"
        )
    return Transaction(
        id=txn_id,
        user=old_user_from(data.get("user")),
        mailbox=mailbox,
        events=tuple(events),
        success=success,
        metadata=tx._metadata_from(data.get("metadata")),
        status=old_status_from(data.get("status")),
    )


def old_user_from(data: Any) -> User:
    if isinstance(data, str):
        data = {"username": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("username"), str) or not data["username"]:
        raise EventError("transaction: 'user' must be an object with a \"username\" string")
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    low, high = ev.INT64_RANGE
    for key, value in data.items():
        kind = tx._USER_FIELDS.get(key)
        if kind is None:
            extra[key] = value
        elif value is None or (type(value) is kind is str) or (type(value) is kind is int and low <= value <= high):
            known[key] = value
        else:
            known[key] = tx._user_field(key, value)
    if extra and not tx._SCALAR_TYPES.issuperset(map(type, extra.values())):
        for key, value in extra.items():
            if not isinstance(value, tx._SCALARS):
                raise EventError(f"user field {shown(key)}: expected a string, number or boolean, got {shown(value)}")
    return User(**known, extra=MappingProxyType(extra) if extra else tx._EMPTY)


def old_status_from(data: Any) -> MailboxStatus | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise EventError("transaction: 'status' must be an object")
    values = []
    for key in tx._STATUS_FIELDS:
        value = data.get(key)
        if type(value) is not int or not 0 <= value <= ev._UINT32_MAX:
            if isinstance(value, str):
                raise EventError(f"status.{key}: expected a non-negative integer, got {shown(value)}")
            value = integer(f"status.{key}", value, 0, ev._UINT32_MAX)
        values.append(value)
    return MailboxStatus(*values)


def old_transaction_from_json(text: str | bytes, *, max_events: int | None = None) -> Transaction:
    try:
        if isinstance(text, bytes):
            text = text.decode()
        elif not text.isascii():
            text.encode()
        data = tx._DECODER.decode(text)
    except UnicodeDecodeError:
        raise EventError("invalid JSON: the text is not UTF-8") from None
    except UnicodeEncodeError:
        raise tx._SURROGATE_ERROR from None
    except RecursionError:
        raise EventError(f"invalid JSON: {tx._TOO_DEEP}") from None
    except ValueError as exc:
        raise EventError(f"invalid JSON: {exc}") from None
    if tx._SURROGATE_ESCAPE.search(text) is not None:
        tx._refuse_surrogates(data)
    txn = old_from_dict(data, max_events)
    if isinstance(data, dict) and data.get("id"):
        txn.__dict__["json"] = text
    return txn


# -- the comparison --------------------------------------------------------------------------


def outcome(parse: Callable[..., Transaction], text: str | bytes, max_events: int | None) -> tuple[Any, ...]:
    """What a parser made of ``text``: the error's type and text, or the transaction (a drawn id
    left out: each parse draws its own) with the JSON text it kept."""
    try:
        txn = parse(text, max_events=max_events)
    except EventError as exc:
        return ("refused", type(exc).__name__, str(exc))
    fields = {f.name: getattr(txn, f.name) for f in dataclasses.fields(txn)}
    if "json" not in txn.__dict__:
        fields.pop("id")
    events = tuple((type(e), {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}) for e in txn.events)
    return ("accepted", fields, events, type(txn.user), txn.__dict__.get("json"))


def assert_same(text: str | bytes, max_events: int | None = None) -> None:
    assert outcome(transaction_from_json, text, max_events) == outcome(old_transaction_from_json, text, max_events)


def assert_same_as_text_and_bytes(text: str, max_events: int | None = None) -> None:
    """Both parsers given ``text`` as str, then as UTF-8 bytes (what the spool and ingress read)."""
    assert_same(text, max_events)
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: str only
        assert_same(text.encode(), max_events)


_FLAG_SPELLINGS = [*SYSTEM_FLAGS, "\\seen", "\\SEEN", "\\Unknown", "$Forwarded", "", 7]
#: Values that go wrong in every way a field can: types, ranges, surrogates, NaN, huge numbers.
_HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.sampled_from([0, 1, 0xFFFFFFFF, 0x100000000, -1, 1 << 63, 253402300800, 5999, 6000, 2.0, 2.5, math.inf]),
    st.sampled_from(["42", "-7", "1" * 21, "x", "", "\ud800", "INBOX", "\\Seen"]),
    st.text(max_size=8),
    st.lists(st.sampled_from(_FLAG_SPELLINGS), max_size=4),
    st.dictionaries(st.sampled_from(["a", "uid"]), st.integers(), max_size=2),
)


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = _HOSTILE, *, odds: int = 8
) -> st.SearchStrategy[Any]:
    """``good``, and ``bad`` one time in ``odds``: most generated input is accepted, so both
    builders are compared, not only both error paths."""
    # A middle value: hypothesis draws the ends of a range more often than the rest.
    return st.integers(0, odds - 1).flatmap(lambda i: bad if i == odds // 2 else good)


def _field_value(key: str) -> st.SearchStrategy[Any]:
    good: dict[str, st.SearchStrategy[Any]] = {
        "uid": st.integers(min_value=0, max_value=0xFFFFFFFF),
        "uid_validity": st.integers(min_value=0, max_value=0xFFFFFFFF),
        "date": st.integers(min_value=0, max_value=2_000_000_000),
        "tz": st.integers(min_value=-720, max_value=840),
        "flags": st.one_of(  # one flag as the bridge spells it is the shortcut's case
            st.lists(st.sampled_from(SYSTEM_FLAGS), min_size=1, max_size=1),
            st.lists(st.sampled_from(_FLAG_SPELLINGS[:9]), max_size=3),
        ),
        "flags_old": st.lists(st.sampled_from(_FLAG_SPELLINGS[:9]), max_size=3),
        "keywords": st.lists(st.sampled_from(["$Forwarded", "$Junk", "work"]), max_size=2),
        "keywords_old": st.lists(st.sampled_from(["$Forwarded", "$Junk"]), max_size=2),
        "mailbox": st.sampled_from(["INBOX", "Sent", "INBOX"]),
    }
    return good.get(key, st.text(max_size=12))


_OMIT = object()


@st.composite
def bridge_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event as the bridge sends it, now and then with a field left out, wrong, or unknown."""
    name = draw(mostly(st.sampled_from([*EVENT_TYPES, "messagenew"]), st.sampled_from(["Login", "Nope", 3, [], None])))
    cls = EVENT_TYPES[name] if isinstance(name, str) and name in EVENT_TYPES else EVENT_TYPES["MessageNew"]
    event: dict[str, Any] = {"name": name}
    for f in dataclasses.fields(cls):
        key = "from" if f.name == "from_" else f.name
        value = draw(mostly(_field_value(key), st.one_of(st.just(_OMIT), _HOSTILE), odds=40))
        if value is not _OMIT:
            event[key] = value
    if draw(st.integers(0, 7)) == 3:
        event["bogus"] = draw(_HOSTILE)
    return event


@st.composite
def bridge_transactions(draw: st.DrawFn) -> Any:
    user = draw(
        mostly(
            st.fixed_dictionaries(
                {"username": mostly(st.just("alice"), st.sampled_from(["", "\ud800x"]))},
                optional={
                    "service": mostly(st.just("lmtp")),
                    "uid": mostly(st.integers(0, 65535)),
                    "session_create_time": mostly(st.integers(0, 1 << 40)),
                    "anonymous": mostly(st.booleans()),
                    "quota": mostly(st.sampled_from([None, "1G", 3, 1.5, 1 << 70])),
                    "home": mostly(st.just("/home/alice")),
                },
            )
        )
    )
    txn: dict[str, Any] = {
        "user": user,
        "mailbox": draw(mostly(st.just("INBOX"))),
        "events": draw(mostly(st.lists(bridge_events(), min_size=1, max_size=4) | st.just([]))),
    }
    optional = {
        "id": mostly(st.sampled_from(["abc123", "abc123", "has space", "x" * 201])),
        "success": mostly(st.booleans()),
        "metadata": mostly(st.just({"/private/k": "v"})),
        "status": mostly(
            st.fixed_dictionaries(
                {k: mostly(st.integers(0, 9)) for k in tx._STATUS_FIELDS},
                optional={"highestmodseq": _HOSTILE},  # ignored by the checked way
            )
        ),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        txn[key] = draw(optional[key])
    if draw(st.integers(0, 7)) == 3:
        txn["extra_field"] = draw(_HOSTILE)
    return draw(mostly(st.just(txn)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(txn=bridge_transactions(), ascii_only=st.booleans(), max_events=st.sampled_from([None, 2]))
def test_generated_bridge_json_gets_the_same_answer(txn: Any, ascii_only: bool, max_events: int | None) -> None:
    assert_same_as_text_and_bytes(json.dumps(txn, ensure_ascii=ascii_only, allow_nan=True), max_events)


def old_transaction_from_dict(data: Any, *, max_events: int | None = None) -> Transaction:
    tx._refuse_surrogates(data)
    return old_from_dict(data, max_events)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(txn=bridge_transactions(), max_events=st.sampled_from([None, 2]))
def test_generated_python_data_gets_the_same_answer(txn: Any, max_events: int | None) -> None:
    """``transaction_from_dict`` (``cli send``, the storm store) takes the same fast way."""
    assert outcome(tx.transaction_from_dict, txn, max_events) == outcome(old_transaction_from_dict, txn, max_events)


#: JSON tokens where orjson and Python's json part ways (or could): integers beyond 64 bits,
#: numbers beyond a double, integral floats, NaN and Infinity, lone and paired surrogate escapes,
#: duplicate keys, nesting, control characters.
_RAW_TOKENS = [
    "1" + "0" * 20,
    "-" + "9" * 19,
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1e400",
    "-1e400",
    "1e-400",
    "1E2",
    "1.0",
    "-0",
    "0.0",
    "NaN",
    "-Infinity",
    '"\\ud800"',
    '"\\udc00x"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"a\x7f"',
    '"\\u00e9"',
    '{"a":1,"a":2}',
    '["\\\\Seen","\\\\Seen"]',
    "[" * 900 + "]" * 900,
    "[" * 1100 + "]" * 1100,
    "true",
    "null",
    '""',
    "[]",
    "{}",
]
_PLACE = "@raw@"


@st.composite
def texts_with_a_raw_token(draw: st.DrawFn) -> str:
    """A bridge transaction's text with one value (anywhere) replaced by a raw JSON token."""
    txn = draw(st.one_of(bridge_transactions(), st.sampled_from(_GOOD).map(copy.deepcopy)))
    if not isinstance(txn, dict):
        return json.dumps(txn)
    holders: list[Any] = [txn]
    for value in txn.values():
        if isinstance(value, dict):
            holders.append(value)
        elif isinstance(value, list):
            holders.extend(item for item in value if isinstance(item, dict))
    holder = draw(st.sampled_from(holders))
    key = draw(st.sampled_from([*holder, "uid", "unknown"]))
    holder[key] = _PLACE
    return json.dumps(txn, ensure_ascii=False, allow_nan=True).replace(
        f'"{_PLACE}"', draw(st.sampled_from(_RAW_TOKENS))
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts_with_a_raw_token())
def test_raw_tokens_where_decoders_differ_get_the_same_answer(text: str) -> None:
    assert_same_as_text_and_bytes(text)


#: Characters a one-character edit puts into a good text: JSON's syntax, whitespace Python's json
#: refuses (form feed), a BOM, control characters, digits and letters of numbers and literals.
_EDITS = ' \t\n\r\x0c\x00\x1f\x7f\ufeff{}[],:"\\/0123456789.eE+-nultrfaINxé'


@st.composite
def edited_texts(draw: st.DrawFn) -> str:
    """A good bridge transaction's text with a character inserted, replaced or deleted."""
    base = draw(st.sampled_from(_HOSTILE_TEXTS[:1] + [json.dumps(t) for t in _GOOD]))
    at = draw(st.integers(0, len(base)))
    char = draw(st.sampled_from(_EDITS))
    how = draw(st.sampled_from(["insert", "replace", "delete"]))
    if how == "insert":
        return base[:at] + char + base[at:]
    if how == "replace":
        return base[:at] + char + base[at + 1 :]
    return base[:at] + base[at + 1 :]


@settings(max_examples=300, deadline=None)
@given(text=edited_texts())
def test_edited_texts_get_the_same_answer(text: str) -> None:
    assert_same_as_text_and_bytes(text)


#: Bridge-shaped transactions the fast way accepts (the edits above start from these).
_GOOD: list[dict[str, Any]] = [
    {
        "id": "6f1c2b0e",
        "user": {"username": "alice", "service": "lmtp", "session_id": "<x>", "home": "/h", "uid": 5, "admin": False},
        "mailbox": "INBOX",
        "success": True,
        "events": [
            {"name": "MessageNew", "mailbox": "INBOX", "uid": 7, "uid_validity": 9, "date": 17, "tz": -60},
            {"name": "FlagsClear", "uid": 8, "uid_validity": 9, "flags": ["\\Seen"], "keywords_old": ["$J"]},
        ],
        "metadata": {"/private/k": "v"},
        "status": {"messages": 1, "recent": 0, "unseen": 1, "uidvalidity": 9, "uidnext": 10},
    },
    {"user": "bob", "mailbox": "Sent", "events": [{"name": "MailboxRename", "mailbox_old": "Old"}]},
    {"id": "r1", "user": {"username": "carol"}, "mailbox": "INBOX", "success": False},
]


def test_the_good_transactions_take_the_fast_way() -> None:
    """Else the edits above would only compare the checked way with its own copy."""
    for good in _GOOD:
        assert tx._fast_from_dict(good, None) is not None
        assert_same(json.dumps(good))


#: Hand-picked hostile texts: each decoder corner the brief names, once.
_HOSTILE_TEXTS: list[str | bytes] = [
    json.dumps(
        {
            "id": "6f1c2b0e",
            "user": {"username": "alice", "service": "lmtp", "uid": 5000, "session_create_time": 1, "admin": False},
            "mailbox": "INBOX",
            "events": [
                {
                    "name": "MessageNew",
                    "uid": 7,
                    "uid_validity": 9,
                    "from": "=?UTF-8?Q?B?= <b@x>",
                    "subject_utf8": "Grüße",
                    "date": 1764540123,
                    "tz": 60,
                    "flags": ["\\Recent"],
                    "keywords": ["$Forwarded"],
                },
                {"name": "FlagsSet", "uid": 7, "uid_validity": 9, "flags": ["\\Seen"]},
                {"name": "FlagsClear", "uid": 8, "uid_validity": 9, "flags": ["\\seen", "\\Flagged"], "flags_old": []},
            ],
            "metadata": {"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},
            "status": {"messages": 12, "recent": 1, "unseen": 3, "uidvalidity": 9, "uidnext": 4712},
        },
        ensure_ascii=False,
    ),
    '{"user":"a","mailbox":"INBOX","events":[{"name":"MessageNew","uid":1,"uid_validity":2,"from":"\\ud800"}]}',
    '{"user":"a","mailbox":"INBOX","events":[{"name":"MessageNew","uid":1' + "0" * 400 + ',"uid_validity":2}]}',
    '{"user":"a","mailbox":"INBOX","status":{"messages":NaN}}',
    '{"user":"a","mailbox":"INBOX","status":{"messages":Infinity}}',
    '{"user":"a","user":"b","mailbox":"INBOX","mailbox":"Sent"}',
    '{"user":"a","mailbox":"INBOX","events":[{"name":"FlagsSet","uid":1,"uid":2,"uid_validity":3}]}',
    '{"user":"a","mailbox":"INBOX","metadata":' + "[" * 5000 + "]" * 5000 + "}",
    "[" * 100_000 + "]" * 100_000,
    b'{"user":"\xff","mailbox":"INBOX"}',
    b'{"user":"a","mailbox":"INBOX\xc3"}',
    '{"user":"a","mailbox":"INBOX"',
    "",
    "null",
    '{"user":"a","mailbox":"INBOX","events":[{"name":"MessageNew","uid":1.0,"uid_validity":"2","date":1e3}]}',
    '{"user":"a","mailbox":"INBOX","events":[{"name":"MailboxRename","mailbox":"Old"}]}',
    '{"user":"a","mailbox":"INBOX","success":false,"events":[{"name":"MailboxCreate"}]}',
    '{"id":"k1","user":{"username":"a","uid":1e300},"mailbox":"INBOX"}',
    '{"id":"k1","user":{"username":"a","extra":{"x":1}},"mailbox":"INBOX"}',
]


@settings(max_examples=40, deadline=None)
@given(
    text=st.one_of(
        st.sampled_from(_HOSTILE_TEXTS),
        st.binary(max_size=40),
        st.text(max_size=40),
        st.sampled_from(_HOSTILE_TEXTS[:6]).flatmap(
            lambda t: st.integers(0, len(t)).map(lambda cut: t[:cut])  # every truncation
        ),
    )
)
def test_hostile_text_gets_the_same_answer(text: str | bytes) -> None:
    assert_same(text)


def test_every_hand_picked_hostile_text_gets_the_same_answer() -> None:
    for text in _HOSTILE_TEXTS:
        assert_same(text)
