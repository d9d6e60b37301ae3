"""The spool reader: transactions Dovecot's bridge script left as files, taken in durably.

The bridge script writes each transaction as one JSON file into ``SPOOL/tmp/`` and renames it
into ``SPOOL/new/`` (as Maildir does), so a file in ``new/`` is always complete. The reader
watches ``new/`` with inotify (a short poll when inotify is unavailable, and as a safety net)
and puts each transaction into the queue with ``put_held``: the file is the sender's durable
copy of the "held" contract (see :meth:`push_notification.queue.Queue.put_held`), deleted
when the queue releases it. A daemon that is down or restarting loses nothing: it finds the
files on start.

:class:`~push_notification.queue.QueueFull` means "not now": the file stays and is tried
again after ``retry_after``.

The reader trusts nothing in ``new/``: only regular files are read, opened with
``O_NOFOLLOW|O_NONBLOCK`` (a symlink is never followed out of the spool, a FIFO never blocks
the loop, a device is never read), at most ``max_size`` bytes, a big one in a thread.
Anything else (a directory, a symlink, dangling or not, a FIFO, an unreadable or oversized
file, one that is not a valid transaction) is moved to ``SPOOL/bad/`` with one log line
naming the file (escaped) and the reason, never a value from inside it: never lost, never
retried in a loop.

A ``new/`` the daemon cannot write (``ProtectSystem=strict`` without ``ReadWritePaths``)
does not stop delivery: a delivered file that cannot be deleted is remembered and not taken
again, one log line says how to fix it, ``/healthz`` is degraded, and the files are deleted
once the directory is writable again. A restart meanwhile delivers them again
(at-least-once).

Delivery is at-least-once: if the daemon dies before the release, the file is taken in again
on restart with the same transaction ``id`` (drivers may use it to de-duplicate).

While the reader runs, released files are deleted in batches (at the next safety-net scan, or
once :data:`RELEASE_BATCH` are waiting), not one by one: at a steady trickle a lone ``unlink``
per notification runs on a cold kernel path (on a quiet machine, ``benchmarks/daemon_cpu.py
--against`` a tree deleting at once: 2 and 8 % less daemon CPU per OX notification in two
runs; a small gain, weighed against the re-deliveries below). They stay in ``held`` until
then, so they are never taken again; a crash meanwhile delivers them again (at-least-once, as
for the sqlite queue's own lazily written outcomes); stopping the reader deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import stat
import struct
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from inotify_simple import INotify, flags

from push_notification.errors import PushNotificationError
from push_notification.queue import Queue, QueueFull
from push_notification.server.spool_access import running_as
from push_notification.server.supervisor import Health
from push_notification.transaction import Transaction, transaction_from_json

__all__ = ["BadSpoolFile", "SpoolReader", "read_spool_file"]

log = logging.getLogger("push_notification.server.spool")

#: Runs a long-running coroutine under supervision: ``spawn(name, run)``.
Spawn = Callable[[str, Callable[[], Awaitable[None]]], "asyncio.Task[None]"]

#: Default ``spool_max_size``: a real transaction is a few hundred bytes to a few kB.
DEFAULT_MAX_SIZE = 1 << 20
#: The ``/healthz`` problem keys (``spool:read``, ``spool:write``) start with this.
HEALTH_KEY = "spool"
#: Released files deleted together, at the latest (else at the next scan, every ``poll_interval``).
RELEASE_BATCH = 64


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
        max_size: int = DEFAULT_MAX_SIZE,
        health: Health | None = None,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.new_dir = self.spool_dir / "new"
        self.tmp_dir = self.spool_dir / "tmp"
        self.bad_dir = self.spool_dir / "bad"
        self._new = str(self.new_dir)  # per-file paths are plain strings: cheaper than Path
        #: ``new/`` with its trailing separator: a name from inotify (never a ``/`` in it) is appended.
        self._new_prefix = os.path.join(self._new, "")
        self.queue = queue
        self.max_size = max_size
        self.health = health or Health()
        #: Files the queue holds and has not released yet: not to be taken again.
        self.held: set[str] = set()
        #: Files delivered (or moved nowhere) that ``new/`` would not let go: never taken again.
        self.stuck: dict[str, str | None] = {}
        self.poll_interval = poll_interval
        self.error_delay = error_delay
        self.use_inotify = use_inotify
        #: Counters for status output: files accepted, and files moved to bad/.
        self.accepted = 0
        self.rejected = 0
        self._task: asyncio.Task[None] | None = None
        self._blocked_until = 0.0
        #: Set while ``new/`` cannot be listed, or will not let files go (one log line each).
        self._unreadable: str | None = None
        self._unwritable: str | None = None
        #: Released while the reader runs, still in ``held``: deleted by :meth:`_delete_released`.
        self._released: list[str] = []
        self._running = False

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

    async def start(self, spawn: Spawn | None = None) -> None:
        """Prepare the directories and start reading in a background task (``spawn``: the
        daemon's supervisor, which restarts the reader if it ever crashes)."""
        self.prepare()
        if self._task is None:
            name = "spool reader"
            self._task = spawn(name, self.run) if spawn else asyncio.create_task(self.run(), name=name)

    async def stop(self) -> None:
        """Stop reading; a file being put stays in the spool until the queue releases it."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - an unsupervised reader's crash, reported at shutdown
            log.error("spool: the reader had stopped: %s", _describe(exc))

    async def run(self) -> None:
        """Read forever: everything present now, then whatever arrives."""
        inotify = self._open_inotify() if self.use_inotify else None
        self._running = True
        try:
            await self.scan()
            if inotify is None:
                while True:
                    await asyncio.sleep(self.poll_interval)
                    await self.scan()
            else:
                await self._follow(inotify)
        finally:
            self._running = False
            self._delete_released()
            if inotify is not None:
                inotify.close()

    # ---------------------------------------------------------------- reading
    async def scan(self) -> int:
        """Take every file now in ``new/``, oldest first; returns how many were taken in."""
        if self._released:
            self._delete_released()
        if self.stuck:
            self._retry_stuck()
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
        if path in self.held or path in self.stuck:
            return True
        txn = self._load(path)
        if isinstance(txn, tuple):  # a big file: read in a thread
            txn = await self._load_big(path, txn)
        if txn is None:
            return True
        return await self._hand_over(path, txn)

    def take_now(self, path: str) -> bool | Transaction | None:
        """:meth:`take` without waiting, where it needs none: True when done with ``path``
        (taken in, moved to bad/, gone); the transaction when the queue would not take it at
        once (``_hand_over`` awaits it); None when :meth:`take` must do it all (a big file)."""
        if path in self.held or path in self.stuck:
            return True
        txn = self._load(path)
        if isinstance(txn, tuple):
            os.close(txn[0])
            return None
        if txn is None:
            return True
        self.held.add(path)
        try:
            taken = self.queue.offer_held(txn, partial(self._release, path))
        except Exception:  # noqa: BLE001 - QueueFull or worse: put_held says it again, and take() handles it
            taken = False
        if not taken:
            self.held.discard(path)
            return txn
        self.accepted += 1
        return True

    def _load(self, path: str) -> Transaction | tuple[int, int] | None:
        """The transaction in the file ``path``, read here when small (a thread hop would cost
        more than the read); ``(fd, size)`` of a big one; None when done with it (gone: taken
        by someone else or a duplicate notification; or moved to bad/)."""
        try:
            opened = _open(path, self.max_size)
            if opened is None:
                return None
            if opened[1] > _INLINE:
                return opened
            return transaction_from_json(_read_fd(*opened, self.max_size))
        except Exception as exc:  # noqa: BLE001 - whatever the parser makes of it: bad/, never a dead reader
            self._unusable(path, exc)
            return None

    async def _load_big(self, path: str, opened: tuple[int, int]) -> Transaction | None:
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, _read_fd, *opened, self.max_size)
            return transaction_from_json(data)
        except Exception as exc:  # noqa: BLE001 - as in _load
            self._unusable(path, exc)
            return None

    def _unusable(self, path: str, exc: Exception) -> None:
        """To bad/, with the reason: the reader's own, or whatever the parser made of it."""
        reason = exc.reason if isinstance(exc, BadSpoolFile) else f"not a valid transaction: {_describe(exc)}"
        self._reject(path, reason)

    async def _hand_over(self, path: str, txn: Transaction) -> bool:
        """``put_held``; False when the queue said "later" (the file stays)."""
        self.held.add(path)
        try:
            await self.queue.put_held(txn, partial(self._release, path))
        except QueueFull as exc:
            self.held.discard(path)
            self._blocked_until = asyncio.get_running_loop().time() + exc.retry_after
            log.debug("spool: queue full, retrying %s in %.1fs", _shown(path), exc.retry_after)
            return False
        except Exception as exc:  # noqa: BLE001 - never crash the reader; the file stays
            self.held.discard(path)
            self._blocked_until = asyncio.get_running_loop().time() + self.error_delay
            log.error("spool: could not hand over %s (%s); it stays in %s", _shown(path), _describe(exc), self.new_dir)
            return False
        self.accepted += 1
        return True

    def _release(self, path: str) -> None:
        """The queue no longer needs the file: delete it, with the next batch while the reader
        runs. Runs inside the queue's ``done`` (or ``offer_held``): never raises."""
        released = self._released
        released.append(path)
        if len(released) >= RELEASE_BATCH or not self._running:
            self._delete_released()

    def _delete_released(self) -> None:
        """Delete the released files; one ``new/`` will not let go of stays, remembered in ``stuck``."""
        released, self._released = self._released, []
        held = self.held
        for path in released:
            held.discard(path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.stuck[path] = None  # delivered: not to be taken again while we run
                self._cannot_write(exc)

    def _cannot_write(self, exc: OSError) -> None:
        """``new/`` will not let files go: one line with the fix, /healthz degraded."""
        if self._unwritable is not None:
            return
        self._unwritable = problem = f"spool {self.new_dir} is not writable ({exc.strerror or exc})"
        log.error(
            "spool: cannot remove files from %s (%s); give the daemon's user write access to %s (under systemd"
            " ProtectSystem=strict: ReadWritePaths=%s). Delivery goes on; delivered files stay until then and are"
            " delivered again if the daemon restarts first",
            self.new_dir,
            exc.strerror or exc,
            self.spool_dir,
            self.spool_dir,
        )
        self.health.degrade(f"{HEALTH_KEY}:write", problem)

    def _retry_stuck(self) -> None:
        """Try again what ``new/`` would not let go; healthy again once all of it went."""
        for path, reason in list(self.stuck.items()):
            try:
                if reason is None:
                    os.unlink(path)
                else:
                    self._move_to_bad(path, reason)
            except FileNotFoundError:
                pass  # someone else removed it: nothing left to do
            except OSError:
                return  # still not writable: try again at the next scan
            del self.stuck[path]
        if self._unwritable is not None:
            log.info("spool: %s is writable again; the files it kept meanwhile are gone", self.new_dir)
            self._unwritable = None
            self.health.recover(f"{HEALTH_KEY}:write")

    def _pending_files(self) -> list[str]:
        entries: list[tuple[int, str, str]] = []
        try:
            with os.scandir(self.new_dir) as it:
                for entry in it:
                    if entry.name.startswith(".") or entry.path in self.held or entry.path in self.stuck:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        entries.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name, entry.path))
        except OSError as exc:
            if self._unreadable is None:  # once, not every poll
                if isinstance(exc, FileNotFoundError):
                    self._unreadable, fix = f"{self.new_dir} is missing", "create it"
                else:
                    self._unreadable = f"{self.new_dir} cannot be read ({exc.strerror or exc})"
                    fix = f"give the daemon's user, {running_as()}, access to it"
                log.error("spool: %s; %s (push-notification dovecot-config shows how)", self._unreadable, fix)
                self.health.degrade(f"{HEALTH_KEY}:read", f"spool {self._unreadable}")
            return []
        if self._unreadable is not None:
            log.info("spool: %s can be read again", self.new_dir)
            self._unreadable = None
            self.health.recover(f"{HEALTH_KEY}:read")
        entries.sort()
        return [path for _, _, path in entries]

    def _reject(self, path: str, reason: str) -> None:
        """Move a file that is not a transaction to ``bad/``, with one line saying why."""
        try:
            self._move_to_bad(path, reason)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.stuck[path] = reason
            log.error(
                "spool: %s is not usable (%s) and cannot be moved to %s: %s; it is skipped until it can be",
                _shown(path),
                reason,
                self.bad_dir,
                exc.strerror or exc,
            )
            self._cannot_write(exc)

    def _move_to_bad(self, path: str, reason: str) -> None:
        name = os.path.basename(path)
        self.bad_dir.mkdir(exist_ok=True)
        target = _free_name(self.bad_dir, name)
        os.rename(path, target)
        self.rejected += 1
        log.error("spool: moved %s to %s: %s", _shown(name), _shown(os.path.dirname(target)), reason)

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
        prefix = self._new_prefix
        wake = asyncio.Event()
        names: deque[str] = deque()
        scan_due = False
        #: Parsed by the callback, for the task to hand over (the queue wanted to be awaited).
        carried: tuple[str, Transaction] | None = None
        #: The task waits with nothing left to do: the callback may take files itself.
        idle = False

        def readable() -> None:
            nonlocal scan_due, carried, idle
            try:
                got, overflow = inotify.read()
            except OSError:
                got, overflow = [], True  # read it all from the directory instead
            names.extend(got)
            scan_due = scan_due or overflow
            if idle and not scan_due:
                try:
                    take_here()
                except Exception:  # noqa: BLE001 - the task takes the same file and reports it (supervised)
                    idle = False
            if names or scan_due or carried is not None:
                idle = False  # from here on, in order, behind what the task has
                wake.set()

        def take_here() -> None:
            """Hand files over right here, while the queue takes them without waiting."""
            nonlocal carried
            while names and loop.time() >= self._blocked_until:
                path = prefix + names[0]
                result = self.take_now(path)
                if result is None:
                    return  # the task takes it
                names.popleft()
                if isinstance(result, Transaction):
                    carried = (path, result)
                    return

        async def tick() -> None:
            nonlocal scan_due, idle
            while True:
                await asyncio.sleep(self.poll_interval)
                scan_due, idle = True, False
                wake.set()

        loop.add_reader(inotify.fd, readable)
        ticker = asyncio.create_task(tick())
        try:
            while True:
                if not names and not scan_due and carried is None:
                    idle = True
                await wake.wait()
                wake.clear()
                if carried is not None:
                    path, txn = carried
                    carried = None
                    if loop.time() < self._blocked_until or not await self._hand_over(path, txn):
                        names.clear()  # the next scan after the pause takes them in order
                        scan_due = True
                while names:
                    path = prefix + names.popleft()
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


