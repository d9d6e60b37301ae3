"""Group commit: every write waiting runs in one SQLite transaction.

The ingress sits on Dovecot's delivery path, so the time to 2xx counts, and concurrent
requests should share one commit rather than queue behind each other's.

Without fsync a commit takes tens of microseconds: it runs in the event loop itself, once
per loop iteration for everything submitted meanwhile (a thread hand-off would cost more
than the commit on a busy machine). With fsync a commit waits for the disk (milliseconds
on virtual disks), so a writer thread commits while the loop goes on accepting, and
everything that arrived during one fsync shares the next commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    #: Runs in the loop with the error message if the commit was lost.
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
        self._flush_handle: asyncio.Handle | None = None
        self._flush_soon = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

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
            if self._flush_handle is None:
                self._flush_handle = loop.call_later(LAZY_DELAY, self._flush)
        elif not self._flush_soon:
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush_soon = True
            self._flush_handle = loop.call_soon(self._flush)

    async def close(self) -> None:
        """Commit what is waiting, stop, close the connection."""
        if self._thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify()
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._flush()
        self.conn.close()

    def _start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        if self.fsync:
            self._thread = threading.Thread(target=self._write_loop, name="pn-queue-writer", daemon=True)
            self._thread.start()
        else:
            self._tick_handle = loop.call_later(self.tick_interval, self._tick_inline)

    # -- in the loop (no fsync) --------------------------------------------------------

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = None
        self._flush_soon = False
        writes, self._writes = self._writes, []
        if writes:
            _run_all(self._commit(writes))

    def _tick_inline(self) -> None:
        callback = self.tick(self.conn)
        if callback is not None:
            callback()
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(self.tick_interval, self._tick_inline)

    # -- in the writer thread (fsync) ----------------------------------------------------

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
                break
        self.conn.close()

    # -- either --------------------------------------------------------------------------

    def _commit(self, writes: list[Write]) -> list[Callback]:
        """One transaction for ``writes``: their callbacks, or their error handlers if lost."""
        callbacks: list[Callback] = []
        conn = self.conn
        try:
            # Only accepting needs the fsync: losing a recorded outcome to a power cut means
            # a redelivery, which at-least-once allows; the next syncing commit syncs the
            # WAL, earlier frames included.
            sync = self.fsync and any(write.sync for write in writes)
            if sync != self._synced:
                conn.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
                self._synced = sync
            conn.execute("BEGIN IMMEDIATE")
            for write in writes:
                result = write.work(conn)
                if callable(result):
                    callbacks.append(result)
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            message = str(exc)
            log.error(
                "queue store %s: write failed: %s; new transactions get 503 until it is fixed", self.path, message
            )
            return [_bind(write.on_error, message) for write in writes if write.on_error is not None]
        return callbacks


def _bind(handler: Callable[[str], None], message: str) -> Callback:
    return lambda: handler(message)


def _run_all(callbacks: list[Callback]) -> None:
    for callback in callbacks:
        callback()
