"""The keep-alive connections to one origin: at most ``limit`` (Dovecot's
``http_client_max_parallel_connections``, per peer as lib-http counts it). An idle connection
is reused, the most recently used first; a request finding every connection busy waits its
turn, first come first served, and gets a connection handed over or a free slot to open one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
from collections import deque

from push_notification.http.attempt import TransportError
from push_notification.http.connection import Connection
from push_notification.http.wire import Origin

#: An idle connection older than this is closed, not reused (aiohttp's default): servers
#: close idle ones after 5 s (Apache) to 75 s (nginx), and one closing as a request goes out
#: loses that request.
KEEPALIVE = 15.0
#: How long a host name's addresses are reused (as aiohttp's DNS cache).
DNS_TTL = 10.0


class OriginPool:
    """Connections to ``origin``, over TLS with ``ssl_context`` (``None``: plain)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, ssl_context: ssl.SSLContext | None, limit: int
    ) -> None:
        self.loop = loop
        self.origin = origin
        self.ssl_context = ssl_context
        self.limit = limit
        #: Every open connection, idle or busy (closed with the pool).
        self.connections: set[Connection] = set()
        #: Idle connections, the most recently used last.
        self.idle: list[Connection] = []
        #: Connections counted against ``limit``: open ones and ones being opened.
        self.slots = 0
        #: Requests waiting for a connection (handed over) or a slot (``None``).
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()
        self.closed = False
        self._addresses: list[tuple[int, str]] = []
        self._resolved_until = 0.0

    def take_idle(self, now: float) -> Connection | None:
        """An idle connection fit for a request at loop time ``now``, if there is one (no waiting)."""
        idle = self.idle
        while idle:
            connection = idle.pop()
            if connection.open and now - connection.idle_since < KEEPALIVE:
                return connection
            self._drop(connection)
        return None

    def reserve(self) -> bool:
        """Count a connection about to be opened against the limit, if it has room."""
        if self.slots < self.limit:
            self.slots += 1
            return True
        return False

    def turn(self) -> asyncio.Future[Connection | None]:
        """A place in the queue of requests waiting: its future gets a connection handed
        over, or ``None`` for a slot to open one in. :meth:`leave` it if not awaited to the end."""
        waiter: asyncio.Future[Connection | None] = self.loop.create_future()
        self.waiters.append(waiter)
        return waiter

    def leave(self, waiter: asyncio.Future[Connection | None]) -> None:
        """Give up a place (timed out, cancelled), passing on what it was handed meanwhile."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            handed = waiter.result()
            if handed is None:
                self._free_slot()
            else:
                self.release(handed)
            return
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)

    async def open(self) -> Connection:
        """A new connection in a slot already counted (freed again if this fails). Raises
        ``OSError`` (``ssl.SSLError`` for TLS) when none can be opened."""
        try:
            connection = await self._connect()
        except BaseException:
            self._free_slot()
            raise
        if self.closed:
            connection.close()
            self._free_slot()
            raise TransportError("lost", "Connection lost: the HTTP client was closed")
        self.connections.add(connection)
        return connection

    def release(self, connection: Connection) -> None:
        """Give ``connection`` back after its exchange: to the next waiter or the idle ones
        if the answer left it reusable, else it is closed and its slot freed."""
        if connection.reusable and connection.open and not self.closed:
            waiters = self.waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(connection)
                    return
            connection.idle_since = self.loop.time()
            self.idle.append(connection)
            return
        self._drop(connection)

    def close(self) -> None:
        """Close every connection; waiting requests fail as lost."""
        self.closed = True
        if self.loop.is_closed():  # nothing can be sent on its connections any more
            self.connections.clear()
            self.idle.clear()
            self.waiters.clear()
            return
        for connection in list(self.connections):
            connection.close()
        self.connections.clear()
        self.idle.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(TransportError("lost", "Connection lost: the HTTP client was closed"))

    # ------------------------------------------------------------ slots

    def _free_slot(self) -> None:
        """A slot is free: the first waiter opens a connection in it, or it is uncounted."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.slots -= 1

    def _drop(self, connection: Connection) -> None:
        connection.close()
        self.connections.discard(connection)
        self._free_slot()

    def _lost(self, connection: Connection) -> None:
        """A connection is gone; an idle one is forgotten here (a busy one when released)."""
        if connection in self.idle:
            self.idle.remove(connection)
            self._drop(connection)

    # ------------------------------------------------------------ opening

    async def _connect(self) -> Connection:
        """A new connection to the first address that accepts, TLS handshake done."""
        loop, origin, context = self.loop, self.origin, self.ssl_context
        server_hostname = origin.host if context is not None else None
        errors: list[OSError] = []
        for family, address in await self._resolve():
            try:
                _, connection = await loop.create_connection(
                    lambda: Connection(loop, self._lost),
                    address,
                    origin.port,
                    family=family,
                    ssl=context,
                    server_hostname=server_hostname,
                )
            except ssl.SSLError:
                raise  # the certificate or the handshake: another address would not help
            except OSError as exc:
                errors.append(exc)
            else:
                return connection
        raise _one_error(errors)

    async def _resolve(self) -> list[tuple[int, str]]:
        """The origin's addresses as ``(family, address)``, resolved at most every DNS_TTL."""
        if self.loop.time() < self._resolved_until:
            return self._addresses
        host = self.origin.host
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            infos = await self.loop.getaddrinfo(host, self.origin.port, type=socket.SOCK_STREAM)
            self._addresses = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
            self._resolved_until = self.loop.time() + DNS_TTL
        else:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            self._addresses = [(family, host)]
            self._resolved_until = float("inf")
        return self._addresses


def _one_error(errors: list[OSError]) -> OSError:
    """One error for an origin none of whose addresses took a connection: the first one when
    all failed alike (``Connection refused``), else each reason once."""
    if not errors:
        return OSError("the host name has no address")
    if len({error.errno for error in errors}) == 1:
        return errors[0]
    reasons = (os.strerror(error.errno) if error.errno else str(error) for error in errors)
    return OSError("; ".join(dict.fromkeys(reasons)))
