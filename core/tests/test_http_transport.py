"""The HTTP/1.1 transport under the sender: keep-alive connections pooled per origin, answers
framed by length, by chunks or by the connection's end, and one clear line for each failure.

Real servers on 127.0.0.1: aiohttp's for ordinary answers, and a scripted TCP server for the
answers a well-behaved server never gives (no length, a close mid-answer, not HTTP at all).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from push_notification.http import (
    Http1Transport,
    HttpClientSettings,
    HttpPermanentError,
    HttpRequest,
    HttpRetryableError,
    HttpSender,
    TransportError,
)
from push_notification.http.connection import MAX_BODY
from push_notification.testing.loopback import loopback_server
from push_notification.testing.tls import make_tls_files

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def settings(connections: int = 1, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> HttpClientSettings:
    return HttpClientSettings(
        request_timeout=timeout, max_attempts=1, max_parallel_connections=connections, ssl_context=context
    )


@contextlib.asynccontextmanager
async def transport(
    connections: int = 1, timeout: float = 2.0, context: ssl.SSLContext | None = None
) -> AsyncIterator[Http1Transport]:
    client = Http1Transport(settings(connections, timeout, context))
    try:
        yield client
    finally:
        await client.close()


async def failure(client: Http1Transport, request: HttpRequest) -> TransportError:
    with pytest.raises(TransportError) as info:
        await client.request(request)
    return info.value


@dataclass
class Peer:
    """What an aiohttp endpoint saw: each request's headers and the connection it came on."""

    headers: list[dict[str, str]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await request.read()
            self.headers.append(dict(request.headers))
            assert request.transport is not None
            self.ports.append(request.transport.get_extra_info("peername")[1])
            if self.delay:
                await asyncio.sleep(self.delay)
            if request.path == "/chunked":
                response = web.StreamResponse()
                response.enable_chunked_encoding()
                await response.prepare(request)
                for piece in (b"first ", b"second ", b"third"):
                    await response.write(piece)
                await response.write_eof()
                return response
            if request.path == "/big":
                return web.Response(body=b"x" * (MAX_BODY + 4096))
            if request.path == "/close":
                return web.Response(text="bye", headers={"Connection": "close"})
            return web.Response(text=f"answer {len(self.headers)}", headers={"X-Echo": request.method})
        finally:
            self.in_flight -= 1


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, str]]:
    endpoint = Peer()
    async with loopback_server(endpoint.handle) as base:
        yield endpoint, base


@dataclass
class Scripted:
    """A TCP server on 127.0.0.1 whose every connection is handled by ``script``."""

    url: str
    connections: int = 0


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[Scripted]:
    server_info = Scripted("")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_info.connections += 1
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    server_info.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/push"
    try:
        yield server_info
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body, as sent."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


# ---------------------------------------------------------------- connections


async def test_requests_one_after_another_share_one_keep_alive_connection(peer: tuple[Peer, str]) -> None:
    endpoint, base = peer
    async with transport() as client:
        for _ in range(5):
            response = await client.request(HttpRequest("PUT", base + "/notify", b"{}"))
            assert response.status == 200
    assert len(set(endpoint.ports)) == 1 and len(endpoint.ports) == 5


async def test_concurrent_requests_use_at_most_max_parallel_connections(peer: tuple[Peer, str]) -> None:
    endpoint, base = peer
    endpoint.delay = 0.02
    async with transport(connections=3) as client:
        responses = await asyncio.gather(*(client.request(HttpRequest("POST", base + "/")) for _ in range(12)))
    assert [response.status for response in responses] == [200] * 12
    assert endpoint.most_in_flight == 3
    assert len(set(endpoint.ports)) == 3


async def test_a_request_waiting_for_a_busy_connection_times_out_in_its_own_deadline(
    peer: tuple[Peer, str],
) -> None:
    endpoint, base = peer
    endpoint.delay = 0.5
    async with transport(connections=1, timeout=0.2) as client:
        first, second = await asyncio.gather(
            client.request(HttpRequest("POST", base + "/")),
            client.request(HttpRequest("POST", base + "/")),
            return_exceptions=True,
        )
    assert isinstance(first, TransportError) and isinstance(second, TransportError)
    assert (first.kind, second.kind) == ("timeout", "timeout")
    assert str(second) == "Request timed out after 0.2s"


async def test_a_connection_the_server_closes_is_not_reused(peer: tuple[Peer, str]) -> None:
    endpoint, base = peer
    async with transport() as client:
        closing = await client.request(HttpRequest("POST", base + "/close"))
        after = await client.request(HttpRequest("POST", base + "/"))
    assert (closing.status, closing.body, after.status) == (200, b"bye", 200)
    assert len(set(endpoint.ports)) == 2