#: How ``os.fsdecode`` turns a name into text (one call less per notification).
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class _Inotify:
    """The names of files that arrive in one directory, read in bulk from inotify.

    inotify_simple sets the watch up; the records are read here with one ``read`` and unpacked
    in place (no ``FIONREAD`` ioctl first, no named tuple per record): this runs once for
    every notification.
    """

    _OVERFLOW = int(flags.Q_OVERFLOW)
    _HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the NUL-padded name
    #: Room for a few hundred records per read; the rest are read at the next wake-up.
    _CHUNK = 1 << 16

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
        try:
            data = os.read(self.fd, self._CHUNK)
        except BlockingIOError:
            return [], False
        names: list[str] = []
        overflow = False
        unpack, size, end = self._HEADER.unpack_from, self._HEADER.size, len(data)
        pos = 0
        while pos < end:
            _, mask, _, length = unpack(data, pos)
            pos += size + length
            if mask & self._OVERFLOW:
                overflow = True
            elif length:
                names.append(data[pos - length : pos].rstrip(b"\0").decode(_FS_ENCODING, _FS_ERRORS))
        return names, overflow

    def close(self) -> None:
        self._inotify.close()


class BadSpoolFile(Exception):
    """A spool entry that is not a readable regular file of a sane size."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: Never follows a symlink, never blocks on a FIFO, never makes a terminal ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
#: Files up to this size are read in the loop (one read); bigger ones in a thread.
_INLINE = 1 << 16


def _open(path: str, max_size: int) -> tuple[int, int] | None:
    """``(fd, size)`` of a regular file of at most ``max_size`` bytes; None if it vanished."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadSpoolFile("a symbolic link; only regular files are taken in") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise BadSpoolFile(
                "unreadable (permission denied): the bridge must leave files the daemon can read"
            ) from None
        if exc.errno == errno.ENXIO:
            raise BadSpoolFile("a socket or device, not a regular file") from None
        raise BadSpoolFile(f"cannot be opened ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadSpoolFile(f"{_KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}, not a regular file")
        if info.st_size > max_size:
            raise BadSpoolFile(f"{info.st_size} bytes, more than spool_max_size ({max_size})")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
}


