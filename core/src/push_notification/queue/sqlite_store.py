"""The SQLite file behind the durable queue: schema, opening it safely, and the dead letters.

One row per (driver instance, transaction): each instance keeps its own delivery state, so
one failing endpoint never holds back the others. ``state`` is ``pending`` (to deliver, maybe
after ``next_at``), ``dead`` (given up; see ``push-notification queue``) or ``requeued`` (a
dead letter an admin asked to retry; the daemon turns it back into ``pending``).

The daemon and ``push-notification queue`` open the same file; WAL mode lets them do so at
the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from push_notification.errors import PushNotificationError
from push_notification.queue.threads import CrashReport, log_crash, run_restarting

log = logging.getLogger("push_notification.queue")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery (
    instance TEXT NOT NULL,
    seq INTEGER NOT NULL,
    txn_id TEXT NOT NULL,
    username TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    failed_at REAL,
    PRIMARY KEY (instance, seq)
) WITHOUT ROWID;
"""

#: The page size of a new queue file. A row is a whole transaction (about 1 KiB as Dovecot's
#: bridge writes one); with 4 KiB pages a ``WITHOUT ROWID`` row over about 1000 bytes spills
#: into an overflow page, so each acceptance wrote four pages (leaf, overflow page, free-list
#: trunk, header) where with 8 KiB pages it writes one. A file made before takes it once empty
#: (:func:`take_page_size`).
PAGE_SIZE = 8192

#: Columns of a dead-letter listing, in order.
_ROW = "instance, seq, txn_id, username, accepted_at, state, attempts, last_error, failed_at"


class QueueStoreError(PushNotificationError):
    """The queue file cannot be used; the message names the file and the fix."""


def open_store(path: str | Path, *, sync: str = "full", create: bool = True) -> sqlite3.Connection:
    """Open (and if needed create) the queue file, checking it is ours and intact.

    A corrupt, foreign or unwritable file is one :class:`QueueStoreError` line at start-up:
    the daemon must refuse to run rather than silently accept mail events it cannot keep.
    """
    path = Path(path)
    where = f"queue_path {path}"
    if not create and not path.exists():
        raise QueueStoreError(f"{where}: no such queue file; check queue_path in the config")
    if path.is_dir():
        raise QueueStoreError(f"{where}: is a directory; set queue_path to a file such as {path / 'queue.db'}")
    if create and not path.parent.is_dir():
        raise QueueStoreError(f"{where}: directory {path.parent} does not exist; create it or change queue_path")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    except sqlite3.Error as exc:
        raise QueueStoreError(f"{where}: cannot open: {exc}; check the path and its permissions") from None
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only a new file takes it: before WAL mode is set
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise QueueStoreError(f"{where}: cannot switch to WAL mode (got {mode}); put the queue on a local disk")
        conn.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
        check = "; ".join(line for problem in problems for line in problem.splitlines() if "***" not in line)
        if problems != ["ok"]:
            raise QueueStoreError(
                f"{where}: the file is damaged ({check}); move it aside to start an empty queue,"
                " or restore it from a backup"
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables:
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION or "delivery" not in tables:
            raise QueueStoreError(
                f"{where}: not a push-notification queue (schema version {version}, tables"
                f" {', '.join(sorted(tables)) or 'none'}); point queue_path at another file"
            )
        # A real write at start-up proves the file (and its -wal) are writable now, not at
        # the first accepted transaction.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except QueueStoreError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise QueueStoreError(f"{where}: not usable ({exc}); {_fix(exc, path)}") from None
    return conn


def take_page_size(conn: sqlite3.Connection) -> bool:
    """Give a queue file made with smaller pages :data:`PAGE_SIZE` while it holds no row (the
    usual state after a restart: copying an empty file is instant); one holding rows keeps its
    size until a later start finds it empty. Call it holding the file's lock; another process
    reading the file meanwhile (``push-notification queue``) only postpones it. True if done."""
    if conn.execute("PRAGMA page_size").fetchone()[0] >= PAGE_SIZE:
        return False
    if conn.execute("SELECT 1 FROM delivery LIMIT 1").fetchone() is not None:
        return False
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("PRAGMA journal_mode = DELETE")  # a page size changes only outside WAL mode
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("VACUUM")
        done = True
    except sqlite3.Error as exc:  # busy, or a full disk: the file is as it was
        log.info("queue store: keeping the page size of the queue file for now (%s)", exc)
        done = False
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.Error as exc:
        mode = str(exc)
    conn.execute("PRAGMA busy_timeout = 30000")
    if str(mode).lower() != "wal":
        raise QueueStoreError(f"queue store: cannot switch the queue file back to WAL mode ({mode}); start again")
    return done


def _fix(exc: sqlite3.Error, path: Path) -> str:
    """What to do about a queue file SQLite refuses: never "move it aside" when the file is
    fine and only the disk is full or read-only (moving it would drop accepted work)."""
    if disk_full(exc, path):
        return (
            f"the file system of {path.parent} is full: free space and start again"
            " (keep the file: it holds accepted work)"
        )
    if _code(exc) in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
        return "make the file and its directory writable for the daemon's user (and check the disk)"
    return "fix its permissions, or move a damaged file aside to start an empty queue"


def disk_full(exc: BaseException, path: Path) -> bool:
    """Whether SQLite failed because the queue's file system is full (SQLite may say "disk
    I/O error" when it cannot grow its WAL index)."""
    code = _code(exc)
    return code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _nearly_full(path.parent))


