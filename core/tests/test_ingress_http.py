"""The ingress speaks HTTP/1.1 itself (server/http11.py): what a client on a raw socket sees.

Keep-alive and pipelining answer every request in order; chunked bodies and
``Expect: 100-continue`` work as curl and Dovecot send them; every refusal is one JSON line;
a client that misbehaves is cut off within its deadline; any bytes at all get an HTTP answer
or a closed connection, never a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from push_notification.queue import MemoryQueue
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import count_deliveries
from push_notification.server.connections import IngressServer
from push_notification.server.ingress import Ingress, IngressLimits

TOKEN = b"t0ps3cret"
TXN = b'{"user":"alice","mailbox":"INBOX","events":[{"name":"MessageNew","uid":1,"uid_validity":7}]}'


def post(body: bytes = TXN, *extra: bytes, token: bytes = TOKEN) -> bytes:
    head = [b"POST /v1/transactions HTTP/1.1", b"Host: x", b"Authorization: Bearer " + token, *extra]
    if not any(line.lower().startswith(b"transfer-encoding") for line in extra):
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def memory_queue(size: int = 1000) -> MemoryQueue:
    queue = MemoryQueue(size)
    queue.attach(["one"])  # the queue keeps a transaction for each instance
    return queue


async def start(queue: MemoryQueue | SqliteQueue | None = None, **limits: Any) -> IngressServer:
    chosen = IngressLimits(**limits)
    health = {"status": "ok", "queue_depth": 0}
    server = IngressServer(Ingress(queue or memory_queue(), token="t0ps3cret", health=lambda: health, limits=chosen),
                           chosen)  # fmt: skip
    await server.start(("127.0.0.1", 0))
    return server


def port_of(server: IngressServer) -> int:
    return int(server.bound[0].rpartition(":")[2])


@pytest.fixture
async def ingress() -> AsyncIterator[IngressServer]:
    server = await start()
    yield server
    await server.close()


async def answers(reader: asyncio.StreamReader, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """``count`` responses: status line, header fields (lower-case names), body."""
    found = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status, *lines = head[:-4].split(b"\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines)}
        length = int(headers.get(b"content-length", b"0"))
        found.append((status, headers, await asyncio.wait_for(reader.readexactly(length), 5)))
    return found


async def exchange(server: IngressServer, data: bytes, count: int = 1) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    try:
        writer.write(data)
        return await answers(reader, count)
    finally:
        writer.close()


def one_line(body: bytes) -> str:
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


async def test_pipelined_requests_on_one_connection_are_answered_in_order(ingress: IngressServer) -> None:
    ids = [b"txn-%d" % i for i in range(5)]
    data = b"".join(post(TXN[:-1] + b',"id":"%s"}' % i) for i in ids) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    found = await exchange(ingress, data, 6)
    assert [status for status, _, _ in found] == [b"HTTP/1.1 202 Accepted"] * 5 + [b"HTTP/1.1 200 OK"]
    assert [json.loads(body)["id"].encode() for _, _, body in found[:5]] == ids
    assert all(b"date" in headers and b"connection" not in headers for _, headers, _ in found)


async def test_a_chunked_body_is_read_and_one_over_the_limit_is_413() -> None:
    server = await start(max_body=200)
    try:
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(TXN), TXN)
        ((status, _, _),) = await exchange(server, post(chunked, b"Transfer-Encoding: chunked"))
        assert status == b"HTTP/1.1 202 Accepted"
        big = b"".join(b"64\r\n" + b" " * 100 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
        ((status, headers, body),) = await exchange(server, post(big, b"Transfer-Encoding: chunked"))
        assert status.startswith(b"HTTP/1.1 413 ") and headers[b"connection"] == b"close"
        assert "ingress_max_body_size" in one_line(body)
    finally:
        await server.close()


async def test_expect_100_continue_is_answered_before_the_body(ingress: IngressServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(ingress))
    head, _, body = post(TXN, b"Expect: 100-continue").partition(b"\r\n\r\n")
    writer.write(head + b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    ((status, _, _),) = await answers(reader, 1)
    assert status == b"HTTP/1.1 202 Accepted"
    writer.close()


async def test_no_100_continue_when_the_body_came_with_the_head(ingress: IngressServer) -> None:
    ((status, _, _),) = await exchange(ingress, post(TXN, b"Expect: 100-continue"))
    assert status == b"HTTP/1.1 202 Accepted"  # the first answer: no interim 100 before it


async def test_a_log_line_names_the_client_address(ingress: IngressServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ((status, _, _),) = await exchange(ingress, post(b'{"user": "alice"}'))
    assert status.startswith(b"HTTP/1.1 400 ")
    assert "rejected transaction from 127.0.0.1:" in caplog.text


async def test_without_the_token_the_body_is_not_read_and_the_answer_is_401(ingress: IngressServer) -> None:
    ((status, headers, body),) = await exchange(ingress, post(TXN, b"Expect: 100-continue", token=b"wrong"))
    assert status.startswith(b"HTTP/1.1 401 ") and headers[b"www-authenticate"] == b"Bearer"
    assert "ingress token" in one_line(body)


@pytest.mark.parametrize(
    ("request_", "status", "reason"),
    [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", b"404", "no such path '/nowhere'"),
        (b"GET /v1/transactions HTTP/1.1\r\n\r\n", b"405", "GET is not served at /v1/transactions (use POST)"),
        (b"DELETE /healthz HTTP/1.1\r\n\r\n", b"405", "(use GET, HEAD)"),
        (b"GET / HTTP/2.0\r\n\r\n", b"400", "only HTTP/1.0 and HTTP/1.1"),
        (b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", b"400", "upgrades are not supported"),
        (b"BREW / HTTP/1.1\r\n\r\n", b"400", "malformed HTTP request"),
        (b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\n\r\n", b"431", "request head larger than 32768 bytes"),
    ],
)
async def test_each_refusal_is_one_line(ingress: IngressServer, request_: bytes, status: bytes, reason: str) -> None:
    ((line, _, body),) = await exchange(ingress, request_)
    assert line.startswith(b"HTTP/1.1 " + status + b" ")
    assert reason in one_line(body)


async def test_head_answers_without_a_body_and_http_1_0_closes(ingress: IngressServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(ingress))
    writer.write(b"HEAD /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 16" in head
    second = await asyncio.wait_for(reader.read(), 5)  # to the close
    assert second.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in second
    assert second.endswith(b'{"status": "ok"}')
    writer.close()


async def test_a_full_queue_is_503_with_retry_after() -> None:
    server = await start(memory_queue(1))
    try:
        found = await exchange(server, post() + post(), 2)
        assert [status for status, _, _ in found] == [b"HTTP/1.1 202 Accepted", b"HTTP/1.1 503 Service Unavailable"]
        assert int(found[1][1][b"retry-after"]) >= 1 and "retry later" in one_line(found[1][2])
    finally:
        await server.close()


async def test_each_request_head_has_its_deadline_not_only_the_first() -> None:
    server = await start(header_timeout=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(post())
        ((status, _, _),) = await answers(reader, 1)
        assert status == b"HTTP/1.1 202 Accepted"
        writer.write(b"POST /v1/transactions HTTP/1.1\r\n")  # and no more
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the header deadline
        writer.close()
    finally:
        await server.close()


async def test_over_the_connection_cap_the_least_recently_active_connection_goes() -> None:
    server = await start(max_connections=2)
    try:
        first = await asyncio.open_connection("127.0.0.1", port_of(server))
        second = await asyncio.open_connection("127.0.0.1", port_of(server))
        first[1].write(post())  # the first is now the more recently active one
        assert (await answers(first[0], 1))[0][0] == b"HTTP/1.1 202 Accepted"
        third = await asyncio.open_connection("127.0.0.1", port_of(server))
        assert await asyncio.wait_for(second[0].read(), 5) == b""  # the idle one was closed
        for reader, writer in (first, third):
            writer.write(post())
            assert (await answers(reader, 1))[0][0] == b"HTTP/1.1 202 Accepted"
            writer.close()
        second[1].close()
    finally:
        await server.close()


async def test_with_the_sqlite_queue_each_202_comes_once_its_row_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    queue.attach(["one"])
    server = await start(queue)
    try:
        ids = [b"txn-%d" % i for i in range(5)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(b"".join(post(TXN[:-1] + b',"id":"%s"}' % i) for i in ids))
        for number, txn_id in enumerate(ids, 1):
            ((status, _, body),) = await answers(reader, 1)
            assert status == b"HTTP/1.1 202 Accepted" and json.loads(body)["id"].encode() == txn_id
            assert count_deliveries(path) >= number
        writer.close()
    finally:
        await server.close()
        await queue.close()


class Told(MemoryQueue):
    """A queue whose outcome the test tells: ``then`` is kept until ``tell``."""

    def __init__(self) -> None:
        super().__init__(10)
        self.attach(["one"])
        self.waiting: list[Callable[[BaseException | None], None]] = []

    def put_then(self, txn: Any, then: Callable[[BaseException | None], None]) -> None:
        self.waiting.append(then)

    async def tell(self, outcome: BaseException | None) -> None:
        await wait_until(lambda: bool(self.waiting))
        self.waiting.pop()(outcome)


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def test_an_answer_given_later_holds_the_pipelined_requests_behind_it() -> None:
    queue = Told()
    server = await start(queue)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(post() + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await queue.tell(None)
        found = await answers(reader, 2)
        assert [status for status, _, _ in found] == [b"HTTP/1.1 202 Accepted", b"HTTP/1.1 200 OK"]
        writer.close()
    finally:
        await server.close()


async def test_a_failed_put_is_one_line_500_and_a_cancelled_one_closes_unanswered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = Told()
    server = await start(queue)
    try:
        found = asyncio.ensure_future(exchange(server, post()))
        await queue.tell(RuntimeError("boom"))
        ((status, _, body),) = await found
        assert (
            status == b"HTTP/1.1 500 Internal Server Error" and one_line(body) == "internal error: RuntimeError: boom"
        )
        assert "Traceback" not in caplog.text

        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(post())
        await queue.tell(asyncio.CancelledError())  # the daemon is stopping
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await server.close()


async def test_shutdown_answers_the_request_in_hand_then_closes() -> None:
    class Slow(MemoryQueue):
        async def put(self, txn: Any) -> None:
            await asyncio.sleep(0.2)
            await super().put(txn)

    queue = Slow(10)
    queue.attach(["one"])
    server = await start(queue)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    idle = await asyncio.open_connection("127.0.0.1", port_of(server))
    halfway = await asyncio.open_connection("127.0.0.1", port_of(server))
    halfway[1].write(b"POST /v1/transactions HTTP/1.1\r\n")  # never accepted: closed at once
    writer.write(post())
    await asyncio.sleep(0.05)
    await server.close()
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 202 Accepted") and b"Connection: close" in answer
    assert queue.depth() == 1
    for other_reader, other_writer in (idle, halfway):
        assert await asyncio.wait_for(other_reader.read(), 5) == b""
        other_writer.close()
    writer.close()


# --- any bytes at all: property-based --------------------------------------------------------

_pieces = st.sampled_from(
    [b"POST ", b"GET ", b"DELETE ", b"/v1/transactions", b"/healthz", b"/v1/devices/x", b" HTTP/1.1\r\n",
     b" HTTP/1.0\r\n", b"Content-Length: 5\r\n", b"Content-Length: 99999999999\r\n", b"Transfer-Encoding: chunked\r\n",
     b"Authorization: Bearer t0ps3cret\r\n", b"Expect: 100-continue\r\n", b"Connection: close\r\n", b"\r\n", b"\n",
     b"5\r\nhello\r\n0\r\n\r\n", TXN, b"{}", b"\x00", b"\xff", b" ", b":"]
)  # fmt: skip
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_streams = st.lists(_pieces | st.binary(max_size=16), max_size=14).map(b"".join)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[asyncio.AbstractEventLoop, IngressServer]]:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(start(body_timeout=0.05, header_timeout=0.05))
    yield loop, server
    loop.run_until_complete(server.close())
    loop.close()


async def _whole_conversation(server: IngressServer, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(data)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_streams)
def test_any_bytes_get_http_answers_or_a_close_never_a_500(
    fuzzed: tuple[asyncio.AbstractEventLoop, IngressServer], data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    loop, server = fuzzed
    with caplog.at_level(logging.DEBUG):
        answer = loop.run_until_complete(_whole_conversation(server, data))
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    while answer:
        if answer.startswith(_CONTINUE):
            answer = answer[len(_CONTINUE) :]
            continue
        head, _, rest = answer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        assert status in (200, 202, 204, 400, 401, 404, 405, 408, 413, 431), head
        length = int(head.lower().partition(b"content-length: ")[2].partition(b"\r\n")[0] or 0)
        body, answer = rest[:length], rest[length:]
        if status >= 400:
            one_line(body)
