"""The ingress's connections: a cap on how many are open and a deadline for the first request.

aiohttp waits for a request head without a deadline and accepts connections until the
process runs out of file descriptors, so about a thousand idle sockets (slowloris) would
starve every real client. Here a connection's first request head must be complete within
``ingress_header_timeout`` of its first byte (a connection that sends nothing is closed after
IDLE_TIMEOUT, as an idle keep-alive one is; later requests fall under aiohttp's keep-alive
timeout), and when ``ingress_max_connections`` are open a new connection closes the least
recently active one: an idle attacker's sockets go first, a client that is sending stays.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("push_notification.server.ingress")

#: File descriptors kept for everything but ingress connections (queue, drivers' HTTP pools, logs).
_MIN_RESERVE = 128
#: The end of a request head (a head split between reads is found through the kept tail).
_HEAD_END = b"\r\n\r\n"
#: How long a connection may stay open without sending anything (aiohttp's keep-alive timeout).
IDLE_TIMEOUT = 75.0
#: At most one "connection cap reached" warning per this many seconds.
_WARN_EVERY = 60.0


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to what the open-file limit leaves after a reserve for everything
    else. The soft limit is first raised to the hard one (systemd's ``LimitNOFILE``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep the soft limit: the cap below follows it
    if soft == resource.RLIM_INFINITY:
        return wanted
    allowed = max(1, soft - max(_MIN_RESERVE, soft // 8))
    if wanted > allowed:
        log.info(
            "ingress: ingress_max_connections = %d is more than the open-file limit (%d) leaves room for;"
            " using %d (raise LimitNOFILE to allow more)",
            wanted,
            soft,
            allowed,
        )
        return allowed
    return wanted


class Connections:
    """The open ingress connections, least recently active first."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._open: OrderedDict[_Guarded, None] = OrderedDict()
        self._evicted = 0
        self._warned = 0.0

    def __len__(self) -> int:
        return len(self._open)

    def protocol_factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server``: aiohttp's, guarded."""
        return lambda: _Guarded(self, server())

    def opened(self, guard: _Guarded) -> None:
        self._open[guard] = None
        while len(self._open) > self.max_connections:
            oldest = next(iter(self._open))
            self._open.pop(oldest)
            oldest.close()
            self._evicted += 1
        if self._evicted and time.monotonic() - self._warned >= _WARN_EVERY:
            self._warned = time.monotonic()
            log.warning(
                "ingress: %d connection(s) open, the most allowed (ingress_max_connections); closed %d"
                " least recently active one(s) for new ones",
                len(self._open),
                self._evicted,
            )
            self._evicted = 0

    def active(self, guard: _Guarded) -> None:
        if guard in self._open:
            self._open.move_to_end(guard)

    def closed(self, guard: _Guarded) -> None:
        self._open.pop(guard, None)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the head deadline and the activity order."""

    __slots__ = ("_connections", "_deadline", "_inner", "_started", "_tail", "_transport")

    def __init__(self, connections: Connections, inner: asyncio.Protocol) -> None:
        self._connections = connections
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._started = False
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._deadline = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._too_slow)
        self._connections.opened(self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            if _HEAD_END in self._tail + data[:4] or _HEAD_END in data:
                self._deadline.cancel()
                self._deadline = None
            else:
                self._tail = data[-3:]
                if not self._started:  # the head began: now it must be complete in time
                    self._started = True
                    self._deadline.cancel()
                    loop = asyncio.get_running_loop()
                    self._deadline = loop.call_later(self._connections.header_timeout, self._too_slow)
        self._connections.active(self)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._connections.closed(self)
        self._inner.connection_lost(exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _too_slow(self) -> None:
        self._deadline = None
        if self._started:
            log.debug("ingress: closed a connection whose request head took over %gs", self._connections.header_timeout)
        else:
            log.debug("ingress: closed a connection that sent nothing in %gs", IDLE_TIMEOUT)
        self.close()


class IngressSite(web.BaseSite):
    """Where the ingress listens (``(host, port)`` or a unix socket path), connections guarded."""

    def __init__(self, runner: web.BaseRunner, address: tuple[str, int] | str, connections: Connections) -> None:
        super().__init__(runner)
        self._address = address
        self._connections = connections

    @property
    def name(self) -> str:
        if isinstance(self._address, str):
            return f"http://unix:{self._address}:"
        host, port = self._address
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self._connections.protocol_factory(server)
        loop = asyncio.get_running_loop()
        listening: Any
        if isinstance(self._address, str):
            listening = await loop.create_unix_server(factory, self._address, backlog=self._backlog)
        else:
            host, port = self._address
            listening = await loop.create_server(factory, host, port, backlog=self._backlog, reuse_address=True)
        self._server = listening