def _code(exc: BaseException) -> int:
    """The primary SQLite result code of ``exc`` (0 for other exceptions)."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


#: Less free space than this: SQLite's I/O error (it cannot grow the WAL or its index) means "full".
_NEARLY_FULL = 1 << 20


def _nearly_full(directory: Path) -> bool:
    try:
        info = os.statvfs(directory)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < _NEARLY_FULL


class Checkpointer:
    """Copies the WAL back into the queue file, on its own connection and thread.

    A passive checkpoint every ``interval`` copies what it can without stopping anyone.
    Under steady load that never lets the WAL start over (new frames keep arriving), so once
    the WAL passes ``wal_limit`` bytes a truncating checkpoint briefly holds writers back;
    right after a passive one it has little left to copy.
    """

    def __init__(self, path: Path, interval: float = 1.0, wal_limit: int = 16 << 20) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self.interval = interval
        self.wal_limit = wal_limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="pn-queue-checkpoint", daemon=True)
        #: Told of a crash of the thread (the supervisor); it restarts either way.
        self.report: CrashReport = log_crash

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _wal_size(self) -> int:
        try:
            return self.wal.stat().st_size
        except OSError:
            return 0

    def _main(self) -> None:
        run_restarting("queue checkpointer", self._run, lambda: self.report, self._stop)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    if self._wal_size() > self.wal_limit:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    log.warning("queue store %s: checkpoint failed: %s", self.path, exc)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("queue store %s: final checkpoint failed: %s", self.path, exc)
        finally:
            conn.close()


def lock_exclusively(path: Path, conn: sqlite3.Connection) -> IO[bytes]:
    """One daemon per queue file: two would deliver every transaction twice and race on
    its rows. The lock dies with the process, so a SIGKILLed daemon never blocks a restart."""
    handle = open(path, "rb")  # noqa: SIM115 - held for the queue's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        conn.close()
        raise QueueStoreError(
            f"queue_path {path}: in use by another push-notification daemon; stop it, or give this"
            " one its own queue_path"
        ) from None
    return handle


@dataclass(frozen=True)
class DeadLetter:
    """A delivery given up on (or requeued), as ``push-notification queue list`` shows it."""

    instance: str
    seq: int
    txn_id: str
    username: str
    accepted_at: float
    state: str
    attempts: int
    last_error: str | None
    failed_at: float | None


@dataclass(frozen=True)
class Filter:
    """Which dead letters a ``queue`` command acts on; empty fields match everything."""

    instance: str | None = None
    user: str | None = None
    #: Only letters accepted at least this many seconds ago.
    older_than: float | None = None
    #: Only letters accepted at most this many seconds ago.
    newer_than: float | None = None
    txn_id: str | None = None

    def where(self, states: tuple[str, ...] = ("dead",)) -> tuple[str, list[object]]:
        clauses = [f"state IN ({', '.join('?' * len(states))})"]
        args: list[object] = list(states)
        now = time.time()
        for column, value in (("instance", self.instance), ("username", self.user), ("txn_id", self.txn_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.older_than is not None:
            clauses.append("accepted_at <= ?")
            args.append(now - self.older_than)
        if self.newer_than is not None:
            clauses.append("accepted_at >= ?")
            args.append(now - self.newer_than)
        return " AND ".join(clauses), args


def dead_letters(conn: sqlite3.Connection, which: Filter, *, limit: int | None = None) -> Iterator[DeadLetter]:
    """Dead letters matching ``which``, oldest first."""
    where, args = which.where()
    sql = f"SELECT {_ROW} FROM delivery WHERE {where} ORDER BY accepted_at, seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    for row in conn.execute(sql, args):
        yield DeadLetter(*row)


def dead_letter_body(conn: sqlite3.Connection, instance: str, txn_id: str) -> tuple[DeadLetter, str] | None:
    """One dead letter (any state) and its transaction JSON, for ``queue show``."""
    row = conn.execute(
        f"SELECT {_ROW}, body FROM delivery WHERE instance = ? AND txn_id = ? ORDER BY seq LIMIT 1",
        (instance, txn_id),
    ).fetchone()
    if row is None:
        return None
    return DeadLetter(*row[:-1]), row[-1]


def count_deliveries(path: str | Path, *, state: str | None = None, instance: str | None = None) -> int:
    """Rows in the queue file (those in ``state`` and for ``instance``, when given), read
    through a read-only connection: safe beside a running daemon, which keeps the file."""
    clauses, args = [], []
    for column, value in (("state", state), ("instance", instance)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    with contextlib.closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM delivery{where}", args).fetchone()[0]
    return count


def requeue(conn: sqlite3.Connection, which: Filter) -> int:
    """Mark matching dead letters for another round of attempts (with a fresh deadline: the
    admin fixed something); a running daemon picks them up within a second."""
    where, args = which.where()
    with _transaction(conn):
        cursor = conn.execute(
            f"UPDATE delivery SET state = 'requeued', attempts = 0, next_at = 0, accepted_at = ? WHERE {where}",
            [time.time(), *args],
        )
    return cursor.rowcount


def purge(conn: sqlite3.Connection, which: Filter) -> int:
    """Delete matching dead letters for good."""
    where, args = which.where()
    with _transaction(conn):
        cursor = conn.execute(f"DELETE FROM delivery WHERE {where}", args)
    return cursor.rowcount


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK``) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


@dataclass(frozen=True)
class InstanceStatus:
    """One instance's share of the queue file, for ``push-notification queue status``."""

    instance: str
    #: Waiting for a first attempt (or sent back by ``queue retry``).
    pending: int
    #: Failed at least once and waiting for their next attempt.
    retrying: int
    #: The earliest next attempt among the retrying ones (epoch seconds).
    next_attempt: float | None
    dead: int
    #: When the oldest transaction not yet delivered was accepted (epoch seconds).
    oldest_accepted: float | None


def queue_status(conn: sqlite3.Connection) -> list[InstanceStatus]:
    """Per instance: pending, retrying (with the next attempt's time), dead, the oldest's age."""
    rows = conn.execute(
        "SELECT instance,"
        " sum(state != 'dead' AND attempts = 0),"
        " sum(state != 'dead' AND attempts > 0),"
        " min(CASE WHEN state != 'dead' AND attempts > 0 THEN next_at END),"
        " sum(state = 'dead'),"
        " min(CASE WHEN state != 'dead' THEN accepted_at END)"
        " FROM delivery GROUP BY instance ORDER BY instance"
    )
    return [InstanceStatus(str(row[0]), int(row[1]), int(row[2]), row[3], int(row[4]), row[5]) for row in rows]


def pending_summary(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(transactions, deliveries)`` not yet delivered: one transaction owed to three
    instances is one transaction and three deliveries."""
    transactions, deliveries = conn.execute(
        "SELECT count(DISTINCT seq), count(*) FROM delivery WHERE state != 'dead'"
    ).fetchone()
    return int(transactions), int(deliveries)
