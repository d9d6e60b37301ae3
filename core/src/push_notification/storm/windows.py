"""The storm-control queue: in front of the real queue for the instances that use it.

For such an instance a pump takes each transaction from the queue, writes it to the storm
store and only then acknowledges it, so the queue hands over the user's next one (it keeps one
delivery per user in flight). The user's window collects them until it is due: ``coalesce``
after the first, ``defer_non_new`` after the first non-MessageNew one unless new mail comes
first. Then the dispatcher gets the merged transactions; their outcome removes the held rows,
or schedules them again with the instance's retry policy. A merged delivery that fails for good
makes each transaction it stands for a dead letter of the queue (``Queue.bury``), as if its own
delivery had failed: ``push-notification queue list`` shows them and ``queue retry`` sends them
back through the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from push_notification.events import MessageNew
from push_notification.queue import Queue
from push_notification.queue.contract import Letter
from push_notification.queue.retry import RetryPolicy, describe_error
from push_notification.queue.threads import CrashReport
from push_notification.storm.merge import merge
from push_notification.storm.settings import StormSettings
from push_notification.storm.store import StormStore
from push_notification.transaction import Transaction

log = logging.getLogger("push_notification.storm")

#: Starts a long-running task: ``spawn(name, run)`` (as the dispatcher's workers are started).
Spawn = Callable[[str, Callable[[], Awaitable[None]]], "asyncio.Task[None]"]


def _plain_task(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """Without a supervisor: a crash is logged (never lost silently); the lane then stalls."""

    async def main() -> None:
        try:
            await run()
        except Exception:
            log.exception("%s crashed", name)
            raise

    return asyncio.create_task(main(), name=name)


#: How many transactions the pump takes from the queue at once.
PUMP_BATCH = 256
#: After a store failure the pump waits this long before taking more.
PUMP_PAUSE = 1.0
#: Held transactions that failed for good and could not be made dead letters are tried again
#: after this long (they stay in the storm store meanwhile, so a restart loses none either).
BURY_PAUSE = 5.0


@dataclass(eq=False)
class _Held:
    key: int
    txn: Transaction
    at: float


@dataclass(eq=False)
class _Window:
    """One user's held transactions in one instance."""

    held: list[_Held] = field(default_factory=list)
    due: float = math.inf
    not_before: float = 0.0
    in_flight: int = 0
    attempts: int = 0

    def ready_at(self) -> float:
        return max(self.due, self.not_before)


