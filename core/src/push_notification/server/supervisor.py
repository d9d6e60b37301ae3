"""Supervision: no long-running task of the daemon dies silently.

Every long-running piece (the spool reader, each instance's worker, the queue's writer and
checkpoint threads) runs under one :class:`Supervisor`. A crash is logged once with its
reason, counted (``push_notification_task_crashes_total{task=...}``), turns ``/healthz`` to
degraded, and the piece restarts after a backoff that doubles per crash. A piece that keeps
crashing (``max_crashes`` within ``crash_window`` seconds) cannot be helped by restarting
it here: the supervisor then asks the daemon to stop with an error, so the service manager
restarts the whole process (``Restart=on-failure``).

Conditions that are not crashes (a spool directory the daemon cannot write) are reported
to the same :class:`Health` by whoever notices them, and cleared when they are fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from push_notification.queue.retry import describe_error

log = logging.getLogger("push_notification.server.supervisor")

#: Wait before the first restart (seconds); doubles with every further crash.
MIN_BACKOFF = 0.1
#: Longest wait before a restart.
MAX_BACKOFF = 30.0
#: A restarted task that ran this long without crashing again is healthy again.
STABLE_AFTER = 30.0


class Health:
    """What ``/healthz`` reports: ok, or degraded with one reason per problem."""

    def __init__(self) -> None:
        self._problems: dict[str, str] = {}

    def degrade(self, key: str, reason: str) -> None:
        """Report a problem under ``key`` (a later report of the same key replaces it)."""
        self._problems[key] = reason

    def recover(self, key: str) -> None:
        """The problem reported under ``key`` is gone."""
        self._problems.pop(key, None)

    @property
    def ok(self) -> bool:
        return not self._problems

    def reasons(self) -> list[str]:
        """Every current problem, one line each, in a stable order."""
        return [self._problems[key] for key in sorted(self._problems)]


class Supervisor:
    """Runs tasks that restart on a crash; reports thread crashes the same way."""

    def __init__(
        self,
        health: Health,
        *,
        counted: Callable[[str], None] = lambda task: None,
        on_fatal: Callable[[], None] = lambda: None,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        stable_after: float = STABLE_AFTER,
        max_crashes: int = 5,
        crash_window: float = 60.0,
    ) -> None:
        self.health = health
        #: Called with the task's name on every crash (the metrics count it).
        self.counted = counted
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.max_crashes = max_crashes
        self.crash_window = crash_window
        #: Called once when a task keeps crashing: the daemon must stop with an error.
        self.on_fatal = on_fatal
        #: The reason, once that happened.
        self.fatal: str | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._crashes: dict[str, deque[float]] = {}
        self._recovery: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- tasks ---------------------------------------------------------------------------

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` as the task ``name``, restarting it whenever it raises. A task that
        returns is finished (an instance's worker does when its instance is removed)."""
        self._loop = asyncio.get_running_loop()
        task = asyncio.create_task(self._keep(name, run), name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))
        return task

    async def cancel(self, name: str) -> None:
        """Stop the task ``name`` (reload, shutdown); nothing is logged for it."""
        task = self._tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._settled(name)

    async def stop(self) -> None:
        """Stop every task (shutdown)."""
        for name in list(self._tasks):
            await self.cancel(name)

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the whole point: log, count, restart
                delay = self.crashed(name, exc)
            if delay is None:
                return
            await asyncio.sleep(delay)

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]

    # -- crashes (tasks, and threads through thread_crashed) -------------------------------

    def thread_crashed(self, name: str, exc: BaseException) -> None:
        """A supervised thread crashed (it restarts itself): call from that thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.error("%s crashed: %s", name, describe_error(exc))
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: shutdown
            loop.call_soon_threadsafe(self.crashed, name, exc)

    def bind(self) -> None:
        """Remember the running loop (for :meth:`thread_crashed` before any task starts)."""
        self._loop = asyncio.get_running_loop()

    def crashed(self, name: str, exc: BaseException) -> float | None:
        """Log, count and report one crash of ``name``; the delay before its restart, or
        None when it crashed too often and the daemon is stopping."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        crashes = self._crashes.setdefault(name, deque())
        crashes.append(now)
        while crashes and crashes[0] < now - self.crash_window:
            crashes.popleft()
        self.counted(name)
        reason = describe_error(exc)
        log.debug("%s crashed", name, exc_info=exc)
        if len(crashes) > self.max_crashes:
            self.fail(
                f"{name} crashed {len(crashes)} times within {self.crash_window:g}s (last: {reason});"
                " stopping so the service manager restarts the daemon"
            )
            return None
        delay = min(self.max_backoff, self.min_backoff * 2.0 ** (len(crashes) - 1))
        log.error("%s crashed: %s; restarting it in %.1fs", name, reason, delay)
        self.health.degrade(f"task:{name}", f"{name} crashed: {reason}")
        handle = self._recovery.pop(name, None)
        if handle is not None:
            handle.cancel()
        self._recovery[name] = loop.call_later(delay + self.stable_after, self._settled, name)
        return delay

    def fail(self, reason: str) -> None:
        """Stop the daemon with an error (non-zero exit)."""
        if self.fatal is not None:
            return
        self.fatal = reason
        log.error("%s", reason)
        self.health.degrade("fatal", reason)
        self.on_fatal()

    def _settled(self, name: str) -> None:
        """``name`` ran long enough since its last crash (or was stopped): healthy again."""
        handle = self._recovery.pop(name, None)
        if handle is not None:
            handle.cancel()
        self.health.recover(f"task:{name}")
