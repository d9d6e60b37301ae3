"""The queue between the ingress and the driver instances, behind a small interface.

The ingress ``put``s each accepted transaction; every driver instance consumes its own
stream with ``get`` and reports each outcome with ``done``. That is the whole contract, so a
distributed engine (Redis Streams, Kafka: one consumer group per instance) can replace the
embedded implementations without touching the dispatcher.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable

from .errors import PushNotificationError
from .transaction import Transaction


class QueueFull(PushNotificationError):
    """The queue is past its high-water mark; the sender should retry later (HTTP 503)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Queue(ABC):
    """Where accepted transactions wait for each driver instance."""

    @abstractmethod
    def attach(self, instances: Iterable[str]) -> None:
        """Set the driver instances that consume; called at start and on reload."""

    @abstractmethod
    async def put(self, txn: Transaction) -> None:
        """Accept ``txn`` for every attached instance. Once it returns, the transaction is the
        queue's responsibility. Raises :class:`QueueFull` past the high-water mark."""

    @abstractmethod
    async def get(self, instance: str, limit: int) -> list[Transaction]:
        """Wait for and return up to ``limit`` transactions for ``instance``, oldest first."""

    @abstractmethod
    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        """Report how delivering ``txn`` to ``instance`` ended (``None`` = delivered)."""

    @abstractmethod
    def depth(self, instance: str | None = None) -> int:
        """Transactions waiting (for one instance, or in all)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""


class MemoryQueue(Queue):
    """In-process queue: fastest, nothing survives a restart, a failed delivery is dropped
    after being logged (Dovecot's own semantics). Bounded by ``max_pending`` per instance."""

    def __init__(self, max_pending: int = 100_000) -> None:
        self.max_pending = max_pending
        self._pending: dict[str, deque[Transaction]] = {}
        self._wakeup: dict[str, asyncio.Event] = {}

    def attach(self, instances: Iterable[str]) -> None:
        wanted = list(instances)
        for name in wanted:
            self._pending.setdefault(name, deque())
            self._wakeup.setdefault(name, asyncio.Event())
        for name in list(self._pending):
            if name not in wanted:
                del self._pending[name]
                self._wakeup.pop(name).set()

    async def put(self, txn: Transaction) -> None:
        pending = self._pending
        for name, items in pending.items():
            if len(items) >= self.max_pending:
                raise QueueFull(f"queue for push_notification {name} holds {len(items)} transactions")
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
                return [items.popleft() for _ in range(count)]
            wakeup = self._wakeup[instance]
            wakeup.clear()
            await wakeup.wait()

    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        """Nothing to record: memory mode neither retries nor keeps dead letters."""

    def depth(self, instance: str | None = None) -> int:
        if instance is not None:
            return len(self._pending.get(instance, ()))
        return sum(len(items) for items in self._pending.values())
