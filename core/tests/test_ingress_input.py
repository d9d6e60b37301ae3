"""The ingress takes anything a client can send: a transaction it can deliver is accepted
(202), anything else is a 4xx with a one-line JSON reason. Never a 500, never a traceback,
never a transaction that fails later because of what it holds."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from push_notification.events import EVENT_TYPES
from push_notification.queue import MemoryQueue
from push_notification.server.connections import IngressServer
from push_notification.server.ingress import Ingress, IngressLimits
from push_notification.transaction import Transaction, transaction_from_json

TOKEN = "t0ps3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = {"user": "alice", "mailbox": "INBOX", "events": [{"name": "MessageNew", "uid": 1, "uid_validity": 7}]}


class Client:
    """The ingress as the daemon runs it, on a loopback port, with what it accepted."""

    def __init__(self, accepted: list[Transaction], health: dict[str, Any] | None = None, **limits: Any) -> None:
        chosen = IngressLimits(**limits)
        app = Ingress(_Recording(accepted), token=TOKEN, health=lambda: dict(health or {}), limits=chosen)
        self.server = IngressServer(app, chosen)
        self.accepted = accepted
        self.port = 0
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        await self.server.start(("127.0.0.1", 0))
        self.port = int(self.server.bound[0].rpartition(":")[2])
        self.session = aiohttp.ClientSession(f"http://127.0.0.1:{self.port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()
        await self.server.close()

    def get(self, path: str, **kwargs: Any) -> Any:
        assert self.session is not None
        return self.session.get(path, **kwargs)

    async def post(self, body: bytes | str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        assert self.session is not None
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        async with self.session.post("/v1/transactions", data=data, headers=headers or AUTH) as response:
            text = await response.text()
            return response.status, json.loads(text)


class _Recording(MemoryQueue):
    """The memory queue, noting what the ingress put into it."""

    def __init__(self, accepted: list[Transaction]) -> None:
        super().__init__(100_000)
        self.accepted = accepted

    async def put(self, txn: Transaction) -> None:
        self.accepted.append(txn)
        await super().put(txn)


@pytest.fixture
async def ingress() -> AsyncIterator[Client]:
    async with Client([], max_events=5) as client:
        yield client


def one_line_error(status: int, body: Any) -> str:
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}
    message = body["error"]
    assert isinstance(message, str) and message and "\n" not in message and "\r" not in message
    assert "Traceback" not in message
    return message


def event(**fields: Any) -> dict[str, Any]:
    return {**GOOD, "events": [{"name": "MessageNew", "uid": 1, "uid_validity": 7, **fields}]}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({**GOOD, "user": "evil\ud800"}, "lone UTF-16 surrogate"),
        ({**GOOD, "user": {"username": "a", "service": "imap\udfff"}}, "lone UTF-16 surrogate"),
        ({**GOOD, "metadata": {"k\ud800": "v"}}, "lone UTF-16 surrogate"),
        (event(subject="\udc80"), "lone UTF-16 surrogate"),
        (event(uid=None), "missing required field(s) uid"),
        (event(uid_validity=None), "missing required field(s) uid_validity"),
        ({**GOOD, "events": [{"name": "MailboxRename", "mailbox_old": None}]}, "missing required field(s) mailbox_old"),
        (event(uid="--5"), "MessageNew.uid: expected an integer, got '--5'"),
        (event(date="9" * 5000), "MessageNew.date: expected an integer"),
        (event(date=10**30), "MessageNew.date: "),
        (event(uid=2**32), "outside 0..4294967295"),
        (event(tz=1e300), "MessageNew.tz: "),
        (event(flags=[None]), "unknown system flag None"),
        ({**GOOD, "id": "abc\r\nX-Injected: 1"}, "'id' must be 1 to 200 visible ASCII characters"),
        ({**GOOD, "id": "a" * 201}, "'id' must be 1 to 200"),
        ({**GOOD, "id": "with space"}, "'id' must be 1 to 200"),
        ({**GOOD, "id": 5}, "'id' must be 1 to 200"),
        ({**GOOD, "user": {"username": "a", "uid": 2**70}}, "user.uid: "),
        ({**GOOD, "user": {"username": "a", "uid": "12"}}, "user.uid: expected an integer"),
        ({**GOOD, "user": {"username": "a", "x": [1, [2]]}}, "expected a string, number or boolean"),
        ({**GOOD, "status": {k: 1 for k in ("messages", "recent", "unseen", "uidvalidity")} | {"uidnext": -1}},
         "status.uidnext: "),
        ({**GOOD, "events": [GOOD["events"][0]] * 6}, "6 events, more than the 5 allowed in one transaction"),
    ],
)  # fmt: skip
async def test_input_that_could_never_be_delivered_is_refused_at_once(
    ingress: Client, data: dict[str, Any], reason: str
) -> None:
    status, body = await ingress.post(json.dumps(data))
    assert reason in one_line_error(status, body)
    assert status == 400 and ingress.accepted == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000, "invalid JSON: nested too deeply"),
        (b'{"user": "a", "mailbox": "INBOX", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"user": {"username": "a", "n": NaN}, "mailbox": "INBOX"}', "NaN is not a JSON number"),
        (b'{"user": "a", "mailbox": "\xff"}', "not UTF-8"),
        (b'{"user": "a", "mailbox": "INBOX", "events": [{"name": "MessageNew", "uid": 1' + b"0" * 5000 + b"}]}",
         "invalid JSON"),
    ],
)  # fmt: skip
async def test_malformed_json_is_one_line(ingress: Client, body: bytes, reason: str) -> None:
    status, answer = await ingress.post(body)
    assert reason in one_line_error(status, answer)


async def test_a_body_over_the_limit_is_413_without_reading_it(ingress: Ingress) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
    writer.write(
        b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ps3cret\r\n"
        b"Content-Length: 9223372036854775808\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413 ")
    writer.close()
    status, answer = await ingress.post(json.dumps({**GOOD, "mailbox": "x" * (1 << 20)}))
    assert status == 413 and "ingress_max_body_size" in one_line_error(status, answer)


async def test_a_non_utf8_authorization_header_is_401(ingress: Ingress) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.port)
    writer.write(
        b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nContent-Length: 2\r\n\r\n{}"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 401 ")
    writer.close()


async def test_a_body_that_never_comes_is_408_after_the_body_timeout() -> None:
    async with Client([], body_timeout=0.2) as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ps3cret\r\n"
                     b"Content-Length: 100\r\n\r\n{")  # fmt: skip
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 408 ")
        assert await asyncio.wait_for(reader.read(), 5)  # the answer, then the connection is closed
        writer.close()


async def test_healthz_shows_details_only_with_the_token() -> None:
    health = {"instances": {"ox1": "ox"}, "queue_depth": 3}
    async with Client([], health) as client:
        async with client.get("/healthz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
        async with client.get("/healthz", headers=AUTH) as response:
            assert (response.status, await response.json()) == (200, {"status": "ok", **health})


async def test_healthz_answers_503_for_any_state_but_ok() -> None:
    health = {"status": "degraded", "reason": "spool reader restarting", "queue_depth": 0}
    async with Client([], health) as client:
        async with client.get("/healthz") as response:
            assert (response.status, await response.json()) == (503, {"status": "degraded"})
        async with client.get("/healthz", headers=AUTH) as response:
            assert (response.status, await response.json()) == (503, health)


# --- every input: property-based ------------------------------------------------------------

_EVENT_FIELDS = sorted({"uid", "uid_validity", "date", "tz", "flags", "keywords", "flags_old", "keywords_old",
                        "mailbox_old", "from", "subject", "snippet", "mailbox", "message_id"})  # fmt: skip
#: Text with lone surrogates and control characters among the usual.
_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "INBOX", "alice", "\\Seen", "$Label1", "--5", "12", "9" * 30, "\ud800", "a\r\nb"]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3), max_leaves=8
)
_events = st.fixed_dictionaries(
    {"name": st.sampled_from(sorted(EVENT_TYPES)) | _text},
    optional={key: _values | _scalars for key in _EVENT_FIELDS},
)
_transactions = st.fixed_dictionaries(
    {},
    optional={
        "id": _text | _values,
        "user": _text | st.fixed_dictionaries({"username": _text}, optional={"uid": _values, "service": _values,
                                                                             "anonymous": _values}),
        "mailbox": _text | _values,
        "success": _values,
        "events": st.lists(_events, max_size=4) | _values,
        "metadata": st.dictionaries(_text, _text, max_size=2) | _values,
        "status": _values,
    },
)  # fmt: skip


_MESSAGE_EVENTS = sorted(name for name in EVENT_TYPES if not name.startswith("Mailbox"))
_uint32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def _deliverable_events(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(EVENT_TYPES)))
    data: dict[str, Any] = {"name": name}
    if name in _MESSAGE_EVENTS:
        data |= {"uid": draw(_uint32), "uid_validity": draw(_uint32)}
    if name == "MailboxRename":
        data["mailbox_old"] = draw(_text)
    if name in ("MessageNew", "MessageAppend"):
        data |= draw(
            st.fixed_dictionaries(
                {}, optional={"subject": _text, "date": st.integers(0, 2**34), "tz": st.integers(-720, 720)}
            )
        )
    return data


#: Transactions that can be delivered (unless a drawn text is not valid Unicode).
_deliverable = st.fixed_dictionaries(
    {"user": _text.filter(bool), "mailbox": _text.filter(bool), "events": st.lists(_deliverable_events(), max_size=4)},
    optional={
        "id": st.from_regex(r"[!-~]{1,40}", fullmatch=True),
        "metadata": st.dictionaries(_text, _text, max_size=2),
    },
)


@st.composite
def _one_field_wrong(draw: st.DrawFn) -> dict[str, Any]:
    """A deliverable transaction with one field (of it, its user or an event) replaced."""
    data = draw(_deliverable)
    if data["events"] and draw(st.booleans()):
        target = draw(st.sampled_from(data["events"]))
        target[draw(st.sampled_from([*target, *_EVENT_FIELDS]))] = draw(_values)
    else:
        data[draw(st.sampled_from(["id", "user", "mailbox", "success", "events", "metadata", "status"]))] = draw(
            _values
        )
    return data


def _encoded(data: Any, ascii_only: bool) -> bytes:
    return json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


_bodies = (
    st.builds(_encoded, _deliverable | _one_field_wrong() | _transactions, st.booleans())
    | st.builds(_encoded, _values, st.just(True))
    | st.binary(max_size=64)
)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[asyncio.AbstractEventLoop, Client]]:
    loop = asyncio.new_event_loop()
    client = Client([], max_events=5)
    loop.run_until_complete(client.__aenter__())
    yield loop, client
    loop.run_until_complete(client.__aexit__())
    loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_every_body_is_accepted_deliverable_or_refused_in_one_line(
    fuzzed: tuple[asyncio.AbstractEventLoop, Client], body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    loop, ingress = fuzzed
    ingress.accepted.clear()
    with caplog.at_level(logging.DEBUG):
        status, answer = loop.run_until_complete(ingress.post(body))
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    if status != 202:
        one_line_error(status, answer)
        return
    (txn,) = ingress.accepted
    assert answer == {"id": txn.id}
    # What was accepted can be stored as UTF-8 and read back the same: the queue's round trip.
    stored = txn.json.encode()
    again = transaction_from_json(stored)
    assert again.to_dict() == txn.to_dict()
    assert again.hook_calls is not None