async def test_a_request_asking_connection_close_ends_its_connection(peer: tuple[Peer, str]) -> None:
    endpoint, base = peer
    async with transport() as client:
        await client.request(HttpRequest("POST", base + "/", headers={"Connection": "close"}))
        await client.request(HttpRequest("POST", base + "/"))
    assert len(set(endpoint.ports)) == 2


async def test_an_idle_connection_the_server_dropped_is_replaced_without_losing_the_request() -> None:
    async def answer_once_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()  # then closes, with no Connection: close (an idle timeout)

    async with scripted(answer_once_then_hang_up) as server, transport() as client:
        for method in ("PUT", "POST", "PUT"):
            response = await client.request(HttpRequest(method, server.url, b"{}"))
            assert response.body == b"ok"
            await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
    assert server.connections == 3


async def test_a_reused_connection_found_closed_is_tried_once_more_for_an_idempotent_put() -> None:
    answered = 0

    async def answer_first_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        await read_request(reader)
        if answered == 0:
            answered += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await read_request(reader)  # the second request on this connection: dropped unanswered
            return
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with scripted(answer_first_only) as server, transport() as client:
        await client.request(HttpRequest("PUT", server.url, b"1"))
        response = await client.request(HttpRequest("PUT", server.url, b"2"))
    assert response.status == 201 and server.connections == 2


async def test_a_post_on_a_connection_dropped_before_answering_is_lost_not_repeated() -> None:
    async def answer_first_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)

    async with scripted(answer_first_only) as server, transport() as client:
        await client.request(HttpRequest("POST", server.url, b"1"))
        error = await failure(client, HttpRequest("POST", server.url, b"2"))
    assert error.kind == "lost"
    assert str(error) == "Connection lost: the server closed the connection before answering"
    assert server.connections == 1


# ---------------------------------------------------------------- answers


async def test_a_chunked_answer_is_read_whole(peer: tuple[Peer, str]) -> None:
    _, base = peer
    async with transport() as client:
        response = await client.request(HttpRequest("GET", base + "/chunked"))
        again = await client.request(HttpRequest("GET", base + "/"))
    assert response.body == b"first second third" and again.status == 200


async def test_an_answer_without_length_ends_with_the_connection() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")

    async with scripted(until_close) as server, transport() as client:
        response = await client.request(HttpRequest("POST", server.url, b"x"))
        again = await client.request(HttpRequest("POST", server.url, b"x"))
    assert (response.status, response.body, again.body) == (200, b"all of it", b"all of it")
    assert server.connections == 2


async def test_interim_answers_are_skipped_and_headers_are_case_insensitive() -> None:
    async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\nVia: a\r\nVia: b\r\n")
        writer.write(b"Content-Length: 4\r\n\r\nbusy")
        await writer.drain()

    async with scripted(early_hints) as server, transport() as client:
        response = await client.request(HttpRequest("POST", server.url))
    assert (response.status, response.reason, response.body) == (503, "Service Unavailable", b"busy")
    assert response.headers["Retry-After"] == "7" and response.headers.get("RETRY-AFTER") == "7"
    assert response.headers.getall("via") == ["a", "b"]  # type: ignore[attr-defined]
    assert "Link" not in response.headers


async def test_reason_and_headers_are_the_servers_own_even_split_across_reads() -> None:
    answers = [
        [b"HTTP/1.1 2", b"02 Accepted For Later\r\nX-Req", b"uest-Id: a1\r\nContent-Length: 0\r\n\r\n"],
        [b"HTTP/1.1 202 Taken\r\nX-Request-Id: b2\r\nX-Request-Id: b3\r\nContent-Length: 2\r\n\r\nok"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
        [b"HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n"],
    ]

    async def piecemeal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for pieces in answers:
            await read_request(reader)
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)  # each piece its own read

    async with scripted(piecemeal) as server, transport() as client:
        got = [await client.request(HttpRequest("POST", server.url, b"x")) for _ in answers]
    assert [(r.status, r.reason) for r in got] == [
        (202, "Accepted For Later"),
        (202, "Taken"),
        (200, "OK"),
        (200, "Fine"),
    ]
    assert got[0].headers["x-request-id"] == "a1" and len(got[0].headers) == 2
    assert got[1].headers.getall("X-Request-Id") == ["b2", "b3"] and got[1].body == b"ok"  # type: ignore[attr-defined]
    assert dict(got[2].headers) == {"Content-Length": "0"} and server.connections == 1


