"""The in-memory queue: Dovecot's own semantics (one try, nothing survives a restart)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable

from push_notification.queue.contract import Queue, QueueFull, Release
from push_notification.transaction import Transaction


class MemoryQueue(Queue):
    """In-process queue: fastest, nothing survives a restart, a failed delivery is dropped
    after being logged (Dovecot's own semantics). Bounded by ``max_pending`` per instance.
    A reload that restarts an instance hands it back what it had taken and not finished."""

    def __init__(self, max_pending: int = 100_000) -> None:
        self.max_pending = max_pending
        self._pending: dict[str, deque[Transaction]] = {}
        self._wakeup: dict[str, asyncio.Event] = {}
        #: Per instance, what ``get`` handed out and ``done`` has not reported yet (by identity).
        self._taken: dict[str, dict[int, Transaction]] = {}
        #: Queues of instances removed by the last ``attach``, until the next one.
        self._detached: dict[str, deque[Transaction]] = {}
        #: Monotonic acceptance time per transaction still owed to some instance (for latency).
        self._accepted: dict[str, tuple[float, int]] = {}

    def attach(self, instances: Iterable[str]) -> None:
        wanted = list(instances)
        for name in wanted:
            # An instance restarted by a reload (detached, then attached again) keeps its queue.
            self._pending.setdefault(name, self._detached.pop(name, deque()))
            self._wakeup.setdefault(name, asyncio.Event())
        for dropped in self._detached.values():
            for txn in dropped:
                self._forget(txn)
        self._detached.clear()
        for name in list(self._pending):
            if name not in wanted:
                pending = self._pending.pop(name)
                # Taken but unfinished (the worker was stopped mid-batch): first in line again.
                pending.extendleft(reversed(self._taken.pop(name, {}).values()))
                self._detached[name] = pending
                self._wakeup.pop(name).set()

    def requeue_taken(self, instance: str) -> None:
        pending = self._pending.get(instance)
        taken = self._taken.pop(instance, {})
        if pending is not None and taken:
            pending.extendleft(reversed(taken.values()))
            self._wakeup[instance].set()

    async def put(self, txn: Transaction) -> None:
        self._append(txn)

    def offer_held(self, txn: Transaction, release: Release) -> bool:
        """Memory mode never waits: taken, and the sender's copy released at once (nothing
        survives a restart here anyway)."""
        self._append(txn)
        release()
        return True

    def _append(self, txn: Transaction) -> None:
        pending = self._pending
        for name, items in pending.items():
            if len(items) >= self.max_pending:
                raise QueueFull(f"queue for push_notification {name} holds {len(items)} transactions")
        if not pending:
            return
        self._accepted[txn.id] = (time.monotonic(), len(pending))
        self.observer.accepted(txn)
        for name, items in pending.items():
            items.append(txn)
            self._wakeup[name].set()

    async def get(self, instance: str, limit: int) -> list[Transaction]:
        while True:
            items = self._pending.get(instance)
            if items is None:
                return []
            if items:
                count = min(limit, len(items))
                batch = [items.popleft() for _ in range(count)]
                taken = self._taken.setdefault(instance, {})
                for txn in batch:
                    taken[id(txn)] = txn
                return batch
            wakeup = self._wakeup[instance]
            wakeup.clear()
            await wakeup.wait()

    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        """Memory mode neither retries nor keeps dead letters: a failure is dropped (logged
        by the dispatcher), as Dovecot does."""
        taken = self._taken.get(instance)
        if taken is not None:
            taken.pop(id(txn), None)
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
        return len({id(txn) for items in self._pending.values() for txn in items})

    def depth(self, instance: str | None = None) -> int:
        if instance is not None:
            return len(self._pending.get(instance, ()))
        return sum(len(items) for items in self._pending.values())
