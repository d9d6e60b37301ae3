"""The durable queue: SQLite in WAL mode, group commit, per-instance delivery state.

Why it looks like this:

* ``put`` returns only once the transaction is committed, so the ingress answers 2xx only
  for what survives a SIGKILL (with ``fsync``, a power cut too). Concurrent ``put``\\ s
  share one commit (group commit): every operation waiting runs in one SQLite transaction
  and their futures resolve together.
* Each driver instance has a *lane*: its own rows, retry timers and dead letters, so a
  failing endpoint never holds back another instance.
* Order is kept per user within a lane: a user has at most one delivery in flight, and a
  delivery waiting for its retry holds back that user's later transactions (for that
  instance only).
* Memory stays bounded: a lane keeps at most ``window`` transactions in memory; the rest
  wait on disk and are read back in order as the lane drains. Past ``high_water`` pending
  transactions in any lane, ``put`` raises :class:`QueueFull` (the ingress answers 503).
* Recording outcomes (delete, retry time, dead letter) needs no waiting: if the daemon dies
  before that commit, the transaction is delivered again (at-least-once; drivers get the
  stable ``txn.id`` as idempotency key).
* A transaction the sender keeps durably itself (``put_held``, whose contract is stated in
  :class:`~push_notification.queue.contract.Queue`) is delivered from memory, with no row at
  all while every instance succeeds at once. Only an instance that has to retry (or gives up)
  gets a row, written before the release; so does every instance still owed at ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from push_notification.log_fields import delivery_fields
from push_notification.queue.contract import Accepted, Letter, Queue, QueueFull, Release
from push_notification.queue.group_commit import GroupCommitter, Write
from push_notification.queue.lanes import Entry, Lane
from push_notification.queue.retry import RetryPolicy, describe_error
from push_notification.queue.sqlite_store import Checkpointer, lock_exclusively, open_store, take_page_size
from push_notification.queue.threads import CrashReport
from push_notification.transaction import Transaction, transaction_from_json

log = logging.getLogger("push_notification.queue")

#: How often the writer looks for dead letters requeued by ``push-notification queue retry``.
POLL_INTERVAL = 0.5
#: Most rows read back at once, so a refill never stalls the loop for long.
REFILL_CHUNK = 2000


#: A new delivery's row, one per attached instance.
_INSERT = "INSERT INTO delivery (instance, seq, txn_id, username, accepted_at, body) VALUES (?, ?, ?, ?, ?, ?)"

#: A delivery's row after an outcome: created for a held entry, updated otherwise.
_RECORD = (
    "INSERT INTO delivery (instance, seq, txn_id, username, accepted_at, body, state, attempts, next_at,"
    " last_error, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (instance, seq) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,"
    " next_at = excluded.next_at, last_error = excluded.last_error, failed_at = excluded.failed_at"
)


@dataclass(eq=False, slots=True)
class _Held:
    """A transaction accepted with ``put_held``: whom it is still owed to, and its release."""

    release: Release
    owed: set[str]


@dataclass(eq=False)
class _Put:
    seq: int
    txn: Transaction
    accepted_at: float
    instances: tuple[str, ...]
    then: Accepted


class SqliteQueue(Queue):
    """The durable default queue (``queue = sqlite``)."""

    durable = True

    def __init__(
        self,
        path: str | Path,
        *,
        policy: RetryPolicy | None = None,
        high_water: int = 100_000,
        window: int = 10_000,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        if policy is not None:
            self.default_retry = policy
        self.high_water = high_water
        self.window = window
        # Opening is synchronous on purpose: a bad store is an error at start-up.
        #: Sync to disk before ``put`` returns (survives a power cut, not only a crash).
        self.fsync = fsync
        conn = self._conn = open_store(self.path, sync="full" if fsync else "normal")
        self._lock = lock_exclusively(self.path, conn)
        take_page_size(conn)
        # Checkpoints (copying the WAL into the file, with fsyncs) run in a thread of their
        # own, never inside a commit that someone waits on.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpointer = Checkpointer(self.path)
        self._writer = GroupCommitter(conn, self.path, fsync=fsync, tick=self._poll, tick_interval=POLL_INTERVAL)
        self._lanes: dict[str, Lane] = {}
        self._dead: dict[str, int] = {}
        self._unwritten = 0
        self._held: dict[int, _Held] = {}
        self._warned = False
        #: Dead letters sent back by ``queue retry`` and not delivered yet: their delivery is logged.
        self._requeued_seqs: set[tuple[str, int]] = set()
        #: The config file the daemon read, named in the dead-letter hint (``queue -c FILE``).
        self.config_source: str | None = None
        conn.execute("UPDATE delivery SET state = 'pending' WHERE state = 'requeued'")
        self._next_seq = (conn.execute("SELECT max(seq) FROM delivery").fetchone()[0] or 0) + 1
        self._counts: dict[str, int] = {}
        for instance, state, count in conn.execute(
            "SELECT instance, state, count(*) FROM delivery GROUP BY instance, state"
        ):
            if state == "dead":
                self._dead[instance] = count
            else:
                self._counts[instance] = count
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._checkpointer.start()

    # -- the Queue interface ---------------------------------------------------------

    def attach(self, instances: Iterable[str]) -> None:
        wanted = list(instances)
        for name in wanted:
            if name not in self._lanes:
                lane = Lane(name, self.window, pending=self._counts.pop(name, 0))
                self._lanes[name] = lane
                lane.wakeup.set()
        for name in list(self._lanes):
            if name not in wanted:
                lane = self._lanes.pop(name)
                # Its rows stay on disk: re-adding the instance later delivers them.
                self._persist_held(lane)
                self._counts[name] = lane.pending
                lane.wakeup.set()
        if self._warned:
            return
        self._warned = True
        stale = {n: c for n, c in self._counts.items() if c and n not in self._lanes}
        for name, count in stale.items():
            log.warning(
                "push_notification %s: %d queued transaction(s) kept for an instance no longer"
                " configured; add it back to deliver them",
                name,
                count,
            )

    def _check_room(self) -> None:
        for lane in self._lanes.values():
            if lane.pending >= self.high_water:
                raise QueueFull(f"queue for push_notification {lane.name} holds {lane.pending} transactions")
        if self._unwritten >= self.high_water:
            raise QueueFull(f"queue store {self.path} is {self._unwritten} transactions behind")

    async def put_held(self, txn: Transaction, release: Release) -> None:
        if not self.offer_held(txn, release):
            # A backlog waits on disk, in order: this one joins it as rows.
            await self.put(txn)
            release()

    def offer_held(self, txn: Transaction, release: Release) -> bool:
        lanes = self._lanes
        if not lanes:
            return False
        for lane in lanes.values():  # Lane.has_room, inlined: this runs for every notification
            if lane.spilled or lane.in_memory >= lane.window:
                return False
        self._check_room()
        seq = self._next_seq
        self._next_seq += 1
        now = time.time()
        self._held[seq] = _Held(release, set(lanes))
        for lane in lanes.values():
            lane.accept(Entry(seq, txn, now, held=True), now)
        self.observer.accepted(txn)
        return True

    async def put(self, txn: Transaction) -> None:
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.put_then(txn, partial(_settle, accepted))
        await accepted

    def put_then(self, txn: Transaction, then: Accepted) -> None:
        """Rows for every attached instance, in the next group commit; ``then`` runs from the
        commit's callback (no task, no loop turn of its own): the ingress answers from there."""
        lanes = self._lanes
        if not lanes:
            then(None)
            return
        try:
            self._check_room()
        except QueueFull as exc:
            then(exc)
            return
        put = _Put(self._next_seq, txn, time.time(), tuple(lanes), then)
        self._next_seq += 1
        body = txn.json
        rows = [(name, put.seq, txn.id, txn.user.username, put.accepted_at, body) for name in put.instances]

        def write(conn: sqlite3.Connection) -> Callable[[], None]:
            if len(rows) == 1:
                conn.execute(_INSERT, rows[0])
            else:
                conn.executemany(_INSERT, rows)
            return partial(self._committed, put)

        def refuse(message: str) -> None:
            self._unwritten -= 1
            then(QueueFull(f"queue store {self.path} cannot be written: {message}", retry_after=5.0))

        self._unwritten += 1
        self._writer.submit(Write(write, sync=True, on_error=refuse))

    async def get(self, instance: str, limit: int) -> list[Transaction]:
        while True:
            lane = self._lanes.get(instance)
            if lane is None:
                return []
            if lane.spilled:  # else nothing waits on disk
                self._refill_if_low(lane)
            now = time.time()
            next_due = lane.promote(now) if lane.waiting else None
            if lane.ready:
                return lane.take(limit)
            await lane.wait(next_due, now)

    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        lane = self._lanes.get(instance)
        entry = lane.head(txn) if lane is not None else None
        if lane is None or entry is None:
            return  # the instance was removed meanwhile; its row stays for a later run
        now = time.time()
        seq = entry.seq
        if error is None:
            lane.finish(entry, now)
            if entry.held:
                self._unhold(seq, instance)
            else:
                self._writer.submit(
                    Write(
                        lambda c: c.execute("DELETE FROM delivery WHERE instance = ? AND seq = ?", (instance, seq)),
                        lazy=True,
                    )
                )
            if entry.attempts or (self._requeued_seqs and (instance, seq) in self._requeued_seqs):
                self._requeued_seqs.discard((instance, seq))
                log.info(
                    "push_notification %s: transaction %s (user %s) %s after %s",
                    instance,
                    txn.id,
                    txn.user.username,
                    "taken into storm control" if instance in self.relayed else "delivered",
                    f"{entry.attempts + 1} attempts" if entry.attempts else "push-notification queue retry",
                    extra=delivery_fields(instance, txn, "delivered", attempt=entry.attempts + 1),
                )
            self.observer.finished(instance, "delivered", now - entry.accepted_at)
            return
        entry.attempts += 1
        attempts = entry.attempts
        reason = describe_error(error)
        outcome, when = self.retry_policy(instance).decide(
            error, attempts=attempts, accepted_at=entry.accepted_at, now=now
        )
        if outcome == "retry":
            lane.retry(entry, when, now)
            self._record(instance, entry, "pending", reason, now)
            log.warning(
                "push_notification %s: transaction %s (user %s, mailbox %s) attempt %d failed: %s;"
                " attempt %d at %s (in %.1fs)",
                instance,
                txn.id,
                txn.user.username,
                txn.mailbox,
                attempts,
                reason,
                attempts + 1,
                time.strftime("%H:%M:%S", time.localtime(when)),
                when - now,
                extra=delivery_fields(instance, txn, "retry", attempt=attempts, next_attempt=round(when, 3)),
            )
        else:
            lane.finish(entry, now)
            self._dead[instance] = self._dead.get(instance, 0) + 1
            self._record(instance, entry, "dead", reason, now)
            self._requeued_seqs.discard((instance, seq))
            self._log_dead(instance, txn, attempts, reason)
        self.observer.finished(instance, outcome, now - entry.accepted_at)

    async def bury(self, instance: str, letters: Sequence[Letter], error: BaseException, attempts: int) -> None:
        """Dead-letter rows for transactions taken already (storm control's merged delivery of
        them failed for good), committed and synced as an acceptance is before this returns."""
        reason, now = describe_error(error), time.time()
        rows = []
        for txn, accepted_at in letters:
            rows.append((instance, self._next_seq, txn.id, txn.user.username, accepted_at, txn.json,
                         "dead", attempts, now, reason, now))  # fmt: skip
            self._next_seq += 1
        kept: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def committed() -> None:
            if not kept.done():
                kept.set_result(None)

        def write(conn: sqlite3.Connection) -> Callable[[], None]:
            conn.executemany(_RECORD, rows)
            return committed

        def refused(message: str) -> None:
            if not kept.done():
                kept.set_exception(OSError(f"queue store {self.path} cannot be written: {message}"))

        self._writer.submit(Write(write, sync=True, on_error=refused))
        await kept
        self._dead[instance] = self._dead.get(instance, 0) + len(rows)
        for txn, _ in letters:
            self._log_dead(instance, txn, attempts, reason)

    def _log_dead(self, instance: str, txn: Transaction, attempts: int, reason: str) -> None:
        log.warning(
            "push_notification %s: transaction %s (user %s, mailbox %s) is a dead letter after %d attempt(s):"
            " %s; see push-notification queue%s list --instance %s",
            instance,
            txn.id,
            txn.user.username,
            txn.mailbox,
            attempts,
            reason,
            f" -c {self.config_source}" if self.config_source else "",
            instance,
            extra=delivery_fields(instance, txn, "dead", attempt=attempts),
        )

    def requeue_taken(self, instance: str) -> None:
        lane = self._lanes.get(instance)
        if lane is not None:
            lane.requeue_in_flight(time.time())

    def supervise(self, report: CrashReport) -> None:
        self._writer.report = report
        self._checkpointer.report = report

    def depth(self, instance: str | None = None) -> int:
        if instance is not None:
            lane = self._lanes.get(instance)
            return lane.pending if lane is not None else self._counts.get(instance, 0)
        return sum(lane.pending for lane in self._lanes.values())

    def dead_letters(self, instance: str | None = None) -> int:
        if instance is not None:
            return self._dead.get(instance, 0)
        return sum(self._dead.values())

    async def close(self) -> None:
        """Write what is still waiting (held transactions become rows), then close the file."""
        for lane in self._lanes.values():
            self._persist_held(lane)
        await self._writer.close()
        await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.stop)
        self._lock.close()

    @property
    def commits(self) -> int:
        """Commits made (fewer than puts under load: group commit)."""
        return self._writer.commits

    # -- in the event loop -----------------------------------------------------------

    def _committed(self, put: _Put) -> None:
        """Runs in the loop, in commit order, once ``put``'s rows are on disk."""
        self._unwritten -= 1
        for name in put.instances:
            lane = self._lanes.get(name)
            if lane is None:
                self._counts[name] = self._counts.get(name, 0) + 1
                continue
            lane.accept(Entry(put.seq, put.txn, put.accepted_at), put.accepted_at)
        self.observer.accepted(put.txn)
        # The sender's answer last, yet before the deliveries woken above run: those wait
        # for the loop, while the ingress writes its 202 from here.
        put.then(None)

    # -- held transactions ---------------------------------------------------------------

    def _unhold(self, seq: int, instance: str) -> None:
        """``instance`` no longer needs the sender's copy of ``seq``: release it after the last."""
        held = self._held.get(seq)
        if held is None:
            return
        held.owed.discard(instance)
        if not held.owed:
            del self._held[seq]
            held.release()

    def _record(
        self, instance: str, entry: Entry, state: str, reason: str | None = None, failed_at: float | None = None
    ) -> None:
        """Write ``entry``'s state (a retry, a dead letter, or pending at shutdown) to its row.

        A held entry has no row yet: the same statement creates it, and the sender's copy is
        released for this instance once it is committed (synced, as an acceptance is). An
        entry with a row only updates it, lazily while it is still to be retried."""
        held, entry.held = entry.held, False  # later outcomes update this row, in commit order
        txn, seq = entry.txn, entry.seq
        row = (
            instance, seq, txn.id, txn.user.username, entry.accepted_at, txn.json,
            state, entry.attempts, entry.next_at, reason, failed_at,
        )  # fmt: skip

        def write(conn: sqlite3.Connection) -> Callable[[], None] | None:
            conn.execute(_RECORD, row)
            return (lambda: self._unhold(seq, instance)) if held else None

        def still_held(message: str) -> None:
            # The row is not there (a full disk): the sender's copy stays the durable one, and
            # is released once this instance delivers, or the next record is written.
            entry.held = True

        self._writer.submit(
            Write(write, sync=held, lazy=not held and state == "pending", on_error=still_held if held else None)
        )

    def _persist_held(self, lane: Lane) -> None:
        for entry in lane.held():
            self._record(lane.name, entry, "pending")

    def _refill_if_low(self, lane: Lane) -> None:
        """Read the next rows of a spilled lane once its memory runs low."""
        wanted = lane.refill_from()
        if wanted is None:
            return
        name, (after, room) = lane.name, wanted
        room = min(room, REFILL_CHUNK)

        def read(conn: sqlite3.Connection) -> Callable[[], None]:
            rows = conn.execute(
                "SELECT seq, body, accepted_at, attempts, next_at FROM delivery"
                " WHERE instance = ? AND seq > ? AND state = 'pending' ORDER BY seq LIMIT ?",
                (name, after, room),
            ).fetchall()
            entries = [entry for entry in map(_load, rows) if entry is not None]
            caught_up = len(rows) < room
            return lambda: lane.refilled(entries, time.time(), caught_up=caught_up)

        self._writer.submit(Write(read, on_error=lambda message: lane.refill_failed()))

    def _requeued(self, rows: list[tuple[str, Entry | None]]) -> None:
        """Dead letters ``push-notification queue retry`` sent back, now ``pending``."""
        now = time.time()
        taken: dict[str, int] = {}
        for name, entry in rows:
            if entry is None:
                continue
            self._dead[name] = max(self._dead.get(name, 0) - 1, 0)
            lane = self._lanes.get(name)
            if lane is None:
                self._counts[name] = self._counts.get(name, 0) + 1
                continue
            taken[name] = taken.get(name, 0) + 1
            self._requeued_seqs.add((name, entry.seq))
            lane.requeued(entry, now)
        for name, count in taken.items():
            log.info("push_notification %s: %d dead letter(s) sent back by queue retry; delivering", name, count)

    def _poll(self, conn: sqlite3.Connection) -> Callable[[], None] | None:
        """Notice ``push-notification queue retry|purge`` run against the file meanwhile:
        recount dead letters, and take in requeued ones (now ``pending``)."""
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return None
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT instance, seq, body, accepted_at, attempts, next_at FROM delivery WHERE state = 'requeued'"
            ).fetchall()
            conn.execute("UPDATE delivery SET state = 'pending' WHERE state = 'requeued'")
            conn.execute("COMMIT")
            dead = dict(conn.execute("SELECT instance, count(*) FROM delivery WHERE state = 'dead' GROUP BY instance"))
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error("queue store %s: reading requeued dead letters failed: %s", self.path, exc)
            return None
        requeued = [(row[0], _load(row[1:])) for row in rows]

        def apply() -> None:
            self._dead = dead
            self._requeued(requeued)

        return apply


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    """``put``'s future, from ``put_then``'s outcome (unless its waiter went away)."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _load(row: tuple[Any, ...]) -> Entry | None:
    """An entry from ``(seq, body, accepted_at, attempts, next_at)``; a row that no longer
    parses (hand-edited file) is logged and skipped rather than stopping the lane."""
    seq, body, accepted_at, attempts, next_at = row
    try:
        txn = transaction_from_json(str(body))
    except (ValueError, TypeError) as exc:
        log.error("queue: row %s cannot be read back (%s); left in the file", seq, exc)
        return None
    return Entry(int(seq), txn, float(accepted_at), int(attempts), float(next_at))
