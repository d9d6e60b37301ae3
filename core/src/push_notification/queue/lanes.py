"""A driver instance's lane: its pending deliveries in memory, in per-user order.

The queue keeps one lane per instance so a failing endpoint never holds back another. A
user has at most one delivery in flight per lane, and a delivery waiting for its retry holds
back that user's later transactions (in that lane only): order is kept per user, while other
users go on. Which storage backs the lane is the queue's business.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from push_notification.transaction import Transaction


@dataclass(eq=False, slots=True)
class Entry:
    """A transaction owed to one lane."""

    seq: int
    txn: Transaction
    accepted_at: float
    attempts: int = 0
    next_at: float = 0.0
    #: Its only durable copy is still the sender's (a spool file), not a row of the queue.
    held: bool = False


@dataclass(eq=False)
class Lane:
    """One driver instance's deliveries: per-user FIFOs, who is ready, who waits for a retry.

    The lane keeps its own counts; the queue tells it what happened (accepted, refilled,
    retried, finished) and asks it what to do next (take, refill, wait).
    """

    name: str
    #: At most this many entries in memory; the rest wait in the queue's store.
    window: int
    #: Pending transactions owed to this lane, in memory and on disk.
    pending: int = 0
    #: Entries in memory (sum of the user FIFOs).
    in_memory: int = 0
    #: While set, new rows stay on disk and are read back in order by a refill.
    spilled: bool = True
    refilling: bool = False
    #: Every pending row with ``seq <= loaded_upto`` is in memory (or in flight).
    loaded_upto: int = 0
    users: dict[str, deque[Entry]] = field(default_factory=dict)
    #: Users whose head entry may be delivered now (an ordered set).
    ready: dict[str, None] = field(default_factory=dict)
    #: ``(next_at, seq, user)`` of heads waiting for a retry; stale items are skipped.
    waiting: list[tuple[float, int, str]] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what the queue tells the lane -------------------------------------------------

    @property
    def has_room(self) -> bool:
        """Whether a new entry may wait in memory (no backlog on disk ahead of it)."""
        return not self.spilled and self.in_memory < self.window

    def accept(self, entry: Entry, now: float) -> None:
        """A new transaction is owed to this lane: into memory if there is room, else it
        waits in the store behind the backlog (only a stored entry may be left out)."""
        self.pending += 1
        if self.has_room:
            self.load(entry, now)
        else:
            self.spilled = True

    def load(self, entry: Entry, now: float) -> None:
        """Take a pending entry into memory, keeping ``loaded_upto`` true."""
        self.add(entry, now)
        if entry.seq > self.loaded_upto:
            self.loaded_upto = entry.seq

    def requeued(self, entry: Entry, now: float) -> None:
        """A dead letter is pending again: into memory unless a refill will read it, in order."""
        self.pending += 1
        if not self.spilled or entry.seq <= self.loaded_upto:
            self.load(entry, now)

    def refill_from(self) -> tuple[int, int] | None:
        """``(after_seq, count)`` of stored rows to read back now, or None; a refill then
        runs until :meth:`refilled` or :meth:`refill_failed`."""
        if not self.spilled or self.refilling or self.in_memory > self.window // 2:
            return None
        self.refilling = True
        return self.loaded_upto, self.window - self.in_memory

    def refilled(self, entries: Iterable[Entry], now: float, *, caught_up: bool) -> None:
        """Rows read back by a refill, in ``seq`` order; ``caught_up``: none are left behind."""
        self.refilling = False
        for entry in entries:
            self.load(entry, now)
        if caught_up:
            self.spilled = False
        self.wakeup.set()

    def refill_failed(self) -> None:
        self.refilling = False

    def retry(self, entry: Entry, when: float, now: float) -> None:
        """The in-flight ``entry`` failed and is tried again at ``when``; its user waits."""
        entry.next_at = when
        user = entry.txn.user.username
        self.in_flight.discard(user)
        self.schedule(user, now)

    async def wait(self, due: float | None, now: float) -> None:
        """Until something may be ready: woken by the queue, or ``due`` (a retry) passed."""
        self.wakeup.clear()
        if due is None:
            await self.wakeup.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(due - now):
                await self.wakeup.wait()

    def held(self) -> list[Entry]:
        """Entries whose only durable copy is still the sender's."""
        return [entry for fifo in self.users.values() for entry in fifo if entry.held]

    # -- the lane's own bookkeeping ----------------------------------------------------

    def add(self, entry: Entry, now: float) -> None:
        """Take an entry into memory, in ``seq`` order within its user."""
        user = entry.txn.user.username
        fifo = self.users.get(user)
        self.in_memory += 1
        if fifo is None:
            self.users[user] = deque((entry,))
            self.schedule(user, now)
            return
        if not fifo or entry.seq > fifo[-1].seq:
            fifo.append(entry)
            return
        # A requeued dead letter older than what is queued: never ahead of a delivery in flight.
        keys = [e.seq for e in fifo]
        position = bisect.bisect(keys, entry.seq, lo=1 if user in self.in_flight else 0)
        fifo.insert(position, entry)
        if position == 0:
            self.schedule(user, now)

    def schedule(self, user: str, now: float) -> None:
        """Make ``user``'s head deliverable now or when its retry is due."""
        head = self.users[user][0]
        if head.next_at <= now:
            self.ready[user] = None
            self.wakeup.set()
        else:
            heapq.heappush(self.waiting, (head.next_at, head.seq, user))
            self.wakeup.set()

    def promote(self, now: float) -> float | None:
        """Move heads whose retry is due to ``ready``; the time of the next due one."""
        waiting = self.waiting
        while waiting and waiting[0][0] <= now:
            _, seq, user = heapq.heappop(waiting)
            fifo = self.users.get(user)
            if fifo and fifo[0].seq == seq and user not in self.in_flight:
                self.ready[user] = None
        return waiting[0][0] if waiting else None

    def take(self, limit: int) -> list[Transaction]:
        """Up to ``limit`` heads of distinct users, now in flight."""
        batch: list[Transaction] = []
        ready = self.ready
        while ready and len(batch) < limit:
            user = next(iter(ready))
            del ready[user]
            self.in_flight.add(user)
            batch.append(self.users[user][0].txn)
        return batch

    def requeue_in_flight(self, now: float) -> None:
        """The consumer lost what it had taken (its worker crashed): deliverable again."""
        users, self.in_flight = self.in_flight, set()
        for user in users:
            if user in self.users:
                self.schedule(user, now)

    def head(self, txn: Transaction) -> Entry | None:
        """The in-flight entry of ``txn``, if this lane handed it out."""
        fifo = self.users.get(txn.user.username)
        if fifo and fifo[0].txn is txn:
            return fifo[0]
        return None

    def finish(self, entry: Entry, now: float) -> None:
        """``entry`` left the lane (delivered or dead): its user's next one may go."""
        user = entry.txn.user.username
        fifo = self.users[user]
        fifo.popleft()
        self.in_flight.discard(user)
        self.in_memory -= 1
        self.pending -= 1
        if fifo:
            self.schedule(user, now)
        else:
            del self.users[user]
