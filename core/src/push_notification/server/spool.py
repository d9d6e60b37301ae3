"""The spool reader: transactions Dovecot's bridge script left as files, taken in durably.

The bridge script writes each transaction as one JSON file into ``SPOOL/tmp/`` and renames it
into ``SPOOL/new/`` (as Maildir does), so a file in ``new/`` is always complete. The reader
watches ``new/`` with inotify (a short poll when inotify is unavailable, and as a safety net)
and puts each transaction into the queue with ``put_held``: the file is the sender's durable
copy of the "held" contract (see :meth:`push_notification.queue.Queue.put_held`), deleted
when the queue releases it. A daemon that is down or restarting loses nothing: it finds the
files on start.

:class:`~push_notification.queue.QueueFull` means "not now": the file stays and is tried
again after ``retry_after``. A file that is not a valid transaction is moved to
``SPOOL/bad/`` with one log line: never lost, never retried in a loop.

Delivery is at-least-once: if the daemon dies before the release, the file is taken in again
on restart with the same transaction ``id`` (drivers may use it to de-duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from pathlib import Path

from inotify_simple import INotify, flags

from push_notification.errors import EventError, PushNotificationError
from push_notification.queue import Queue, QueueFull
from push_notification.transaction import transaction_from_json

__all__ = ["SpoolReader"]

log = logging.getLogger("push_notification.server.spool")


class SpoolReader:
    """Puts the files in ``spool_dir/new`` into ``queue``, oldest first, until stopped."""

    def __init__(
        self,
        spool_dir: str | os.PathLike[str],
        queue: Queue,
        *,
        poll_interval: float = 0.25,
        error_delay: float = 1.0,
        use_inotify: bool = True,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.new_dir = self.spool_dir / "new"
        self.tmp_dir = self.spool_dir / "tmp"
        self.bad_dir = self.spool_dir / "bad"
        self._new = str(self.new_dir)  # per-file paths are plain strings: cheaper than Path
        self.queue = queue
        #: Files the queue holds and has not released yet: not to be taken again.
        self.held: set[str] = set()
        self.poll_interval = poll_interval
        self.error_delay = error_delay
        self.use_inotify = use_inotify
        #: Counters for status output: files accepted, and files moved to bad/.
        self.accepted = 0
        self.rejected = 0
        self._task: asyncio.Task[None] | None = None
        self._blocked_until = 0.0
        self._missing_reported = False

    # ---------------------------------------------------------------- control
    def prepare(self) -> None:
        """Create ``tmp/``, ``new/`` and ``bad/`` when missing (their permissions are the admin's)."""
        for path in (self.spool_dir, self.tmp_dir, self.new_dir, self.bad_dir):
            try:
                path.mkdir(exist_ok=True)
            except OSError as exc:
                raise PushNotificationError(
                    f"cannot use spool_dir {self.spool_dir}: {path}: {exc.strerror or exc};"
                    " create it as push-notification dovecot-config shows"
                ) from None

    async def start(self) -> None:
        """Prepare the directories and start reading in a background task."""
        self.prepare()
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"spool-reader {self.spool_dir}")

    async def stop(self) -> None:
        """Stop reading; a file being put stays in the spool until the queue releases it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Read forever: everything present now, then whatever arrives."""
        inotify = self._open_inotify() if self.use_inotify else None
        try:
            await self.scan()
            if inotify is None:
                while True:
                    await asyncio.sleep(self.poll_interval)
                    await self.scan()
            else:
                await self._follow(inotify)
        finally:
            if inotify is not None:
                inotify.close()

    # ---------------------------------------------------------------- reading
    async def scan(self) -> int:
        """Take every file now in ``new/``, oldest first; returns how many were taken in."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._blocked_until:
            return 0
        taken = 0
        for path in self._pending_files():
            if not await self.take(path):
                break
            taken += 1
        return taken

    async def take(self, path: str) -> bool:
        """Put one spool file into the queue, which deletes it on release; False when the queue
        said "later"."""
        if path in self.held:
            return True
        data = _read(path)
        if data is None:
            return True  # taken by someone else, or a duplicate notification
        try:
            txn = transaction_from_json(data)
        except EventError as exc:
            self._reject(path, exc)
            return True
        self.held.add(path)
        try:
            await self.queue.put_held(txn, lambda: self._release(path))
        except QueueFull as exc:
            self.held.discard(path)
            self._blocked_until = asyncio.get_running_loop().time() + exc.retry_after
            log.debug("spool: queue full, retrying %s in %.1fs", os.path.basename(path), exc.retry_after)
            return False
        except Exception as exc:  # noqa: BLE001 - never crash the reader; the file stays
            self.held.discard(path)
            self._blocked_until = asyncio.get_running_loop().time() + self.error_delay
            log.error("spool: could not hand over %s (%s); it stays in %s", os.path.basename(path), exc, self.new_dir)
            return False
        self.accepted += 1
        return True

    def _release(self, path: str) -> None:
        self.held.discard(path)
        _delete(path)

    def _pending_files(self) -> list[str]:
        entries: list[tuple[int, str, str]] = []
        try:
            with os.scandir(self.new_dir) as it:
                for entry in it:
                    if entry.name.startswith(".") or entry.path in self.held:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        entries.append((entry.stat().st_mtime_ns, entry.name, entry.path))
        except FileNotFoundError:
            if not self._missing_reported:  # once, not every poll
                self._missing_reported = True
                log.error("spool: %s is missing; create it (push-notification dovecot-config shows how)", self.new_dir)
            return []
        self._missing_reported = False
        entries.sort()
        return [path for _, _, path in entries]

    def _reject(self, path: str, exc: BaseException) -> None:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        name = os.path.basename(path)
        try:
            self.bad_dir.mkdir(exist_ok=True)
            os.rename(path, self.bad_dir / name)
        except FileNotFoundError:
            return
        except OSError as move_error:
            log.error("spool: %s is not a valid transaction (%s) and cannot be moved: %s", path, reason, move_error)
            return
        self.rejected += 1
        log.error("spool: moved %s to %s: not a valid transaction: %s", name, self.bad_dir, reason)

    # ---------------------------------------------------------------- inotify
    def _open_inotify(self) -> _Inotify | None:
        try:
            return _Inotify(self.new_dir)
        except OSError as exc:
            log.info("spool: inotify unavailable (%s); polling %s every %gs", exc, self.new_dir, self.poll_interval)
            return None

    async def _follow(self, inotify: _Inotify) -> None:
        """One file per inotify event, in rename order; a full scan every ``poll_interval`` as a
        safety net (overflow, files skipped while the queue was full). No task per event: the
        inotify fd is a loop reader, which keeps the cost per file low."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        names: deque[str] = deque()
        scan_due = False

        def readable() -> None:
            nonlocal scan_due
            got, overflow = inotify.read()
            names.extend(got)
            scan_due = scan_due or overflow
            wake.set()

        async def tick() -> None:
            nonlocal scan_due
            while True:
                await asyncio.sleep(self.poll_interval)
                scan_due = True
                wake.set()

        loop.add_reader(inotify.fd, readable)
        ticker = asyncio.create_task(tick())
        try:
            while True:
                await wake.wait()
                wake.clear()
                while names:
                    path = os.path.join(self._new, names.popleft())
                    if loop.time() < self._blocked_until or not await self.take(path):
                        names.clear()  # the next scan after the pause takes them in order
                        scan_due = True
                        break
                if scan_due:
                    scan_due = False
                    await self.scan()
        finally:
            loop.remove_reader(inotify.fd)
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


