"""The queue between the ingress and the driver instances, behind a small interface.

The ingress ``put``s each accepted transaction; every driver instance consumes its own
stream with ``get`` and reports each outcome with ``done``. That is the whole contract, so a
distributed engine (Redis Streams, Kafka: one consumer group per instance) can replace the
embedded implementations without touching the dispatcher.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal, Protocol

from .errors import PushNotificationError
from .transaction import Transaction


class QueueFull(PushNotificationError):
    """The queue is past its high-water mark; the sender should retry later (HTTP 503)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: What became of one delivery attempt: ``dropped`` is memory mode's fate for a failure.
Outcome = Literal["delivered", "retry", "dead", "dropped"]


class QueueObserver(Protocol):
    """Told what a queue accepts and how deliveries end (the metrics implement it)."""

    def accepted(self, txn: Transaction) -> None: ...

    def finished(self, instance: str, outcome: Outcome, latency: float) -> None:
        """``latency``: seconds from acceptance to this outcome."""


class _Unobserved:
    def accepted(self, txn: Transaction) -> None:
        pass

    def finished(self, instance: str, outcome: Outcome, latency: float) -> None:
        pass


class Queue(ABC):
    """Where accepted transactions wait for each driver instance."""

    #: Replaced by the daemon with its metrics; implementations report through it.
    observer: QueueObserver = _Unobserved()
    #: Whether accepted transactions survive a restart (shutdown need not wait for them).
    durable: bool = False

    @abstractmethod
    def attach(self, instances: Iterable[str]) -> None:
        """Set the driver instances that consume; called at start and on reload."""

    @abstractmethod
    async def put(self, txn: Transaction) -> None:
        """Accept ``txn`` for every attached instance. Once it returns, the transaction is the
        queue's responsibility. Raises :class:`QueueFull` past the high-water mark."""

    async def put_held(self, txn: Transaction, release: Callable[[], None]) -> None:
        """Accept ``txn`` whose sender keeps a durable copy (a spool file) until ``release()``.

        A queue may deliver from memory and call ``release`` only once it no longer needs that
        copy, which saves storing the transaction twice. This default stores it, then releases.
        """
        await self.put(txn)
        release()

    @abstractmethod
    async def get(self, instance: str, limit: int) -> list[Transaction]:
        """Wait for and return up to ``limit`` transactions for ``instance``, oldest first."""

    @abstractmethod
    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        """Report how delivering ``txn`` to ``instance`` ended (``None`` = delivered)."""

    @abstractmethod
    def depth(self, instance: str | None = None) -> int:
        """Transactions waiting (for one instance, or in all)."""

    def dead_letters(self, instance: str | None = None) -> int:
        """Transactions given up on and kept for ``push-notification queue`` (none by default)."""
        return 0

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""


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

    async def put(self, txn: Transaction) -> None:
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

    def depth(self, instance: str | None = None) -> int:
        if instance is not None:
            return len(self._pending.get(instance, ()))
        return sum(len(items) for items in self._pending.values())
