"""The in-memory queue: Dovecot's own semantics (one try, nothing survives a restart)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable

from push_notification.queue.contract import Queue, QueueFull, Release
from push_notification.transaction import Transaction


class _Stream:
    """One instance's pending transactions, kept per user so the dispatcher may deliver
    different users at once: ``get`` hands out a run of one user's transactions and none of
    that user's later ones until ``done`` was told of every one of them."""

    __slots__ = ("count", "out", "ready", "taken", "users", "wakeup")

    def __init__(self) -> None:
        #: Pending transactions not handed out, per user, oldest first.
        self.users: dict[str, deque[Transaction]] = {}
        #: Users with pending transactions and none out: whose turn is next (an ordered set).
        self.ready: dict[str, None] = {}
        #: Users with transactions out: how many.
        self.out: dict[str, int] = {}
        #: What ``get`` handed out and ``done`` has not reported yet (by identity, in order).
        self.taken: dict[int, Transaction] = {}
        #: Transactions in ``users``.
        self.count = 0
        self.wakeup = asyncio.Event()

    def take(self, limit: int) -> list[Transaction]:
        """Up to ``limit`` transactions: ready users' runs, oldest user first."""
        batch: list[Transaction] = []
        ready, users, out = self.ready, self.users, self.out
        while ready and len(batch) < limit:
            user = next(iter(ready))
            del ready[user]
            fifo = users[user]
            room = limit - len(batch)
            if len(fifo) <= room:
                out[user] = len(fifo)
                batch.extend(fifo)
                del users[user]
            else:
                out[user] = room
                batch.extend(fifo.popleft() for _ in range(room))
        self.count -= len(batch)
        taken = self.taken
        for txn in batch:
            taken[id(txn)] = txn
        return batch

    def finished(self, txn: Transaction) -> bool:
        """``txn`` was handed out and is done: its user's next ones may go. False if it was
        not out (handed back meanwhile)."""
        if self.taken.pop(id(txn), None) is None:
            return False
        user = txn.user.username
        left = self.out[user] - 1
        if left:
            self.out[user] = left
        else:
            del self.out[user]
            if user in self.users:
                self.ready[user] = None
                self.wakeup.set()
        return True

    def hand_back(self) -> None:
        """What was handed out and not finished is first in line again, in order."""
        if not self.taken:
            return
        returned: dict[str, list[Transaction]] = {}
        for txn in self.taken.values():
            returned.setdefault(txn.user.username, []).append(txn)
        self.count += len(self.taken)
        self.taken.clear()
        self.out.clear()
        for user, txns in returned.items():
            fifo = self.users.get(user)
            if fifo is None:
                self.users[user] = deque(txns)
            else:
                fifo.extendleft(reversed(txns))
        self.ready = dict.fromkeys([*returned, *self.users])
        self.wakeup.set()

    def pending(self) -> Iterable[Transaction]:
        for fifo in self.users.values():
            yield from fifo


class MemoryQueue(Queue):
    """In-process queue: fastest, nothing survives a restart, a failed delivery is dropped
    after being logged (Dovecot's own semantics). Bounded by ``max_pending`` per instance.
    A reload that restarts an instance hands it back what it had taken and not finished."""

    def __init__(self, max_pending: int = 100_000) -> None:
        self.max_pending = max_pending
        self._streams: dict[str, _Stream] = {}
        #: Streams of instances removed by the last ``attach``, until the next one.
        self._detached: dict[str, _Stream] = {}
        #: Monotonic acceptance time per transaction still owed to some instance (for latency).
        self._accepted: dict[str, tuple[float, int]] = {}

    def attach(self, instances: Iterable[str]) -> None:
        wanted = list(instances)
        for name in wanted:
            # An instance restarted by a reload (detached, then attached again) keeps its queue.
            if name not in self._streams:
                detached = self._detached.pop(name, None)
                self._streams[name] = detached if detached is not None else _Stream()
        for dropped in self._detached.values():
            for txn in dropped.pending():
                self._forget(txn)
        self._detached.clear()
        for name in list(self._streams):
            if name not in wanted:
                stream = self._streams.pop(name)
                # Taken but unfinished (the worker was stopped mid-batch): first in line again.
                stream.hand_back()
                self._detached[name] = stream
                stream.wakeup.set()

    def requeue_taken(self, instance: str) -> None:
        stream = self._streams.get(instance)
        if stream is not None:
            stream.hand_back()

    async def put(self, txn: Transaction) -> None:
        self._append(txn)

    def offer_held(self, txn: Transaction, release: Release) -> bool:
        """Memory mode never waits: taken, and the sender's copy released at once (nothing
        survives a restart here anyway)."""
        self._append(txn)
        release()
        return True

    def _append(self, txn: Transaction) -> None:
        streams = self._streams
        for name, stream in streams.items():
            if stream.count >= self.max_pending:
                raise QueueFull(f"queue for push_notification {name} holds {stream.count} transactions")
        if not streams:
            return
        self._accepted[txn.id] = (time.monotonic(), len(streams))
        self.observer.accepted(txn)
        user = txn.user.username
        for stream in streams.values():  # _Stream.append, inlined: the hot path
            fifo = stream.users.get(user)
            if fifo is None:
                stream.users[user] = deque((txn,))
                if user not in stream.out:
                    stream.ready[user] = None
            else:
                fifo.append(txn)
            stream.count += 1
            stream.wakeup.set()

    async def get(self, instance: str, limit: int) -> list[Transaction]:
        """A run of one user's transactions is handed out whole (up to ``limit``); that user's
        later ones wait until ``done`` was told of each (order per user, see :class:`_Stream`)."""
        while True:
            stream = self._streams.get(instance)
            if stream is None:
                return []
            if stream.ready:
                return stream.take(limit)
            stream.wakeup.clear()
            await stream.wakeup.wait()

    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        """Memory mode neither retries nor keeps dead letters: a failure is dropped (logged
        by the dispatcher), as Dovecot does."""
        stream = self._streams.get(instance) or self._detached.get(instance)
        if stream is not None and not stream.finished(txn):
            return  # handed back by a reload or restart: its successor delivers it
        accepted = self._forget(txn)
        self.observer.finished(instance, "delivered" if error is None else "dropped", time.monotonic() - accepted)

    def _forget(self, txn: Transaction) -> float:
        """One instance is done with ``txn``; its acceptance time (monotonic)."""
        accepted, owed = self._accepted.pop(txn.id, (time.monotonic(), 1))
        if owed > 1:
            self._accepted[txn.id] = (accepted, owed - 1)
        return accepted

    def pending_transactions(self) -> int:
        """Distinct transactions still waiting for some instance (``depth`` counts deliveries)."""
        return len({id(txn) for stream in self._streams.values() for txn in stream.pending()})

    def depth(self, instance: str | None = None) -> int:
        if instance is not None:
            stream = self._streams.get(instance)
            return stream.count if stream is not None else 0
        return sum(stream.count for stream in self._streams.values())