class _Inotify:
    """The names of files that arrive in one directory, read in bulk from inotify.

    inotify_simple parses the kernel's records into plain named tuples, cheaper per file than
    asyncinotify's Path and enum objects; this runs once for every notification.
    """

    _OVERFLOW = flags.Q_OVERFLOW

    def __init__(self, directory: Path) -> None:
        self._inotify = INotify(nonblocking=True)
        try:
            self._inotify.add_watch(directory, flags.MOVED_TO | flags.CLOSE_WRITE)
        except OSError:
            self._inotify.close()
            raise
        self.fd = self._inotify.fd

    def read(self) -> tuple[list[str], bool]:
        """Names of files that arrived since the last call, and whether the kernel overflowed."""
        names: list[str] = []
        overflow = False
        for event in self._inotify.read(timeout=0):
            if event.mask & self._OVERFLOW:
                overflow = True
            elif event.name:
                names.append(event.name)
        return names, overflow

    def close(self) -> None:
        self._inotify.close()


# Spool files are small and local: reading one inline costs less than a hop to a thread,
# and plain os calls make 3 system calls where a Python file object makes 9.
def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        chunks = [os.read(fd, _CHUNK)]
        while len(chunks[-1]) == _CHUNK:
            chunks.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_CHUNK = 1 << 16


def _delete(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
