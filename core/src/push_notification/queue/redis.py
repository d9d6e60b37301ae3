"""The shared queue: Redis Streams, so many daemons accept and deliver as one (``queue = redis``).

Why it looks like this:

* A transaction goes to one of ``partitions`` streams, chosen by its user, with one ``XADD``;
  ``put`` returns once Redis answered, so the ingress answers 202 only for what Redis holds
  (what survives a Redis crash then depends on its ``appendfsync``: docs/scale-out.md).
  Concurrent ``put``\\ s share one command (a script of their ``XADD``\\ s), as concurrent
  SQLite puts share one commit; outcomes are written the same way, a batch per loop turn.
* Every driver instance is one consumer group on every stream, so instances never hold each
  other back and any daemon's instance of that name may deliver.
* One daemon at a time delivers an (instance, partition): the lease of ``redis_leases.py``.
  In memory it keeps a :class:`~push_notification.queue.lanes.Lane` per pair, so order holds
  per user and a retry holds back only that user's later transactions.
* A delivery is acknowledged (``XACK``) only after it succeeded or became a dead letter. A
  SIGKILLed daemon's unacknowledged deliveries stay pending in Redis; when its leases lapse
  (the visibility timeout) the next owner takes them over (``XAUTOCLAIM``) before reading
  anything newer: at-least-once, in order, except that a transaction in flight on the dead
  daemon may arrive twice, and a retry scheduled there restarts its backoff on the new owner.
* Retry counts and dead letters live in Redis too (hashes per instance), so any host's
  ``push-notification queue`` sees and retries them.
* Backpressure is cluster-wide: every second each daemon counts the backlog (lag + pending)
  of the partitions it owns into one shared hash and reads the sum back, in one command: its
  upkeep grows with what it owns, not with the number of daemons. Past ``high_water`` for any
  instance, ``put`` raises :class:`QueueFull` (503). Redis out of reach is a 503 too, and a
  problem on ``/healthz`` until it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from push_notification.config.redis_client import RedisError, redis_client, safe_url
from push_notification.errors import PushNotificationError
from push_notification.queue.contract import Letter, Queue, QueueFull
from push_notification.queue.lanes import Entry, Lane
from push_notification.queue.redis_leases import Leases, Pair
from push_notification.queue.redis_store import SEQ_PER_MS, RedisStore, decode_id, encode_id, partition_of_user
from push_notification.queue.retry import RetryPolicy, describe_error
from push_notification.queue.threads import CrashReport, log_crash
from push_notification.transaction import Transaction, transaction_from_json

log = logging.getLogger("push_notification.queue")

#: Most entries one read or one takeover step brings into memory.
READ_COUNT = 500
#: How long a blocking read waits before it looks at its partitions again (ms).
READ_BLOCK_MS = 1000
#: How often backlogs and dead letters are counted (backpressure, /metrics, /healthz).
COUNT_INTERVAL = 1.0
#: Longest an ack waits to share one command with others, and how many go without waiting.
ACK_DELAY = 0.05
ACK_BATCH = 512
#: After a read that brought in fewer than :data:`READ_FULL`, wait before the next until about
#: that many are likely to have come in (from the rate the last read saw), at most this long (s):
#: a read, its dispatch and its acks cost about the same for 5 entries as for 100, so a daemon
#: whose share of the traffic is thin (one of many) reads less often, not less per read.
#: Delivery waits that much more, so the cap stays where the flat pace was (20 ms): 50 ms halved
#: the reads at four daemons but made every thin delivery 50 ms late. A read after a quiet
#: spell returns at once (it blocks).
READ_PACE = 0.02
#: A read bringing in at least this many is not paced.
READ_FULL = 200
#: How often a daemon trims what every group acknowledged from the streams it owns.
TRIM_INTERVAL = 5.0


def _raise_if_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _pace(read: int, since_last: float) -> float:
    """How long to wait after a read that brought in ``read`` entries ``since_last`` seconds
    after the one before: until :data:`READ_FULL` are likely in, at most :data:`READ_PACE`."""
    if read >= READ_FULL:
        return 0.0
    if since_last <= 0.0:
        return READ_PACE
    return min(READ_PACE, (READ_FULL - read) * since_last / read)


def _letter(txn: Transaction, accepted_at: float, attempts: int, reason: str, now: float) -> str:
    """A dead letter as ``push-notification queue`` reads it (redis_dead_letters.py)."""
    letter = {"id": txn.id, "body": txn.json, "user": txn.user.username, "accepted_at": accepted_at,
              "attempts": attempts, "error": reason, "failed_at": now}  # fmt: skip
    return json.dumps(letter)


def _log_dead(instance: str, txn: Transaction, attempts: int, reason: str) -> None:
    log.warning(
        "push_notification %s: transaction %s (user %s) is a dead letter after %d attempt(s): %s;"
        " see push-notification queue list --instance %s",
        instance, txn.id, txn.user.username, attempts, reason, instance,
    )  # fmt: skip


@dataclass(eq=False)
class _InFlight:
    pair: Pair
    entry: Entry


class RedisQueue(Queue):
    """The distributed queue (``queue = redis``): see the module docstring."""

    durable = True

    def __init__(
        self,
        url: str,
        *,
        partitions: int = 16,
        visibility_timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        high_water: int = 100_000,
        window: int = 10_000,
        prefix: str = "pn",
        daemon_id: str | None = None,
    ) -> None:
        self.url = url
        self.store = RedisStore(redis_client(url), prefix, partitions)
        self.client = self.store.client
        self.partitions = partitions
        if policy is not None:
            self.default_retry = policy
        self.high_water = high_water
        self.window = window
        self.visibility_timeout = visibility_timeout
        self.me = daemon_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leases = Leases(self.client, prefix, self.me, partitions, visibility_timeout)
        self._instances: list[str] = []
        self._lanes: dict[Pair, Lane] = {}
        self._wakeup: dict[str, asyncio.Event] = {}
        #: Pairs held and read from; ``_moving``: held, being handed to another daemon.
        self._owned: set[Pair] = set()
        self._moving: set[Pair] = set()
        #: Pairs held whose older pending deliveries must be taken over before reading more.
        self._fresh: set[Pair] = set()
        self._in_flight: dict[tuple[str, int], _InFlight] = {}
        #: Per pair held, the entries in memory (by seq), so a sweep never admits one twice.
        self._known: dict[Pair, set[int]] = {}
        self._lease_until = 0.0
        #: Per pair held, transactions accepted here and not yet read back: delivered as the
        #: same object (parsing them again would cost as much as the rest of the delivery).
        self._local: dict[Pair, dict[str, Transaction]] = {}
        self._backlog: dict[str, int] = {}
        self._dead: dict[str, int] = {}
        self._batch: list[tuple[str, str, str]] = []
        self._batch_futures: list[asyncio.Future[str]] = []
        #: The task sending puts, while one is: at most one put command is in flight.
        self._putting: asyncio.Task[None] | None = None
        #: Outcome writes that failed (Redis away): tried again by the maintenance loop.
        self._unwritten: list[tuple[str, Any]] = []
        self._write_handle: asyncio.Handle | None = None
        self._write_soon = False
        self._writing: set[asyncio.Future[None]] = set()
        #: (stream, instance, entry id) finished here whose ack Redis has not taken yet: a sweep
        #: that finds them still pending (Redis was away) must not deliver them again.
        self._acks_owed: set[tuple[str, str, str]] = set()
        #: Pairs a read in flight covers.
        self._reading: set[Pair] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._assigned = asyncio.Event()
        self._groups: asyncio.Future[None] | None = None
        self._reachable = True
        #: Why Redis is out of reach (for /healthz), while it is.
        self._unreachable_reason = ""
        self._closing = False
        self._report: CrashReport = log_crash

    # -- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        """Connect and check the shared layout; one clear line when Redis cannot be used."""
        try:
            await self.store.check(self.url)
        except BaseException:
            await self.client.aclose()
            raise
        self._tasks.append(asyncio.create_task(self._maintain(), name="pn-redis-maintain"))

    async def close(self) -> None:
        """Stop reading, write what is owed, hand every lease back at once (the others take over
        at their next beat instead of after the visibility timeout)."""
        self._closing = True
        for task in [*self._readers.values(), *self._tasks]:
            task.cancel()
        for task in [*self._readers.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._write_handle is not None:
            self._write_handle.cancel()
        # Each step on its own: a write that failed must not keep the leases from being handed back.
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._writing, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._write_unwritten()
        with contextlib.suppress(Exception):
            await self.leases.release(self._owned | self._moving)
        with contextlib.suppress(Exception):
            await self.leases.leave()
        await self.store.close()
        await self.client.aclose()

    @property
    def owned(self) -> frozenset[Pair]:
        """The (instance, partition) pairs this daemon delivers now."""
        return frozenset(self._owned)

    # -- the Queue interface -------------------------------------------------------

    def attach(self, instances: Iterable[str]) -> None:
        wanted = list(instances)
        for name in wanted:
            if name not in self._wakeup:
                self._wakeup[name] = asyncio.Event()
                self._readers[name] = asyncio.create_task(self._read(name), name=f"pn-redis-read-{name}")
        for name in list(self._wakeup):
            if name not in wanted:
                self._readers.pop(name).cancel()
                self._wakeup.pop(name).set()
                for pair in [p for p in self._lanes if p[0] == name]:
                    self._drop(pair)
        self._instances = wanted
        self._groups = asyncio.ensure_future(self.store.ensure_groups(wanted))
        self._assigned.set()

    async def put(self, txn: Transaction) -> None:
        if not self._reachable:
            raise QueueFull(f"queue {safe_url(self.url)} is unreachable", retry_after=1.0)
        for name in self._instances:
            if self._backlog.get(name, 0) >= self.high_water:
                raise QueueFull(f"queue for push_notification {name} holds {self._backlog[name]} transactions")
        if not self._instances:
            return
        if self._groups is not None and not self._groups.done():
            await self._groups
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        if self._putting is None:  # its first step takes every put made until then
            task = self._putting = loop.create_task(self._send_puts())
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)
        partition = self.partition(txn.user.username)
        self._batch.append((self.store.stream(partition), txn.json, txn.id))
        self._batch_futures.append(future)
        cached = [
            local
            for local in (self._local.get((name, partition)) for name in self._instances)
            if local is not None and len(local) < self.window
        ]
        for local in cached:
            local[txn.id] = txn
        try:
            await future
        except BaseException:
            for local in cached:
                local.pop(txn.id, None)
            raise
        self.observer.accepted(txn)

    async def get(self, instance: str, limit: int) -> list[Transaction]:
        while True:
            wakeup = self._wakeup.get(instance)
            if wakeup is None:
                return []
            now = time.time()
            batch: list[Transaction] = []
            next_due: float | None = None
            for pair, lane in self._lanes.items():
                if pair[0] != instance or pair in self._moving:
                    continue
                due = lane.promote(now)
                if due is not None and (next_due is None or due < next_due):
                    next_due = due
                for txn in lane.take(limit - len(batch)):
                    entry = lane.head(txn)
                    assert entry is not None
                    self._in_flight[(instance, id(txn))] = _InFlight(pair, entry)
                    batch.append(txn)
                if len(batch) >= limit:
                    break
            if batch:
                return batch
            wakeup.clear()
            timeout = None if next_due is None else max(next_due - now, 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wakeup.wait()

    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        flight = self._in_flight.pop((instance, id(txn)), None)
        if flight is None:
            return
        pair, entry = flight.pair, flight.entry
        lane = self._lanes.get(pair)
        if lane is not None and lane.head(txn) is not entry:
            # The lease lapsed meanwhile (and may be ours again, with the entry claimed anew):
            # this lane never handed it out, so only Redis hears of the outcome.
            lane = None
        stream, entry_id = self.store.stream(pair[1]), decode_id(entry.seq)
        now = time.time()
        if error is None:
            if lane is not None:
                lane.finish(entry, now)
                self._known.get(pair, set()).discard(entry.seq)
            self._write("ack", (stream, instance, entry_id, entry.attempts > 0))
            self.observer.finished(instance, "delivered", now - entry.accepted_at)
            self._release_if_idle(pair)
            return
        entry.attempts += 1
        reason = describe_error(error)
        outcome, when = self.retry_policy(instance).decide(
            error, attempts=entry.attempts, accepted_at=entry.accepted_at, now=now
        )
        if outcome == "retry":
            if lane is not None:
                lane.retry(entry, when, now)
            else:
                entry.next_at = when
            state = {"attempts": entry.attempts, "next_at": when, "error": reason}
            self._write("retry", (stream, instance, entry_id, json.dumps(state)))
            log.info(
                "push_notification %s: transaction %s (user %s) will be retried in %.1fs (attempt %d)",
                instance,
                txn.id,
                txn.user.username,
                when - now,
                entry.attempts + 1,
            )
        else:
            if lane is not None:
                lane.finish(entry, now)
                self._known.get(pair, set()).discard(entry.seq)
            letter = _letter(txn, entry.accepted_at, entry.attempts, reason, now)
            self._write("dead", (stream, instance, entry_id, letter))
            self._dead[instance] = self._dead.get(instance, 0) + 1
            _log_dead(instance, txn, entry.attempts, reason)
            self._release_if_idle(pair)
        self.observer.finished(instance, outcome, now - entry.accepted_at)

    async def bury(self, instance: str, letters: Sequence[Letter], error: BaseException, attempts: int) -> None:
        """Dead letters for transactions acknowledged already (storm control's merged delivery
        of them failed for good), in Redis before this returns; keyed by transaction id, as
        their stream entries are gone."""
        reason, now = describe_error(error), time.time()
        kept = {f"txn:{txn.id}": _letter(txn, at, attempts, reason, now) for txn, at in letters}
        await self.store.bury(instance, kept)
        self._dead[instance] = self._dead.get(instance, 0) + len(letters)
        for txn, _ in letters:
            _log_dead(instance, txn, attempts, reason)

    def requeue_taken(self, instance: str) -> None:
        now = time.time()
        for key in [key for key in self._in_flight if key[0] == instance]:
            del self._in_flight[key]
        for pair, lane in self._lanes.items():
            if pair[0] == instance:
                lane.requeue_in_flight(now)

    def depth(self, instance: str | None = None) -> int:
        if instance is not None:
            return self._backlog.get(instance, 0)
        return sum(self._backlog.get(name, 0) for name in self._instances)

    def dead_letters(self, instance: str | None = None) -> int:
        if instance is not None:
            return self._dead.get(instance, 0)
        return sum(self._dead.values())

    def problem(self) -> str | None:
        if self._reachable:
            return None
        return f"queue {safe_url(self.url)} is unreachable: {self._unreachable_reason}"

    # -- accepting -----------------------------------------------------------------

    def partition(self, username: str) -> int:
        return partition_of_user(username, self.partitions)

    async def _send_puts(self) -> None:
        """Send the puts made so far in one command, then those made meanwhile, until none
        wait: one command in flight at a time, as a group commit, so the busier the daemon
        the more puts share a command (and a lone put waits for nothing)."""
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                futures, self._batch_futures = self._batch_futures, []
                await self._send_batch(batch, futures)
        finally:
            self._putting = None

    async def _send_batch(self, batch: list[tuple[str, str, str]], futures: list[asyncio.Future[str]]) -> None:
        try:
            ids = await self.store.add(batch)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of Redis is a 503 for these puts
            self._unreachable(exc)
            for future in futures:
                if not future.done():
                    future.set_exception(QueueFull(f"queue {safe_url(self.url)} is unreachable", retry_after=1.0))
            return
        self._reached()
        for future, entry_id in zip(futures, ids, strict=True):
            if not future.done():
                future.set_result(entry_id)

    # -- delivering ----------------------------------------------------------------

    async def _read(self, instance: str) -> None:
        """Bring this instance's entries into memory: taken-over ones first, then new ones."""
        last_read = time.monotonic()
        while not self._closing:
            _raise_if_cancelled()  # a cancellation the client swallowed still ends the task
            try:
                for pair in sorted(p for p in self._fresh if p[0] == instance):
                    await self._take_over(pair)
                    self._fresh.discard(pair)
                pairs = sorted(
                    p
                    for p in self._owned
                    if p[0] == instance and p not in self._moving and p not in self._fresh
                    and self._lanes[p].in_memory < self.window
                )  # fmt: skip
                if not pairs or time.monotonic() > self._lease_until:
                    self._assigned.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(READ_BLOCK_MS / 1000):
                            await self._assigned.wait()
                    continue
                streams = {self.store.stream(p): ">" for _, p in pairs}
                room = min(self.window - self._lanes[pair].in_memory for pair in pairs)
                # A pair being handed over is released only once no read covers it: what a read
                # brings in after the release would wait for the idle sweep, out of order.
                self._reading.update(pairs)
                try:
                    reply = await self.store.read(instance, self.me, streams, min(READ_COUNT, room), READ_BLOCK_MS)
                finally:
                    self._reading.difference_update(pairs)
                self._reached()
                read = 0
                for stream, entries in reply:
                    pair = (instance, self.store.partition_of(stream))
                    self._admit(pair, entries, {})
                    read += len(entries)
                for pair in self._moving.intersection(pairs):
                    self._release_if_idle(pair)
                now = time.monotonic()
                if 0 < read < READ_FULL:
                    await asyncio.sleep(_pace(read, now - last_read))
                last_read = now
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away (or a bug, reported): read again
                _raise_if_cancelled()  # the client may turn a cancellation into its own error
                self._failed(f"redis reader {instance}", exc)
                await asyncio.sleep(1.0)

    async def _take_over(self, pair: Pair) -> None:
        """Claim every delivery of ``pair`` still pending (a dead or departed owner's, or our own
        from before a restart), with its retry state, before anything newer is read."""
        await self._claim(pair, min_idle_ms=0)

    async def _claim(self, pair: Pair, *, min_idle_ms: int) -> None:
        """Claim the pending deliveries of ``pair`` idle for ``min_idle_ms`` and admit those not
        in memory yet. The sweep with the visibility timeout catches what a daemon read just
        as its lease lapsed, after the new owner's takeover had already run."""
        instance, partition = pair
        stream = self.store.stream(partition)
        start = "0-0"
        for _ in range(10_000):
            lane = self._lanes.get(pair)
            if lane is None:
                return
            while lane.in_memory >= self.window:  # a takeover larger than the window waits for room
                await asyncio.sleep(0.1)
            room = min(READ_COUNT, self.window - lane.in_memory)
            start, entries, deleted = await self.store.claim(stream, instance, self.me, start, room, min_idle_ms)
            if deleted:
                await self.store.ack(stream, instance, deleted)
            states = await self.store.retry_states(instance, stream, [entry_id for entry_id, _ in entries])
            self._admit(pair, entries, states)
            if start == "0-0":
                return

    def _admit(self, pair: Pair, entries: list[tuple[str, dict[str, str]]], states: dict[str, Any]) -> None:
        lane = self._lanes.get(pair)
        if lane is None:
            return
        instance = pair[0]
        now = time.time()
        stream = self.store.stream(pair[1])
        local = self._local.get(pair)
        known = self._known.setdefault(pair, set())
        for entry_id, fields in entries:
            seq = encode_id(entry_id)
            if seq in known or (stream, instance, entry_id) in self._acks_owed:
                continue
            only = fields.get("only")
            if only is not None and only != instance:
                self._write("ack", (stream, instance, entry_id, False))
                continue
            try:
                # Accepted here: the very object, not parsed again.
                txn = local.pop(fields.get("id", ""), None) if local is not None else None
                if txn is None:
                    txn = transaction_from_json(fields["t"])
                # The entry id is the time Redis accepted it, unless the entry says otherwise
                # (a requeued dead letter or a storm window keeps its first acceptance).
                at = fields.get("at")
                accepted_at = float(at) if at is not None else (seq // SEQ_PER_MS) / 1000
            except (KeyError, ValueError, PushNotificationError) as exc:
                log.error("queue: entry %s of %s is unreadable (%s); acknowledged and dropped", entry_id, stream, exc)
                self._write("ack", (stream, instance, entry_id, False))
                continue
            state = states.get(entry_id) or {}
            known.add(seq)
            entry = Entry(
                seq,
                txn,
                accepted_at,
                attempts=int(state.get("attempts", 0)),
                next_at=float(state.get("next_at", 0.0)),
            )
            lane.accept(entry, now)

    def _drop(self, pair: Pair) -> None:
        """Forget ``pair``'s entries in memory; they stay pending in Redis for the next owner."""
        self._lanes.pop(pair, None)
        self._local.pop(pair, None)
        self._known.pop(pair, None)
        self._owned.discard(pair)
        self._moving.discard(pair)
        self._fresh.discard(pair)

    def _release_if_idle(self, pair: Pair) -> None:
        lane = self._lanes.get(pair)
        if pair in self._moving and pair not in self._reading and (lane is None or not lane.in_flight):
            self._drop(pair)
            self._write("release", pair)

    # -- outcomes ------------------------------------------------------------------

    def _write(self, kind: str, args: Any) -> None:
        """Record an outcome without waiting (at-least-once: a lost ack means one more delivery).

        Acks wait up to :data:`ACK_DELAY` to share one command, as the SQLite queue's lazy
        writes share a commit: a daemon's ack commands per second stay bounded however thin
        its share of the traffic is. Anything else (a retry's state, a dead letter, a lease
        handed over) goes at the next loop turn, with the acks waiting before it."""
        self._unwritten.append((kind, args))
        if kind in ("ack", "dead"):
            self._acks_owed.add(args[:3])
        urgent = kind != "ack" or len(self._unwritten) >= ACK_BATCH
        if urgent and not self._write_soon:
            if self._write_handle is not None:
                self._write_handle.cancel()
            self._write_soon = True
            self._write_handle = asyncio.get_running_loop().call_soon(self._flush_writes)
        elif self._write_handle is None:
            self._write_handle = asyncio.get_running_loop().call_later(ACK_DELAY, self._flush_writes)

    def _flush_writes(self) -> None:
        self._write_handle = None
        self._write_soon = False
        task = asyncio.ensure_future(self._write_unwritten())
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write_unwritten(self) -> None:
        writes, self._unwritten = self._unwritten, []
        if not writes:
            return
        try:
            await self.store.record(writes, self.leases)
        except Exception as exc:  # noqa: BLE001 - kept and written by the maintenance loop
            self._unreachable(exc)
            self._unwritten[:0] = writes
            return
        for kind, args in writes:
            if kind in ("ack", "dead"):  # both acknowledge the entry: (stream, instance, id, ...)
                self._acks_owed.discard(args[:3])

    # -- maintenance ---------------------------------------------------------------

    async def _maintain(self) -> None:
        """Beat and balance leases, count backlogs, write what failed before, trim streams: all
        of it in a few commands a second, about the pairs this daemon owns."""
        beat_every = max(min(self.visibility_timeout / 3, 2.0), 0.2)
        now = time.monotonic()
        next_beat = next_count = 0.0
        next_sweep = now + self.visibility_timeout
        next_trim = now + TRIM_INTERVAL
        while not self._closing:
            _raise_if_cancelled()
            try:
                if time.monotonic() >= next_beat:  # first: a late beat would let our leases lapse
                    next_beat = time.monotonic() + beat_every
                    await self._rebalance()
                if time.monotonic() >= next_sweep:
                    idle_ms = int(self.visibility_timeout * 1000)
                    for pair in sorted(self._owned - self._fresh):
                        await self._claim(pair, min_idle_ms=idle_ms)
                    next_sweep = time.monotonic() + self.visibility_timeout
                if time.monotonic() >= next_count:
                    next_count = time.monotonic() + COUNT_INTERVAL
                    trim = time.monotonic() >= next_trim
                    backlog, dead = await self.store.maintain(self._instances, self._owned | self._moving, trim=trim)
                    if trim:
                        next_trim = time.monotonic() + TRIM_INTERVAL
                    self._backlog.update(backlog)
                    self._dead.update(dead)
                    await self._write_unwritten()
                    self._reached()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away (or a bug, reported): keep going
                _raise_if_cancelled()
                self._failed("redis maintenance", exc)
            await asyncio.sleep(max(min(next_beat, next_count) - time.monotonic(), 0.05))

    async def _rebalance(self) -> None:
        beat_at = time.monotonic()
        held, moving = await self.leases.beat(self._instances, self._owned | self._moving)
        # Our leases run from the beat's start; past this, read nothing until the next beat.
        self._lease_until = beat_at + self.visibility_timeout * 0.9
        for pair in (self._owned | self._moving) - held:
            log.warning("queue: lost the lease of %s partition %d to another daemon", *pair)
            self._drop(pair)
        for pair in held - self._owned - self._moving:
            self._lanes[pair] = Lane(
                f"{pair[0]}:{pair[1]}", window=self.window, spilled=False, wakeup=self._wakeup[pair[0]]
            )
            self._local[pair] = {}
            self._fresh.add(pair)
        self._owned = held - moving
        self._moving = moving
        for pair in list(moving):
            self._release_if_idle(pair)
        self._assigned.set()

    def supervise(self, report: CrashReport) -> None:
        self._report = report

    def _failed(self, task: str, exc: BaseException) -> None:
        """Redis out of reach is a state, said once; anything else is a crash of ``task``,
        reported to the supervisor (the loop itself goes on)."""
        if isinstance(exc, RedisError | OSError | TimeoutError):
            self._unreachable(exc)
        else:
            self._report(task, exc)

    def _unreachable(self, exc: BaseException) -> None:
        reason = describe_error(exc)
        if self._reachable:
            log.error(
                "queue %s is unreachable (%s); accepting nothing (503) until it answers again",
                safe_url(self.url),
                reason,
            )
        self._reachable = False
        self._unreachable_reason = reason

    def _reached(self) -> None:
        if not self._reachable:
            log.info("queue %s answers again", safe_url(self.url))
        self._reachable = True
