"""Group commit: every write waiting runs in one SQLite transaction.

The ingress sits on Dovecot's delivery path, so the time to 2xx counts, and concurrent
requests should share one commit rather than queue behind each other's.

Without fsync a commit takes tens of microseconds: it runs in the event loop itself, once
per loop iteration for everything submitted meanwhile (a thread hand-off would cost more
than the commit on a busy machine). With fsync a commit waits for the disk (milliseconds
on virtual disks), so a writer thread commits while the loop goes on accepting, and
everything that arrived during one fsync shares the next commit.

One bad write never takes the others down: a write that raises on its own (a value SQLite
cannot bind, a constraint) is rolled back and refused alone, and the rest of its batch is
committed without it. An error of the store itself (disk full, I/O error) refuses the whole
batch; the writer carries on with the next one. Neither ends the writer thread, and a
crash of the thread for any other reason is reported and the thread restarted
(:mod:`push_notification.queue.threads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from push_notification.queue.retry import describe_error
from push_notification.queue.sqlite_store import disk_full
from push_notification.queue.threads import CrashReport, log_crash, run_restarting

log = logging.getLogger("push_notification.queue")

#: Loop-side callback a write may return, run after its commit.
Callback = Callable[[], None]

#: Longest a lazy write waits for a commit it can share.
LAZY_DELAY = 0.05


@dataclass(eq=False)
class Write:
    """One unit of work for the committer."""

    #: Runs inside the shared transaction; may return a :data:`Callback` for the loop.
    work: Callable[[sqlite3.Connection], Callback | object]
    #: Must be on disk (fsync, when enabled) before its callback runs: accepting work does.
    sync: bool = False
    #: Runs in the loop with the error message if the write was lost (refused).
    on_error: Callable[[str], None] | None = None
    #: May wait up to :data:`LAZY_DELAY` to share a later commit (a recorded outcome: if it
    #: is lost, the transaction is only delivered again).
    lazy: bool = False


class GroupCommitter:
    """Runs :class:`Write`\\ s against one connection in as few transactions as possible,
    and a periodic ``tick`` (for noticing other processes' changes) in the same place."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        fsync: bool,
        tick: Callable[[sqlite3.Connection], Callback | None],
        tick_interval: float = 0.5,
    ) -> None:
        self.conn = conn
        self.path = path
        self.fsync = fsync
        self.tick = tick
        self.tick_interval = tick_interval
        #: Commits made (fewer than writes under load).
        self.commits = 0
        self._synced = fsync
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writes: list[Write] = []
        self._soon: asyncio.Handle | None = None
        # Armed by a lazy write, left armed when a sooner commit takes that write: cancelling
        # and re-arming it for every delivery's delete cost more than a timer that finds nothing.
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        #: Told of a crash of the writer thread or of the periodic tick (the supervisor).
        self.report: CrashReport = log_crash

    def submit(self, write: Write) -> None:
        """Queue ``write`` for the next commit (call from the loop)."""
        if self._loop is None:
            self._start()
        if self.fsync:
            with self._cond:
                self._writes.append(write)
                if not write.lazy:
                    self._cond.notify()  # lazy ones go with the next commit, or the next tick
            return
        self._writes.append(write)
        loop = self._loop
        assert loop is not None
        if write.lazy:
            if self._lazy_timer is None and self._soon is None:
                self._lazy_timer = loop.call_later(LAZY_DELAY, self._flush_lazy)
        elif self._soon is None:
            self._soon = loop.call_soon(self._flush)

    async def close(self) -> None:
        """Commit what is waiting, stop, close the connection."""
        if self._thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify()
            self._stopped.set()
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        self._flush()
        self.conn.close()

    def _start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        if self.fsync:
            self._thread = threading.Thread(target=self._writer_main, name="pn-queue-writer", daemon=True)
            self._thread.start()
        else:
            self._tick_handle = loop.call_later(self.tick_interval, self._tick_inline)

    # -- in the loop (no fsync) --------------------------------------------------------

    def _flush(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        writes, self._writes = self._writes, []
        if writes:
            _run_all(self._commit(writes))

    def _flush_lazy(self) -> None:
        self._lazy_timer = None
        self._flush()

    def _tick_inline(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(self.tick_interval, self._tick_inline)
        try:
            callback = self.tick(self.conn)
            if callback is not None:
                callback()
        except Exception as exc:  # noqa: BLE001 - reported; the next tick runs regardless
            self.report("queue poll", exc)

    # -- in the writer thread (fsync) ----------------------------------------------------

    def _writer_main(self) -> None:
        try:
            run_restarting("queue writer", self._write_loop, lambda: self.report, self._stopped)
        finally:
            self.conn.close()

    def _write_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        last_tick = time.monotonic()
        while True:
            with self._cond:
                if not self._writes and not self._closing:
                    self._cond.wait(self.tick_interval)
                writes, self._writes = self._writes, []
                closing = self._closing
            if writes:
                callbacks = self._commit(writes)
                if callbacks:
                    loop.call_soon_threadsafe(_run_all, callbacks)
            if time.monotonic() - last_tick >= self.tick_interval:
                last_tick = time.monotonic()
                callback = self.tick(self.conn)
                if callback is not None:
                    loop.call_soon_threadsafe(callback)
            if closing and not writes:
                return

    # -- either --------------------------------------------------------------------------

    def _commit(self, writes: list[Write]) -> list[Callback]:
        """Commit ``writes`` in one transaction: their callbacks, and the error handlers of
        those refused. Never raises."""
        refused: list[Callback] = []
        while writes:
            try:
                return refused + self._transaction(writes)
            except _WriteFailed as failed:
                self._rollback()
                message = describe_error(failed.error)
                log.error(
                    "queue store %s: one write failed (%s); its request is refused, the others go on",
                    self.path,
                    message,
                )
                writes = [write for write in writes if write is not failed.write]
                refused += _handlers([failed.write], message)
            except Exception as exc:  # noqa: BLE001 - the store's own failure: refuse this batch
                self._rollback()
                message = self._store_error(exc)
                log.error(
                    "queue store %s: write failed: %s; new transactions get 503 until it is fixed", self.path, message
                )
                return refused + _handlers(writes, message)
        return refused

    def _transaction(self, writes: list[Write]) -> list[Callback]:
        callbacks: list[Callback] = []
        conn = self.conn
        # Only accepting needs the fsync: losing a recorded outcome to a power cut means
        # a redelivery, which at-least-once allows; the next syncing commit syncs the
        # WAL, earlier frames included.
        sync = self.fsync and any(write.sync for write in writes)
        if sync != self._synced:
            conn.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
            self._synced = sync
        conn.execute("BEGIN IMMEDIATE")
        for write in writes:
            try:
                result = write.work(conn)
            except Exception as exc:
                if _store_wide(exc):
                    raise
                raise _WriteFailed(write, exc) from exc
            if callable(result):
                callbacks.append(result)
        conn.execute("COMMIT")
        self.commits += 1
        return callbacks

    def _store_error(self, exc: BaseException) -> str:
        """The store's error, with the fix for a full disk."""
        if disk_full(exc, self.path):
            return f"{exc} (its file system is full: free space; nothing accepted is lost)"
        return str(exc) if isinstance(exc, sqlite3.Error) else describe_error(exc)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")


class _WriteFailed(Exception):
    """One write raised on its own: refuse it, commit the others."""

    def __init__(self, write: Write, error: BaseException) -> None:
        super().__init__(str(error))
        self.write = write
        self.error = error


def _store_wide(exc: BaseException) -> bool:
    """Whether ``exc`` is the store failing (every write would), not one write's data."""
    return isinstance(exc, sqlite3.Error) and not isinstance(
        exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.DataError)
    )


def _handlers(writes: list[Write], message: str) -> list[Callback]:
    return [_bind(write.on_error, message) for write in writes if write.on_error is not None]


def _bind(handler: Callable[[str], None], message: str) -> Callback:
    return lambda: handler(message)


def _run_all(callbacks: list[Callback]) -> None:
    """Run the loop-side callbacks of one commit; one failing never skips the others."""
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:
            log.error("queue: a commit callback failed: %s", describe_error(exc))
            log.debug("queue: commit callback traceback", exc_info=exc)
