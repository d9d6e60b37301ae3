"""The queue between the ingress and the driver instances, behind a small interface.

The ingress and the spool reader ``put`` each accepted transaction straight into the queue;
every driver instance consumes its own stream with ``get`` and reports each outcome with
``done``. That is the whole contract, so a distributed engine (Redis Streams, Kafka: one
consumer group per instance) can replace the embedded implementations without touching the
dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Literal, NamedTuple, Protocol

from push_notification.errors import PushNotificationError
from push_notification.queue.retry import RetryPolicy, describe_error
from push_notification.queue.threads import CrashReport
from push_notification.transaction import Transaction

log = logging.getLogger("push_notification.queue")


class QueueFull(PushNotificationError):
    """The queue is past its high-water mark; the sender should retry later (HTTP 503)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: What became of one delivery attempt: ``dropped`` is memory mode's fate for a failure.
Outcome = Literal["delivered", "retry", "dead", "dropped"]

#: Told by ``put_held`` that the queue no longer needs the sender's copy of a transaction.
Release = Callable[[], None]


class Letter(NamedTuple):
    """A transaction to keep as a dead letter (:meth:`Queue.bury`), with when it was accepted."""

    txn: Transaction
    accepted_at: float


#: Told how a :meth:`Queue.put_then` ended: ``None`` once accepted, else why not.
Accepted = Callable[[BaseException | None], None]
#: The puts :meth:`Queue.put_then` runs in tasks, held until they end.
_PUTTING: set[asyncio.Task[None]] = set()


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
    #: How a failed delivery is retried, per instance (set by the daemon from each instance's
    #: settings, as ``observer`` is); an instance not named gets ``default_retry``. A queue that
    #: retries asks :meth:`retry_policy`; one that never retries (memory) ignores both.
    retry_policies: Mapping[str, RetryPolicy] = MappingProxyType({})
    default_retry: RetryPolicy = RetryPolicy()
    #: Instances whose transactions a relay in front takes over (storm control holds them):
    #: ``done`` without an error means handed over, not delivered; set by that relay.
    relayed: frozenset[str] = frozenset()

    def retry_policy(self, instance: str) -> RetryPolicy:
        """The retry policy of ``instance``."""
        return self.retry_policies.get(instance, self.default_retry)

    @abstractmethod
    def attach(self, instances: Iterable[str]) -> None:
        """Set the driver instances transactions are recorded for; called at start and on reload.

        A detached instance's stream is kept only by a durable queue, for when the instance
        is attached again.
        """

    @abstractmethod
    async def put(self, txn: Transaction) -> None:
        """Accept ``txn`` for every attached instance. Once it returns, the transaction is the
        queue's responsibility. Raises :class:`QueueFull` past the high-water mark."""

    def put_then(self, txn: Transaction, then: Accepted) -> None:
        """:meth:`put` for a caller told of the outcome rather than waiting for it (the HTTP
        ingress): ``then(None)`` in the loop once ``txn`` is the queue's responsibility, as when
        ``put`` returns; ``then(error)`` when it is not (:class:`QueueFull`, or
        :class:`asyncio.CancelledError` when the daemon stops first). ``then`` runs once, maybe
        before this returns; it never raises here.

        This default runs ``put`` in a task; a queue that completes puts from its own callbacks
        (SQLite's group commit) calls ``then`` from there: no task and no loop turn of its own.
        """

        def finished(task: asyncio.Task[None]) -> None:
            _PUTTING.discard(task)
            then(asyncio.CancelledError() if task.cancelled() else task.exception())

        task = asyncio.get_running_loop().create_task(self.put(txn))
        _PUTTING.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(finished)

    async def put_held(self, txn: Transaction, release: Release) -> None:
        """Accept ``txn`` whose sender keeps a durable copy (a spool file) until ``release()``.

        The "held" contract, for every queue and sender: the sender keeps its copy, and takes
        it in again after a restart, until ``release`` is called; the queue calls it exactly
        once, when it no longer needs that copy: after every attached instance delivered the
        transaction or gave up on it, or once the queue holds a durable copy of its own for
        every instance still owed it (at the latest before ``close`` returns). Until then the
        queue may deliver from memory, which saves storing the transaction twice on the happy
        path. A sender must not hand in the same copy again while it is held. Raises
        :class:`QueueFull` as ``put`` does (nothing is held then).

        This default stores the transaction with ``put``, then releases it at once.
        """
        await self.put(txn)
        release()

    def offer_held(self, txn: Transaction, release: Release) -> bool:
        """:meth:`put_held` without waiting, when the queue can take ``txn`` at once: True once
        it is accepted (the same contract), False when the sender must ``await put_held``
        instead. Raises :class:`QueueFull` as ``put_held`` does. It lets the spool reader hand
        a file over from its inotify callback, with no task switch per notification.

        This default never takes it: every sender falls back to ``put_held``.
        """
        return False

    @abstractmethod
    async def get(self, instance: str, limit: int) -> list[Transaction]:
        """Wait for and return up to ``limit`` transactions for ``instance``, oldest first;
        ``[]`` once ``instance`` is detached.

        Order per user: once a user's transactions are handed out, none of that user's later
        ones is until ``done`` was told of each (a retry keeps them back too). Several of one
        user's may come in one batch, in order. The dispatcher relies on this to deliver
        different users at once while one user's arrive one after the other.
        """

    @abstractmethod
    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        """Report how delivering ``txn`` to ``instance`` ended (``None`` = delivered)."""

    @abstractmethod
    def depth(self, instance: str | None = None) -> int:
        """Transactions waiting (for one instance, or in all)."""

    def dead_letters(self, instance: str | None = None) -> int:
        """Transactions given up on and kept for ``push-notification queue`` (none by default)."""
        return 0

    def problem(self) -> str | None:
        """Why the queue cannot accept now (a shared engine out of reach), one line for
        ``/healthz``; ``None`` while it can. It clears by itself once the cause is gone."""
        return None

    async def bury(self, instance: str, letters: Sequence[Letter], error: BaseException, attempts: int) -> None:
        """Keep ``letters``, transactions already taken from this queue, as dead letters of
        ``instance``, as if their own delivery had failed for good: storm control's merged
        delivery of them did. Returns once they are as durable as an accepted transaction;
        raises if they cannot be kept (the caller keeps them meanwhile). A queue that keeps no
        dead letters (memory) drops them, as it drops any failure."""
        log.warning(
            "push_notification %s: %d transaction(s) of user %s dropped after %d attempt(s): %s"
            " (queue = memory keeps no dead letters)",
            instance, len(letters), letters[0].txn.user.username if letters else "-", attempts, describe_error(error),
        )  # fmt: skip

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect before the first ``attach`` (a shared queue checks it can be used: one clear
        line at start-up rather than a 503 for every request)."""

    def requeue_taken(self, instance: str) -> None:  # noqa: B027 - optional hook
        """Hand back what ``get`` gave ``instance`` and ``done`` has not been told of: its
        worker crashed and is restarting, and must see those transactions again."""

    def supervise(self, report: CrashReport) -> None:  # noqa: B027 - optional hook
        """Tell ``report`` of crashes of the queue's own threads (they restart either way)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""