async def test_a_headers_mapping_changed_between_requests_sends_its_new_values() -> None:
    sent: list[bytes] = []
    headers = {"X-Token": "first"}
    async with scripted(recording(sent)) as server, transport() as client:
        await client.request(HttpRequest("PUT", server.url, b"{}", headers))
        headers["X-Token"] = "second"
        await client.request(HttpRequest("PUT", server.url, b"{}", headers))
        headers["X-Extra"] = "1"
        await client.request(HttpRequest("PUT", server.url, b"{}", headers))
        await client.request(HttpRequest("PUT", server.url, b"", headers))
    assert b"X-Token: first\r\n" in sent[0] and b"X-Token: second\r\n" in sent[1] and b"X-Extra" not in sent[1]
    assert b"X-Token: second\r\nX-Extra: 1\r\n" in sent[2] and sent[2].endswith(b"Content-Length: 2\r\n\r\n{}")
    assert sent[3].endswith(b"Content-Length: 0\r\n\r\n") and b"Content-Type" not in sent[3]


async def test_a_body_beyond_the_cap_is_cut_and_its_connection_dropped(peer: tuple[Peer, str]) -> None:
    endpoint, base = peer
    async with transport() as client:
        response = await client.request(HttpRequest("POST", base + "/big"))
        await client.request(HttpRequest("POST", base + "/"))
    assert response.status == 200 and len(response.body) == MAX_BODY
    assert len(set(endpoint.ports)) == 2


async def test_an_endless_head_is_refused() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for number in range(20_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (number, b"y" * 40))
        await writer.drain()

    async with scripted(endless) as server, transport() as client:
        error = await failure(client, HttpRequest("POST", server.url))
    assert error.kind == "lost" and str(error) == "Connection lost: the answer's head exceeds 64 KiB"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"220 mail.example.com ESMTP ready\r\n", "Connection lost: the answer is not valid HTTP ("),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "Connection lost: the server switched protocols, which no request asked",
        ),
    ],
)
async def test_an_answer_that_is_not_an_http_answer_is_a_lost_connection(answer: bytes, message: str) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await reader.read()  # until the client hangs up

    async with scripted(reply) as server, transport() as client:
        error = await failure(client, HttpRequest("POST", server.url))
    assert error.kind == "lost" and str(error).startswith(message)


async def test_a_close_in_the_middle_of_the_answer_is_a_lost_connection() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async with scripted(half) as server, transport() as client:
        error = await failure(client, HttpRequest("POST", server.url))
    assert str(error) == "Connection lost: the server closed the connection in the middle of the answer"


async def test_a_head_request_reads_no_body(peer: tuple[Peer, str]) -> None:
    _, base = peer
    async with transport() as client:
        response = await client.request(HttpRequest("HEAD", base + "/"))
        after = await client.request(HttpRequest("GET", base + "/"))
    assert (response.status, response.body, response.headers["X-Echo"]) == (200, b"", "HEAD")
    assert after.status == 200


# ---------------------------------------------------------------- requests


def recording(sent: list[bytes]) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A server script that keeps each request's bytes in ``sent`` and answers 204."""

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            sent.append(await read_request(reader))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    return record


async def test_what_is_sent_besides_the_requests_own_headers() -> None:
    sent: list[bytes] = []
    async with scripted(recording(sent)) as server:
        port = server.url.split(":")[2].split("/")[0]
        url = f"http://us%40er:p%C3%A4ss@127.0.0.1:{port}/a%2Fb/c d?q=1&r=%7e"
        async with transport() as client:
            await client.request(HttpRequest("POST", url, b"{}"))
            await client.request(HttpRequest("DELETE", url, headers={"Accept": "application/json"}))
        skipping = Http1Transport(settings(), skip_auto_headers=("Accept", "Content-Type"))
        await skipping.request(HttpRequest("PUT", url, b"{}", {"Authorization": "Bearer replaced"}))
        await skipping.close()
    credentials = base64.b64encode("us@er:päss".encode("latin-1")).decode()
    assert (
        sent[0]
        == (
            f"POST /a%2Fb/c%20d?q=1&r=~ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {credentials}\r\n"
            "Accept: */*\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\n{}"
        ).encode()
    )
    assert b"\r\nAccept: application/json\r\n" in sent[1] and b"Content-Length: 0\r\n" in sent[1]
    assert b"Accept:" not in sent[2] and b"Content-Type:" not in sent[2]
    assert f"Authorization: Basic {credentials}".encode() in sent[2] and b"Bearer" not in sent[2]


