"""The default transport of the sender: HTTP/1.1 over keep-alive connections, pooled per origin.

Why not aiohttp's ``ClientSession``, which carried the attempts before: a push is one small
request and a short answer, and the session spent most of the daemon's CPU per notification on
machinery a push does not use (request and response objects, tracing signals, cookie jar,
stream readers, per-request timers and tasks): about 0.39 ms of the 0.73 ms an OX notification
cost. Here a request is its head as one bytes object (the URL read once and cached) written to
a pooled connection, whose :class:`~push_notification.http.connection.Connection` protocol
feeds the answer to httptools' C parser and settles one future. ``benchmarks/http_transport.py``
compares the two in one run.

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
from typing import TYPE_CHECKING

from push_notification.http.attempt import HttpRequest, HttpResponse, TransportError, connect_failure
from push_notification.http.connection import Connection
from push_notification.http.pool import OriginPool
from push_notification.http.wire import Origin, request_head, target_of

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
    """

    def __init__(
        self, settings: HttpClientSettings, *, skip_auto_headers: tuple[str, ...] = ("User-Agent", "Accept-Encoding")
    ) -> None:
        self.settings = settings
        skipped = {name.lower() for name in skip_auto_headers}
        self.auto_headers = tuple(header for header in AUTO_HEADERS if header[0] not in skipped)
        self._pools: dict[Origin, OriginPool] = {}
        self._default_tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Nothing to do: connections open at the first request to their origin."""

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    async def request(self, request: HttpRequest) -> HttpResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout
        method = request.method
        target = target_of(request.url)
        body = request.body
        head = request_head(method, target, request.headers, len(body), self.auto_headers)
        data = head.data + body if body else head.data
        pool = self._pools.get(target.origin)
        if pool is None or pool.loop is not loop:
            pool = self._new_pool(loop, target.origin)
        may_repeat = method in IDEMPOTENT
        while True:
            connection = pool.take_idle()
            reused = connection is not None
            if connection is None:
                connection, reused = await self._acquire(pool, deadline)
            waiter = connection.send(data, head_only=method == "HEAD", close=head.close)
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                response = await waiter
            except TransportError:
                pool.release(connection)
                if reused and may_repeat and not connection.answered:
                    may_repeat = False
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
            finally:
                timer.cancel()
            pool.release(connection)
            return response

    async def _acquire(self, pool: OriginPool, deadline: float) -> tuple[Connection, bool]:
        """A connection from ``pool`` by ``deadline``; failures as :class:`TransportError`."""
        origin = pool.origin
        try:
            async with asyncio.timeout_at(deadline):
                return await pool.acquire()
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
        old = self._pools.get(origin)
        if old is not None:  # made on another event loop (a test's): its connections are of no use here
            old.close()
        pool = self._pools[origin] = OriginPool(loop, origin, context, self.settings.max_parallel_connections)
        return pool

    def _timed_out(self) -> str:
        return f"Request timed out after {self.settings.request_timeout:g}s"


def _expire(waiter: asyncio.Future[HttpResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