def _read_fd(fd: int, size: int, max_size: int) -> bytes:
    """Read the whole file (which may have grown since ``fstat``), at most ``max_size`` bytes."""
    try:
        want = (size if size < max_size else max_size) + 1
        data = os.read(fd, want)
        if len(data) < want:
            return data  # the usual case: one read
        chunks = [data]
        total = len(data)
        while chunk := os.read(fd, min(_INLINE, max_size + 1 - total) or 1):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                raise BadSpoolFile(f"more than spool_max_size ({max_size} bytes)")
        if total > max_size:
            raise BadSpoolFile(f"more than spool_max_size ({max_size} bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_spool_file(path: str, max_size: int = DEFAULT_MAX_SIZE) -> bytes | None:
    """The bytes of the spool file ``path``; None if it vanished; :class:`BadSpoolFile` if it
    is anything but a regular file of at most ``max_size`` bytes. Blocks: for threads."""
    opened = _open(path, max_size)
    return None if opened is None else _read_fd(*opened, max_size)


def _free_name(directory: Path, name: str) -> str:
    """``directory/name``, or ``name.1``, ``name.2``... so a rejected file never replaces another."""
    target = os.path.join(directory, name)
    count = 0
    while os.path.lexists(target):
        count += 1
        target = os.path.join(directory, f"{name}.{count}")
    return target


#: Where a parser's message quotes the input (``got 'x'``, ``unknown event 'x'``, ``5 is outside``).
_VALUES = re.compile(r"""(, got .*$)|('(?:[^'\\]|\\.)*')|("(?:[^"\\]|\\.)*")|(-?\d{2,}(?= is outside))""")


def _describe(exc: BaseException) -> str:
    """One line for a rejected file: what was wrong and where, never a value from the file
    (it may not be the bridge's: a file planted in the spool can hold anything)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _VALUES.sub(lambda m: "" if m.group(1) else "…", text)
    return _shown(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _shown(text: str) -> str:
    """``text`` with control characters (and undecodable bytes) escaped: a name in a log
    line cannot start a new one."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
