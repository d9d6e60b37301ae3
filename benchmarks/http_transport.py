"""CPU per request of the HTTP drivers' transport: aiohttp's ClientSession (the transport until
issue 19) against Http1Transport (pooled keep-alive connections, httptools), in one run.

A loopback aiohttp server in its own process answers every request 200 with a short body, over
plain HTTP and over TLS. The client process sends the OX driver's request (a PUT with its
headers and a 300-byte JSON body) through each transport in interleaved rounds, one request in
flight (OX's one connection) and 16 in flight over 4 connections; its CPU is the process's
own (``time.process_time``: user + system of the client only, the server's not counted). A
floor row shows what a bare protocol writing ready-made bytes pays for the loop and sockets.

    python benchmarks/http_transport.py [--requests 2000] [--rounds 5] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from push_notification.http import (
    Http1Transport,
    HttpClientSettings,
    HttpRequest,
    HttpResponse,
    Transport,
    TransportError,
    connect_failure,
    safe_url,
)
from push_notification.testing.tls import make_tls_files

BODY = b'{"user":"alice","folder":"INBOX","event":"messageNew","from":"Bench <bench@example.org>",' + b"x" * 210 + b"}"
HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Connection": "Keep-Alive",
    "Authorization": "Basic bG9naW46cGFzcw==",
    "Date": email.utils.formatdate(usegmt=True),
}
SKIP = ("User-Agent", "Accept", "Accept-Encoding")  # as the OX driver


class AiohttpTransport:
    """The transport HttpSender had until issue 19: its request path as it was (http/client.py
    at e2b98bf; the certificate and TLS error branches left out)."""

    def __init__(self, settings: HttpClientSettings, *, skip_auto_headers: tuple[str, ...]) -> None:
        self.settings = settings
        self.skip_auto_headers = skip_auto_headers
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        ssl_option: ssl.SSLContext | bool = self.settings.ssl_context or True
        connector = aiohttp.TCPConnector(limit=self.settings.max_parallel_connections, ssl=ssl_option)
        self._session = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=self.skip_auto_headers,
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, request: HttpRequest) -> HttpResponse:
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, request.url, data=request.body or None, headers=request.headers, allow_redirects=False
            ) as resp:
                body = await resp.read()
                return HttpResponse(resp.status, resp.reason or "", resp.headers, body)
        except TimeoutError:
            raise TransportError("timeout", f"Request timed out after {self.settings.request_timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError("connect", connect_failure(exc.host, exc.port, exc.os_error)) from None
        except aiohttp.ClientError as exc:
            raise TransportError("lost", f"Connection lost: {type(exc).__name__}: {safe_url(request.url)}") from None


class FloorTransport:
    """The floor: a bare protocol writing the request's bytes, made once, and waiting for the
    answer's last byte (the server's answers are all alike). No parsing, no checks, no pool:
    what any asyncio client pays for the loop and the sockets."""

    def __init__(self, settings: HttpClientSettings) -> None:
        self.settings = settings
        self.connections: asyncio.Queue[_FloorProtocol] = asyncio.Queue()
        self.url = ""
        self.data = b""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        while not self.connections.empty():
            protocol = self.connections.get_nowait()
            if protocol.transport is not None:
                protocol.transport.close()

    async def request(self, request: HttpRequest) -> HttpResponse:
        if not self.data:
            await self._connect(str(request.url), request)
        protocol = await self.connections.get()
        protocol.answer = asyncio.get_running_loop().create_future()
        assert protocol.transport is not None
        protocol.transport.write(self.data)
        await protocol.answer
        self.connections.put_nowait(protocol)
        return HttpResponse(200, "OK", {}, b"ok")

    async def _connect(self, url: str, request: HttpRequest) -> None:
        host, port = url.split("/")[2].split(":")
        lines = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        path = "/" + url.split("/", 3)[3]
        length = len(request.body)
        head = f"{request.method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{lines}Content-Length: {length}\r\n\r\n"
        self.data = head.encode() + request.body
        loop = asyncio.get_running_loop()
        for _ in range(self.settings.max_parallel_connections):
            context = self.settings.ssl_context
            _, protocol = await loop.create_connection(_FloorProtocol, host, int(port), ssl=context)
            self.connections.put_nowait(protocol)


class _FloorProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if data.endswith(b"ok") and self.answer is not None:
            self.answer.set_result(None)


# ------------------------------------------------------------------ the server
def serve(cert_file: str, key_file: str) -> None:
    """Its own process: answers 200 over plain HTTP and TLS on free ports, which it prints."""
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert_file, key_file)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        print(*(address[1] for address in runner.addresses), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------------ the client
Factory = Callable[[HttpClientSettings], Transport]
FACTORIES: dict[str, Factory] = {
    "aiohttp ClientSession (before)": lambda settings: AiohttpTransport(settings, skip_auto_headers=SKIP),
    "Http1Transport (now)": lambda settings: Http1Transport(settings, skip_auto_headers=SKIP),
    "floor: bare protocol": FloorTransport,
}
#: (scheme, requests in flight, connections)
CASES = [("http", 1, 1), ("http", 16, 4), ("https", 1, 1)]


async def run(transport: Transport, url: str, requests: int, in_flight: int) -> float:
    """CPU seconds of this process for ``requests`` requests, ``in_flight`` at a time."""
    request = HttpRequest("PUT", url, BODY, HEADERS)

    async def worker() -> None:
        for _ in range(requests // in_flight):
            response = await transport.request(request)
            if response.status != 200:
                raise SystemExit(f"the server answered {response.status}")

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.process_time() - started


async def measure(base: dict[str, str], context: ssl.SSLContext, args: argparse.Namespace) -> None:
    totals: dict[tuple[str, str, int], float] = {}
    transports: dict[tuple[str, str, int], Transport] = {}
    for scheme, in_flight, connections in CASES:
        settings = HttpClientSettings(30.0, 1, connections, context if scheme == "https" else None)
        for name, factory in FACTORIES.items():
            transport = transports[name, scheme, in_flight] = factory(settings)
            await transport.start()
            await run(transport, base[scheme] + "/notify", 320, in_flight)  # warm up: connections, caches
    try:
        for _ in range(args.rounds):
            for scheme, in_flight, _connections in CASES:
                for name in FACTORIES:
                    key = (name, scheme, in_flight)
                    used = await run(transports[key], base[scheme] + "/notify", args.requests, in_flight)
                    totals[key] = totals.get(key, 0.0) + used
    finally:
        for transport in transports.values():
            await transport.close()
    sent = args.requests * args.rounds
    load = os.getloadavg()[0]
    print(f"{args.rounds} interleaved rounds of {args.requests} requests per case, {args.loop} loop;"
          f" load average {load:.2f}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"\n{'case':<30} {'transport':<32} {'client CPU µs/request':>22}")
    for scheme, in_flight, connections in CASES:
        case = f"{scheme}, {in_flight} in flight / {connections} conn"
        before = totals[next(iter(FACTORIES)), scheme, in_flight] / sent
        for name in FACTORIES:
            each = totals[name, scheme, in_flight] / sent
            ratio = "" if name == next(iter(FACTORIES)) else f"   ({before / each:.1f}x less)"
            ratio = ratio if "floor" not in name else ""
            print(f"{case:<30} {name:<32} {each * 1e6:>22.1f}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per transport and case per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the daemon's is uvloop")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    args.requests = max(16, args.requests // 16 * 16)  # whole shares for 16 workers
    tls = make_tls_files(Path(tempfile.mkdtemp(prefix="pn-http-bench-")))
    command = [sys.executable, __file__, "--serve", str(tls.cert_file), str(tls.key_file)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        plain, secure = server.stdout.readline().split()
        base = {"http": f"http://127.0.0.1:{plain}", "https": f"https://127.0.0.1:{secure}"}
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(measure(base, context, args))
        else:
            asyncio.run(measure(base, context, args))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
