"""The default transport of the sender: HTTP/1.1 over keep-alive connections, pooled per origin.

Why not aiohttp's ``ClientSession``, which carried the attempts before: a push is one small
request and a short answer, and the session spent most of the daemon's CPU per notification on
machinery a push does not use (request and response objects, tracing signals, cookie jar,
stream readers, per-request timers and tasks): about 0.39 ms of the 0.73 ms an OX notification
cost. Here a request is its head as one bytes object (the URL read once and cached) written to
a pooled connection, whose :class:`~push_notification.http.connection.Connection` protocol
feeds the answer to httptools' C parser and settles one future. ``benchmarks/http_transport.py``
compares the two in one run: about 100 µs of client CPU per request against 300-400 µs, within
some 30 µs of a bare protocol writing ready-made bytes (the loop and the socket calls).

Kept from aiohttp: one deadline per attempt (``http_client_request_timeout``, waiting for a
connection included), ``Accept: */*`` and ``Content-Type: application/octet-stream`` unless
the request has its own or skips them, Basic auth from a URL's ``user:password@``, the same
percent-encoding of URLs (yarl), and sending an idempotent request (PUT, not POST) once more
on a new connection when a reused one turns out closed before answering. Not supported, as
before: proxies, redirects (refused by the policy), compressed answers.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any

from push_notification.http.attempt import HttpRequest, HttpResponse, TransportError, connect_failure
from push_notification.http.connection import Connection
from push_notification.http.pool import OriginPool
from push_notification.http.wire import Origin, RequestHeads, Target, target_of

if TYPE_CHECKING:
    from push_notification.http.client import HttpClientSettings

#: Headers sent unless the request has its own or the transport is told to skip them.
AUTO_HEADERS = (("accept", "Accept", "*/*"), ("content-type", "Content-Type", "application/octet-stream"))
#: Methods a request may be repeated with (RFC 9110): sent again when a reused connection was
#: found closed before it answered.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class Http1Transport:
    """HTTP/1.1 over keep-alive connections, at most ``max_parallel_connections`` per origin.

    ``skip_auto_headers``: automatic headers the endpoint must not get (Dovecot sends OX no
    ``Accept``); ``User-Agent`` and ``Accept-Encoding`` are never sent, so naming them is moot.
    ``send_date``: each attempt carries a ``Date`` of when it is written (Dovecot's to OX).
    """

    def __init__(
        self,
        settings: HttpClientSettings,
        *,
        skip_auto_headers: tuple[str, ...] = ("User-Agent", "Accept-Encoding"),
        send_date: bool = False,
    ) -> None:
        self.settings = settings
        skipped = {name.lower() for name in skip_auto_headers}
        auto_headers = tuple(header for header in AUTO_HEADERS if header[0] not in skipped)
        self.heads = RequestHeads(auto_headers, send_date=send_date)
        #: The last URL and its target: a driver sends to one URL object again and again.
        self._url: object = None
        self._target: Target | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pools: dict[Origin, OriginPool] = {}
        self._deadlines: Deadlines | None = None
        self._default_tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Nothing to do: connections open at the first request to their origin."""

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()
        if self._deadlines is not None:
            self._deadlines.close()
            self._deadlines = None
        self._loop = None

    async def request(self, request: HttpRequest) -> HttpResponse:
        loop = self._loop
        # A loop that is running is the one running here (one per thread); asking asyncio
        # which loop runs costs a getpid() system call per request on Python 3.11.
        if loop is None or not loop.is_running():
            loop = asyncio.get_running_loop()
            await self._bind(loop)
        deadlines = self._deadlines
        assert deadlines is not None
        now = loop.time()
        deadline = now + self.settings.request_timeout
        method, url = request.method, request.url
        target = self._target
        if url is not self._url or target is None:  # identity: URLs and strings are immutable
            target = self._target = target_of(url)
            self._url = url
        data, close = self.heads.message(method, target, request.headers, request.body)
        pool = self._pools.get(target.origin)
        if pool is None:
            pool = self._pools[target.origin] = self._new_pool(loop, target.origin)
        may_repeat = method in IDEMPOTENT
        while True:
            connection = pool.take_idle(now)
            reused = connection is not None
            if connection is None:
                connection, reused = await self._connection(pool, deadline, deadlines)
            waiter = connection.send(data, head_only=method == "HEAD", close=close)
            deadlines.watch(deadline, waiter)
            try:
                response = await waiter
            except TransportError:
                pool.release(connection)
                if reused and may_repeat and not connection.answered:
                    may_repeat = False
                    now = loop.time()
                    continue
                raise
            except TimeoutError:
                connection.close()
                pool.release(connection)
                raise TransportError("timeout", self._timed_out()) from None
            except BaseException:  # cancelled: the answer will never be read
                connection.close()
                pool.release(connection)
                raise
            pool.release(connection)
            return response

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop``: connections made on another one (a test's) are of no use on it."""
        if loop is self._loop:
            return
        await self.close()
        self._loop = loop
        self._deadlines = Deadlines(loop)

    async def _connection(self, pool: OriginPool, deadline: float, deadlines: Deadlines) -> tuple[Connection, bool]:
        """A connection from ``pool`` by ``deadline``, and whether it served before: one handed
        over after waiting a turn, or a new one; failures as :class:`TransportError`."""
        if not pool.reserve():
            turn = pool.turn()
            deadlines.watch(deadline, turn)
            try:
                handed = await turn
            except TimeoutError:
                pool.leave(turn)
                raise TransportError("timeout", self._timed_out()) from None
            except BaseException:
                pool.leave(turn)
                raise
            if handed is not None:
                return handed, True
        return await self._open(pool, deadline), False

    async def _open(self, pool: OriginPool, deadline: float) -> Connection:
        origin = pool.origin
        try:
            async with asyncio.timeout_at(deadline):
                return await pool.open()
        except TimeoutError:
            raise TransportError("timeout", self._timed_out()) from None
        except ssl.SSLCertVerificationError as exc:
            message = (
                f"TLS certificate not accepted: {exc}; set ssl_client_ca_file to the CA"
                " that signed the endpoint's certificate"
            )
            raise TransportError("certificate", message) from None
        except ssl.SSLError as exc:
            raise TransportError("tls", f"TLS handshake failed with {origin.host}:{origin.port}: {exc}") from None
        except OSError as exc:
            raise TransportError("connect", connect_failure(origin.host, origin.port, exc)) from None

    def _new_pool(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> OriginPool:
        context = None
        if origin.scheme == "https":
            context = self.settings.ssl_context
            if context is None:  # settings read for http:// only, asked for https://: verify as usual
                if self._default_tls is None:
                    self._default_tls = ssl.create_default_context()
                context = self._default_tls
        return OriginPool(loop, origin, context, self.settings.max_parallel_connections)

    def _timed_out(self) -> str:
        return f"Request timed out after {self.settings.request_timeout:g}s"


class Deadlines:
    """Times out what a transport's requests wait for, with one timer for all of them.

    A timer per request cost more than reading its answer (uvloop makes and frees a libuv
    timer each time). One transport's deadlines are all ``now + request_timeout``, so they
    come in order: the earliest pending one is at the front, answered ones leave from there,
    and one timer armed for the front's deadline is all it takes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Waiters and their deadlines, oldest first (two deques: no tuple per request).
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.deadlines: deque[float] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def watch(self, deadline: float, waiter: asyncio.Future[Any]) -> None:
        """Fail ``waiter`` (an answer, or a turn for a connection) with ``TimeoutError`` if
        it is not done by ``deadline``."""
        waiters, deadlines = self.waiters, self.deadlines
        while waiters and waiters[0].done():
            waiters.popleft()
            deadlines.popleft()
        waiters.append(waiter)
        deadlines.append(deadline)
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._expire)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiters.clear()
        self.deadlines.clear()

    def _expire(self) -> None:
        self.timer = None
        # Timers fire to the millisecond (uvloop): one a hair early must not re-arm for nothing.
        now = self.loop.time() + 0.001
        pending = [
            (deadline, waiter)
            for deadline, waiter in zip(self.deadlines, self.waiters, strict=True)
            if not waiter.done()
        ]
        for deadline, waiter in pending:
            if deadline <= now:
                waiter.set_exception(TimeoutError())
        # A request sent again on a new connection keeps its deadline: one may stand out of order.
        pending = [(deadline, waiter) for deadline, waiter in pending if not waiter.done()]
        self.deadlines = deque(deadline for deadline, _ in pending)
        self.waiters = deque(waiter for _, waiter in pending)
        if pending:
            self.timer = self.loop.call_at(min(self.deadlines), self._expire)