async def test_send_date_writes_the_date_of_each_request_unless_it_has_its_own() -> None:
    sent: list[bytes] = []
    async with scripted(recording(sent)) as server:
        dated = Http1Transport(settings(), send_date=True)
        before = time.time()
        await dated.request(HttpRequest("PUT", server.url, b"{}", {"X-First": "1"}))
        after = time.time()
        await dated.request(HttpRequest("PUT", server.url, b"{}", {"Date": "Sun, 06 Nov 1994 08:49:37 GMT"}))
        await dated.close()
        async with transport() as plain:
            await plain.request(HttpRequest("PUT", server.url, b"{}"))
    [date] = [line[6:] for line in sent[0].split(b"\r\n") if line.startswith(b"Date: ")]
    assert int(before) <= email.utils.parsedate_to_datetime(date.decode()).timestamp() <= after
    # After the request's own headers, before the framing: as the header Dovecot sends OX.
    assert sent[0].index(b"X-First: 1\r\n") < sent[0].index(b"Date: ") < sent[0].index(b"Content-Length: ")
    assert sent[1].count(b"Date: ") == 1 and b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" in sent[1]
    assert b"Date: " not in sent[2]


async def test_a_header_with_a_line_break_is_not_sent_and_is_permanent() -> None:
    async def must_not_be_reached(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("nothing may be sent")

    async with scripted(must_not_be_reached) as server:
        sender = HttpSender(settings())
        with pytest.raises(HttpPermanentError) as info:
            await sender.send(HttpRequest("POST", server.url, headers={"X-Subject": "hi\r\nX-Admin: yes"}))
        await sender.close()
    assert "the header 'X-Subject' has a line break, which would forge headers; it was not sent" in str(info.value)
    assert "X-Admin" not in str(info.value) and server.connections == 0


async def test_a_url_that_is_not_http_is_permanent() -> None:
    sender = HttpSender(settings())
    with pytest.raises(HttpPermanentError, match=r"ftp://example\.com/\.\.\. is not an http:// or https:// URL"):
        await sender.send(HttpRequest("POST", "ftp://example.com/secret"))
    await sender.close()


# ---------------------------------------------------------------- failing to connect


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_host_refusing_on_every_address_reads_connection_refused_once() -> None:
    port = closed_port()
    async with transport() as client:
        error = await failure(client, HttpRequest("POST", f"http://localhost:{port}/"))
    assert (error.kind, str(error)) == ("connect", f"connect(localhost:{port}) failed: Connection refused")


async def test_a_name_that_does_not_resolve_reads_cannot_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver's answer is stood in for: the test machine may not ask a DNS server."""

    async def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
    sender = HttpSender(settings())
    with pytest.raises(HttpRetryableError) as info:
        await sender.send(HttpRequest("POST", "https://push.example.invalid/x"))
    await sender.close()
    assert str(info.value).startswith(
        "POST https://push.example.invalid/...: cannot resolve push.example.invalid: Name or service not known"
        " (check the host name in url and the DNS) (1 attempt in "
    )


async def test_tls_to_a_server_that_does_not_speak_it_is_a_permanent_handshake_failure(
    peer: tuple[Peer, str], tmp_path: Path
) -> None:
    _, base = peer
    tls = make_tls_files(tmp_path)
    sender = HttpSender(settings(context=ssl.create_default_context(cafile=str(tls.ca_file))))
    with pytest.raises(HttpPermanentError) as info:
        await sender.send(HttpRequest("POST", base.replace("http://", "https://") + "/"))
    await sender.close()
    port = base.rsplit(":", 1)[1]
    assert f": TLS handshake failed with 127.0.0.1:{port}: [SSL: " in str(info.value)


async def test_https_with_the_internal_ca_keeps_its_connection(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    endpoint = Peer()
    async with loopback_server(endpoint.handle, ssl_context=tls.server_context()) as base:
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        async with transport(context=context) as client:
            for _ in range(3):
                assert (await client.request(HttpRequest("PUT", base + "/", b"{}"))).status == 200
    assert len(set(endpoint.ports)) == 1


async def test_closing_the_transport_fails_a_request_waiting_for_its_answer(peer: tuple[Peer, str]) -> None:
    endpoint, base = peer
    endpoint.delay = 5
    client = Http1Transport(settings())
    pending = asyncio.ensure_future(client.request(HttpRequest("POST", base + "/")))
    while not endpoint.in_flight:
        await asyncio.sleep(0.01)
    await client.close()
    with pytest.raises(TransportError, match="Connection lost: the HTTP client was closed"):
        await pending
