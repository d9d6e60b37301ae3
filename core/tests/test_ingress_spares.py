"""A lost connection's protocol object (its llhttp parser and state) serves a new connection
(server/connections.py's spares) only when nothing of its client is left in it: lost between
two answered requests of a keep-alive stream. Whatever a client sends, it gets the answers
it would get from a brand-new one."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from push_notification.server.connections import IngressServer

from .test_ingress_http import TXN, _whole_conversation, answers, port_of, post, start

_DATE = re.compile(rb"Date: [^\r]*\r\n")
_ID = re.compile(rb'"id": ?"[^"]*"')
_pieces = st.sampled_from(
    [post(), post(TXN, b"Expect: 100-continue"), post(TXN, b"Connection: close"), b"GET /healthz HTTP/1.1\r\n\r\n",
     b"GET /healthz HTTP/1.0\r\n\r\n", b"POST /v1/transactions HTTP/1.1\r\nContent-Length: 40\r\n", b"POST /v1/tra",
     post(TXN[:20]), b"\r\n", b"\x00", b"GET /nowhere HTTP/1.1\r\n\r\n", post(b"x" * 5, token=b"wrong")]
)  # fmt: skip
_conversations = st.lists(st.lists(_pieces, min_size=1, max_size=4).map(b"".join), min_size=1, max_size=4)


async def conversation(server: IngressServer, data: bytes) -> bytes:
    """All the server answers ``data`` with (the client half-closing after it), but its dates and ids."""
    return _ID.sub(b'"id":"?"', _DATE.sub(b"", await _whole_conversation(server, data)))


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[asyncio.AbstractEventLoop, IngressServer, IngressServer]]:
    loop = asyncio.new_event_loop()
    reusing = loop.run_until_complete(start(body_timeout=0.05, header_timeout=0.05))
    fresh = loop.run_until_complete(start(body_timeout=0.05, header_timeout=0.05))
    fresh.connections.max_spares = 0
    yield loop, reusing, fresh
    for server in (reusing, fresh):
        loop.run_until_complete(server.close())
    loop.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(talks=_conversations)
def test_a_reused_connection_answers_as_a_new_one(
    servers: tuple[asyncio.AbstractEventLoop, IngressServer, IngressServer], talks: list[bytes]
) -> None:
    loop, reusing, fresh = servers
    for data in talks:
        assert loop.run_until_complete(conversation(reusing, data)) == loop.run_until_complete(
            conversation(fresh, data)
        )
    assert not fresh.connections.spares


async def test_only_a_connection_lost_between_answered_requests_is_kept() -> None:
    server = await start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(post())
        assert (await answers(reader, 1))[0][0] == b"HTTP/1.1 202 Accepted"
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if server.connections.spares:
                break
            await asyncio.sleep(0.01)
        assert len(server.connections.spares) == 1
        _, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(b"POST /v1/transactions HTTP/1.1\r\nContent-Le")  # taken again, then lost mid-head
        await asyncio.sleep(0.05)
        assert not server.connections.spares
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)
        assert not server.connections.spares  # its parser holds half a request: never reused
        ((status, _, _),) = await _exchange_on_new(server)
        assert status == b"HTTP/1.1 202 Accepted"
    finally:
        await server.close()


async def _exchange_on_new(server: IngressServer) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    try:
        writer.write(post())
        return await answers(reader, 1)
    finally:
        writer.close()
