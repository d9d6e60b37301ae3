"""The shared queue: Redis Streams, so many daemons accept and deliver as one (``queue = redis``).

Why it looks like this:

* A transaction goes to one of ``partitions`` streams, chosen by its user, with one ``XADD``;
  ``put`` returns once Redis answered, so the ingress answers 202 only for what Redis holds
  (what survives a Redis crash then depends on its ``appendfsync``: docs/scale-out.md).
  Concurrent ``put``\\ s share one pipeline round trip.
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
* Backpressure is cluster-wide: every daemon reads each group's backlog (lag + pending) twice
  a second; past ``high_water`` for any instance, ``put`` raises :class:`QueueFull` (503).
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

from push_notification.errors import PushNotificationError
from push_notification.queue.contract import Letter, Queue, QueueFull
from push_notification.queue.lanes import Entry, Lane
from push_notification.queue.redis_leases import Leases, Pair
from push_notification.queue.redis_store import (
    RedisError,
    RedisStore,
    decode_id,
    encode_id,
    partition_of_user,
    redis_client,
)
from push_notification.queue.retry import RetryPolicy, describe_error
from push_notification.queue.threads import CrashReport, log_crash
from push_notification.transaction import Transaction, transaction_from_json

log = logging.getLogger("push_notification.queue")

#: Most entries one read or one takeover step brings into memory.
READ_COUNT = 500
#: How long a blocking read waits before it looks at its partitions again (ms).
READ_BLOCK_MS = 1000
#: How often backlogs and dead letters are counted (backpressure, /metrics).
COUNT_INTERVAL = 0.5


def _raise_if_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


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
        self._batch: list[tuple[str, dict[str, str], asyncio.Future[str]]] = []
        #: Outcome writes that failed (Redis away): tried again by the maintenance loop.
        self._unwritten: list[tuple[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._assigned = asyncio.Event()
        self._groups: asyncio.Future[None] | None = None
        self._reachable = True
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
        with contextlib.suppress(Exception):
            await self._write_unwritten()
            await self.leases.release(self._owned | self._moving)
            await self.leases.leave()
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
            raise QueueFull(f"queue {self.store.safe_url(self.url)} is unreachable", retry_after=1.0)
        for name in self._instances:
            if self._backlog.get(name, 0) >= self.high_water:
                raise QueueFull(f"queue for push_notification {name} holds {self._backlog[name]} transactions")
        if not self._instances:
            return
        if self._groups is not None and not self._groups.done():
            await self._groups
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        fields = {"t": txn.json, "at": repr(time.time()), "id": txn.id}
        if not self._batch:
            loop.call_soon(self._flush_puts)
        partition = self.partition(txn.user.username)
        self._batch.append((self.store.stream(partition), fields, future))
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
            self._write("retry", (instance, entry_id, json.dumps(state)))
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

    # -- accepting -----------------------------------------------------------------

    def partition(self, username: str) -> int:
        return partition_of_user(username, self.partitions)

    def _flush_puts(self) -> None:
        batch, self._batch = self._batch, []
        asyncio.get_running_loop().create_task(self._send_puts(batch))

    async def _send_puts(self, batch: list[tuple[str, dict[str, str], asyncio.Future[str]]]) -> None:
        try:
            ids = await self.store.add(batch)
        except Exception as exc:  # noqa: BLE001 - any failure of Redis is a 503 for these puts
            self._unreachable(exc)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(
                        QueueFull(f"queue {self.store.safe_url(self.url)} is unreachable", retry_after=1.0)
                    )
            return
        self._reached()
        for (_, _, future), entry_id in zip(batch, ids, strict=True):
            if not future.done():
                future.set_result(entry_id)

    # -- delivering ----------------------------------------------------------------

    async def _read(self, instance: str) -> None:
        """Bring this instance's entries into memory: taken-over ones first, then new ones."""
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
                reply = await self.store.read(instance, self.me, streams, min(READ_COUNT, room), READ_BLOCK_MS)
                self._reached()
                for stream, entries in reply:
                    pair = (instance, self.store.partition_of(stream))
                    self._admit(pair, entries, {})
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
            states = await self.store.retry_states(instance, [entry_id for entry_id, _ in entries])
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
            if seq in known:
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
                accepted_at = float(fields["at"])
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
        if pair in self._moving and (lane is None or not lane.in_flight):
            self._drop(pair)
            self._write("release", pair)

    # -- outcomes ------------------------------------------------------------------

    def _write(self, kind: str, args: Any) -> None:
        """Record an outcome without waiting (at-least-once: a lost ack means one more delivery)."""
        self._unwritten.append((kind, args))
        if len(self._unwritten) == 1:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._write_unwritten()))

    async def _write_unwritten(self) -> None:
        writes, self._unwritten = self._unwritten, []
        if not writes:
            return
        try:
            await self.store.record(writes, self.leases)
        except Exception as exc:  # noqa: BLE001 - kept and written by the maintenance loop
            self._unreachable(exc)
            self._unwritten[:0] = writes

    # -- maintenance ---------------------------------------------------------------

    async def _maintain(self) -> None:
        """Beat and balance leases, count backlogs, write what failed before, trim streams."""
        beat_every = max(min(self.visibility_timeout / 3, 2.0), 0.2)
        next_beat = 0.0
        next_sweep = time.monotonic() + self.visibility_timeout
        while not self._closing:
            _raise_if_cancelled()
            try:
                if time.monotonic() >= next_beat:
                    await self._rebalance()
                    next_beat = time.monotonic() + beat_every
                if time.monotonic() >= next_sweep:
                    idle_ms = int(self.visibility_timeout * 1000)
                    for pair in sorted(self._owned - self._fresh):
                        await self._claim(pair, min_idle_ms=idle_ms)
                    next_sweep = time.monotonic() + self.visibility_timeout
                backlog, dead = await self.store.count(self._instances)
                self._backlog.update(backlog)
                self._dead.update(dead)
                await self._write_unwritten()
                if self._instances:
                    await self.store.trim({p for i, p in self._owned if i == self._instances[0]})
                self._reached()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away (or a bug, reported): keep going
                _raise_if_cancelled()
                self._failed("redis maintenance", exc)
            await asyncio.sleep(COUNT_INTERVAL)

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
        if self._reachable:
            log.error(
                "queue %s is unreachable (%s); accepting nothing (503) until it answers again",
                self.store.safe_url(self.url),
                describe_error(exc),
            )
        self._reachable = False

    def _reached(self) -> None:
        if not self._reachable:
            log.info("queue %s answers again", self.store.safe_url(self.url))
        self._reachable = True