@dataclass(eq=False)
class _Lane:
    name: str
    settings: StormSettings
    windows: dict[str, _Window] = field(default_factory=dict)
    flights: dict[str, tuple[str, list[_Held]]] = field(default_factory=dict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None
    closed: bool = False
    #: What a previous run held has been taken in (once, even if the pump restarts).
    loaded: bool = False

    def held(self) -> int:
        return sum(len(w.held) for w in self.windows.values())

    def absorb(self, item: _Held) -> None:
        user = item.txn.user.username
        window = self.windows.get(user)
        if window is None:
            window = self.windows[user] = _Window()
        window.held.append(item)
        new = any(isinstance(event, MessageNew) for event in item.txn.events)
        wait = self.settings.coalesce if new or not self.settings.defer_non_new else self.settings.defer_non_new
        window.due = min(window.due, item.at + wait)

    def next_ready(self) -> float | None:
        times = [w.ready_at() for w in self.windows.values() if w.held and not w.in_flight]
        return min(times) if times else None


class _Figures:
    """What storm control did, for ``/metrics``."""

    def __init__(self, lanes: Callable[[], Mapping[str, _Lane]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.absorbed = Counter(
            "push_notification_storm_held", "Transactions taken into a storm-control window.", ["instance"],
            registry=self.registry,
        )  # fmt: skip
        self.merged = Counter(
            "push_notification_storm_merged",
            "Transactions delivered merged into another, by why they waited (coalesce, defer).",
            ["instance", "reason"],
            registry=self.registry,
        )
        self.flushed = Counter(
            "push_notification_storm_flushed",
            "Merged transactions handed to the driver, and the events they carried.",
            ["instance", "unit"],
            registry=self.registry,
        )
        self.dead = Counter(
            "push_notification_storm_dead",
            "Held transactions given up on after their merged delivery failed for good.",
            ["instance"],
            registry=self.registry,
        )
        self.registry.register(_Waiting(lanes))


class _Waiting(Collector):
    def __init__(self, lanes: Callable[[], Mapping[str, _Lane]]) -> None:
        self.lanes = lanes

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "push_notification_storm_waiting", "Transactions waiting in storm-control windows.", labels=["instance"]
        )
        for name, lane in self.lanes().items():
            gauge.add_metric([name], lane.held())
        yield gauge


class StormQueue(Queue):
    """The queue the dispatcher sees: the inner queue, with windows for some instances."""

    def __init__(
        self,
        inner: Queue,
        store: Callable[[], StormStore],
        settings: Mapping[str, StormSettings] | None = None,
        *,
        spawn: Spawn | None = None,
    ) -> None:
        self.inner = inner
        self.durable = inner.durable
        self._open_store = store
        self._store: StormStore | None = None
        self.settings: dict[str, StormSettings] = dict(settings or {})
        #: Starts each pump (the daemon's supervisor restarts a crashed one).
        self._spawn = spawn or _plain_task
        self._lanes: dict[str, _Lane] = {}
        self.figures = _Figures(lambda: self._lanes)

    @property
    def metrics(self) -> CollectorRegistry:
        return self.figures.registry

    @property
    def store(self) -> StormStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def configure(self, settings: Mapping[str, StormSettings]) -> None:
        """New settings (reload); they apply to instances attached from now on."""
        self.settings.update(settings)

    def retry_policy(self, instance: str) -> RetryPolicy:
        return self.inner.retry_policy(instance)

    # -- the Queue contract ------------------------------------------------------------

    def attach(self, instances: Iterable[str]) -> None:
        names = list(instances)
        self.inner.attach(names)
        for name in [n for n in self._lanes if n not in names]:
            lane = self._lanes.pop(name)
            lane.closed = True
            lane.wakeup.set()
            if lane.pump is not None:
                lane.pump.cancel()
        for name in names:
            settings = self.settings.get(name)
            if name in self._lanes:
                # A reload changed the windows (0 = off: what is held still flushes, at once).
                self._lanes[name].settings = settings or StormSettings()
                continue
            if settings is None or not settings.active:
                continue
            lane = self._lanes[name] = _Lane(name, settings)
            lane.pump = self._spawn(f"storm control {name}", partial(self._pump, lane))
        self.inner.relayed = frozenset(self._lanes)

    async def put(self, txn: Transaction) -> None:
        await self.inner.put(txn)

    async def put_held(self, txn: Transaction, release: Callable[[], None]) -> None:
        await self.inner.put_held(txn, release)

    def offer_held(self, txn: Transaction, release: Callable[[], None]) -> bool:
        return self.inner.offer_held(txn, release)

    # get and done are plain functions handing back the inner queue's coroutine for an
    # instance without storm control: no extra coroutine per call on the delivery path.
    def get(self, instance: str, limit: int) -> Coroutine[Any, Any, list[Transaction]]:
        lane = self._lanes.get(instance)
        if lane is None:
            return self.inner.get(instance, limit)
        return self._get_windowed(lane, limit)

    async def _get_windowed(self, lane: _Lane, limit: int) -> list[Transaction]:
        while not lane.closed:
            ready = self._flush(lane, time.time(), limit)
            if ready:
                return ready
            lane.wakeup.clear()
            when = lane.next_ready()
            timeout = None if when is None else max(0.0, when - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wakeup.wait(), timeout)
        return []

    def done(self, instance: str, txn: Transaction, error: BaseException | None) -> Coroutine[Any, Any, None]:
        lane = self._lanes.get(instance)
        flight = lane.flights.pop(txn.id, None) if lane is not None else None
        if lane is None or flight is None:
            return self.inner.done(instance, txn, error)
        return self._done_windowed(lane, flight, error)

    async def _done_windowed(self, lane: _Lane, flight: tuple[str, list[_Held]], error: BaseException | None) -> None:
        user, members = flight
        window = lane.windows[user]
        window.in_flight -= 1
        if error is None:
            window.attempts = 0
            await self.store.remove([m.key for m in members])
        else:
            await self._failed(lane, window, members, error)
        if not window.in_flight and not window.held:
            del lane.windows[user]
        lane.wakeup.set()

    def depth(self, instance: str | None = None) -> int:
        if instance is not None:
            lane = self._lanes.get(instance)
            return self.inner.depth(instance) + (lane.held() if lane is not None else 0)
        return self.inner.depth() + sum(lane.held() for lane in self._lanes.values())

    def dead_letters(self, instance: str | None = None) -> int:
        return self.inner.dead_letters(instance)

    async def bury(self, instance: str, letters: Sequence[Letter], error: BaseException, attempts: int) -> None:
        await self.inner.bury(instance, letters, error, attempts)

    def requeue_taken(self, instance: str) -> None:
        """A restarted worker sees again the merged transactions its predecessor had taken."""
        lane = self._lanes.get(instance)
        if lane is None:
            self.inner.requeue_taken(instance)
            return
        for user, members in lane.flights.values():
            window = lane.windows[user]
            window.held[0:0] = members
            window.in_flight -= 1
            window.due = 0.0
        lane.flights.clear()
        lane.wakeup.set()

    def supervise(self, report: CrashReport) -> None:
        self.inner.supervise(report)

    async def close(self) -> None:
        for lane in self._lanes.values():
            lane.closed = True
            if lane.pump is not None:
                lane.pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.pump
        self._lanes.clear()
        if self._store is not None:
            self._store.close()
        await self.inner.close()

    # -- windows -----------------------------------------------------------------------

    async def _pump(self, lane: _Lane) -> None:
        """What a previous run held, then queue → store → window, acknowledging each
        transaction once it is stored."""
        name = lane.name
        self.inner.requeue_taken(name)  # a restarted pump sees again what it had not stored
        while not lane.loaded:
            try:
                for key, txn, at in await self.store.load(name):
                    lane.absorb(_Held(key, txn, at))
                lane.loaded = True
            except Exception as exc:  # noqa: BLE001 - retried; the queue keeps new work meanwhile
                log.error("push_notification %s: storm control cannot read what it held: %s", name, exc)
                await asyncio.sleep(PUMP_PAUSE)
        lane.wakeup.set()
        while not lane.closed:
            batch = await self.inner.get(name, PUMP_BATCH)
            if not batch:
                return
            for txn in batch:
                now = time.time()
                try:
                    key = await self.store.add(name, txn, now)
                except Exception as exc:  # noqa: BLE001 - the queue keeps it and tries again
                    log.error("push_notification %s: storm control cannot hold %s: %s", name, txn.id, exc)
                    await self.inner.done(name, txn, exc)
                    await asyncio.sleep(PUMP_PAUSE)
                    continue
                lane.absorb(_Held(key, txn, now))
                self.figures.absorbed.labels(name).inc()
                await self.inner.done(name, txn, None)
            lane.wakeup.set()

    def _flush(self, lane: _Lane, now: float, limit: int) -> list[Transaction]:
        ready: list[Transaction] = []
        for user, window in lane.windows.items():
            if len(ready) >= limit:
                break
            if not window.held or window.in_flight or window.ready_at() > now:
                continue
            members, window.held, window.due = window.held, [], math.inf
            for txn, indexes in merge([m.txn for m in members]):
                group = [members[i] for i in indexes]
                lane.flights[txn.id] = (user, group)
                window.in_flight += 1
                ready.append(txn)
                self._count(lane.name, txn, group)
        return ready

    def _count(self, name: str, txn: Transaction, group: list[_Held]) -> None:
        figures = self.figures
        figures.flushed.labels(name, "transactions").inc()
        figures.flushed.labels(name, "events").inc(len(txn.events))
        for member in group[1:]:
            new = any(isinstance(e, MessageNew) for e in member.txn.events)
            figures.merged.labels(name, "coalesce" if new else "defer").inc()

    async def _failed(self, lane: _Lane, window: _Window, members: list[_Held], error: BaseException) -> None:
        now = time.time()
        window.attempts += 1
        policy = self.inner.retry_policy(lane.name)
        outcome, when = policy.decide(error, attempts=window.attempts, accepted_at=min(m.at for m in members), now=now)
        if outcome == "retry":
            window.held[0:0] = members
            window.not_before = when
            window.due = min(window.due, when)
            return
        try:
            await self.inner.bury(lane.name, [Letter(m.txn, m.at) for m in members], error, window.attempts)
        except Exception as exc:  # noqa: BLE001 - they stay held and are tried again
            log.error(
                "push_notification %s: %d held transaction(s) of user %s failed for good (%s), but cannot be"
                " kept as dead letters: %s; trying again in %gs",
                lane.name, len(members), members[0].txn.user.username, describe_error(error), exc, BURY_PAUSE,
            )  # fmt: skip
            window.held[0:0] = members
            window.not_before = now + BURY_PAUSE
            window.due = min(window.due, window.not_before)
            return
        window.attempts = 0
        await self.store.remove([m.key for m in members])
        self.figures.dead.labels(lane.name).inc(len(members))
