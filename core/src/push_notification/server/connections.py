"""The ingress's listening sockets and open connections, with a cap on how many are open.

Accepting connections until the process runs out of file descriptors would let about a
thousand idle sockets (slowloris) starve every real client. When ``ingress_max_connections``
are open, a new connection closes the least recently active one: an idle attacker's sockets
go first, a client that is sending stays. (Each connection's own deadlines are in http11.py.)

Those deadlines are kept here, on one timer wheel for all connections, rather than with a loop
timer per connection: arming, moving and cancelling a uvloop timer cost more than the rest of
accepting a connection. Deadlines fall into ticks of :func:`wheel_tick` seconds (a quarter of
the shortest timeout, at most 0.25 s); one loop timer is set for the first tick holding any,
so a deadline is acted on at its tick, never before it and at most one tick after, and an
idle daemon is not woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import resource
import time
from collections import OrderedDict

from push_notification.server.http11 import LINGER, Application, Http11, IngressLimits

log = logging.getLogger("push_notification.server.ingress")

#: File descriptors kept for everything but ingress connections (queue, drivers' HTTP pools, logs).
_MIN_RESERVE = 128
#: At most one "connection cap reached" warning per this many seconds.
_WARN_EVERY = 60.0
#: Lost connections kept to serve new ones (their parser and state, reset): the http bridge
#: opens a connection per Dovecot process, and a new one costs more than a reset.
_SPARES = 32


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


def wheel_tick(limits: IngressLimits) -> float:
    """How often the deadlines are looked at: a quarter of the shortest timeout, 10 ms to 0.25 s."""
    return max(0.01, min(0.25, min(limits.header_timeout, limits.body_timeout, LINGER) / 4))


class Connections:
    """The open ingress connections, least recently active first, and their deadlines."""

    def __init__(self, max_connections: int, tick: float = 0.25) -> None:
        self.max_connections = max_connections
        self.tick = tick
        self._open: OrderedDict[Http11, None] = OrderedDict()
        self._evicted = 0
        self._warned = 0.0
        self._emptied: asyncio.Event | None = None
        # The wheel: connections by the tick (loop time / tick) at which to look at them; the
        # ticks that hold any (a heap, with stale entries); the timer set for the first of them.
        self._wheel: dict[int, set[Http11]] = {}
        self._slots: list[int] = []
        self._armed = 0
        self._turning: asyncio.TimerHandle | None = None
        #: Lost connections ready to serve a new one (:attr:`Http11.reusable`), at most ``max_spares``.
        self.spares: list[Http11] = []
        self.max_spares = _SPARES

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, connection: Http11) -> None:
        self._open[connection] = None
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

    def active(self, connection: Http11) -> None:
        if connection in self._open:
            self._open.move_to_end(connection)

    def closed(self, connection: Http11) -> None:
        self._open.pop(connection, None)
        self._unschedule(connection)
        if connection.reusable and len(self.spares) < self.max_spares:
            connection.serve_again()
            self.spares.append(connection)
        if not self._open and self._emptied is not None:
            self._emptied.set()

    # -- the wheel ----------------------------------------------------------------------

    def wake(self, connection: Http11, when: float) -> None:
        """Call ``connection.expired()`` at loop time ``when``, or within a tick after it,
        instead of any later call asked for before (an earlier one stays)."""
        slot = math.ceil(when / self.tick)
        current = connection.wheel_slot
        if current:
            if current <= slot:
                return  # it is looked at sooner anyway, and asks again for what is left
            self._unschedule(connection)
        connection.wheel_slot = slot
        due = self._wheel.get(slot)
        if due is not None:
            due.add(connection)
            return
        self._wheel[slot] = {connection}
        heapq.heappush(self._slots, slot)
        if not self._armed or slot < self._armed:
            self._arm(slot)

    def _unschedule(self, connection: Http11) -> None:
        slot, connection.wheel_slot = connection.wheel_slot, 0
        due = self._wheel.get(slot) if slot else None
        if due is not None:
            due.discard(connection)
            if not due:
                del self._wheel[slot]  # its entry in _slots goes when its time comes

    def _arm(self, slot: int) -> None:
        if self._turning is not None:
            self._turning.cancel()
        self._armed = slot
        self._turning = asyncio.get_running_loop().call_at(slot * self.tick, self._turn)

    def _turn(self) -> None:
        """The connections whose tick has come are told so; the timer moves to the next tick
        that holds any (none while nothing waits: an idle daemon is not woken)."""
        self._turning, self._armed = None, 0
        now = math.floor(asyncio.get_running_loop().time() / self.tick + 1e-6)
        wheel, slots = self._wheel, self._slots
        while slots and slots[0] <= now:
            for connection in wheel.pop(heapq.heappop(slots), ()):
                connection.wheel_slot = 0
                try:
                    connection.expired()
                except Exception as exc:  # noqa: BLE001 - one connection's bug must not stop the others
                    log.error("ingress: a connection's deadline check failed: %s", exc)
                    connection.close()
        while slots and slots[0] not in wheel:
            heapq.heappop(slots)  # left by connections that closed or asked for sooner
        if slots and (not self._armed or slots[0] < self._armed):
            self._arm(slots[0])

    async def finish(self, grace: float) -> None:
        """Close the idle connections; let the others answer what they were sent, for up to
        ``grace`` seconds, then close them too."""
        self._emptied = asyncio.Event()
        for connection in list(self._open):
            connection.finish()
        if self._open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), grace)
        for connection in list(self._open):
            connection.close()


class IngressServer:
    """The ingress, listening on ``address`` (``(host, port)`` or a unix socket path)."""

    def __init__(self, app: Application, limits: IngressLimits) -> None:
        self.app = app
        self.limits = limits
        self.connections = Connections(connection_cap(limits.max_connections), wheel_tick(limits))
        self._server: asyncio.Server | None = None

    async def start(self, address: tuple[str, int] | str) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        loop = asyncio.get_running_loop()
        app, limits, connections = self.app, self.limits, self.connections

        spares = connections.spares

        def connection() -> Http11:
            return spares.pop() if spares else Http11(app, limits, connections)

        if isinstance(address, str):
            self._server = await loop.create_unix_server(connection, address)
        else:
            host, port = address
            self._server = await loop.create_server(connection, host, port, reuse_address=True)

    @property
    def bound(self) -> list[str]:
        """Where it listens: ``host:port`` for each socket, or the unix socket path."""
        names = []
        for sock in self._server.sockets if self._server is not None else ():
            name = sock.getsockname()
            names.append(name if isinstance(name, str) else f"{name[0]}:{name[1]}")
        return names

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening, answer the requests in hand (for up to ``grace`` seconds), close."""
        if self._server is None:
            return
        self._server.close()
        await self.connections.finish(grace)
        await self._server.wait_closed()
        self._server = None
