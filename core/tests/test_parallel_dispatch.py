"""Parallel delivery within one instance (``max_parallel_deliveries``): different users at
once, one user's transactions strictly one after the other, whatever the queue."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from push_notification.dispatch import Dispatcher
from push_notification.drivers import DriverContext, DriverInstance, create_instance
from push_notification.errors import ConfigError, RetryableError
from push_notification.hookspecs import hookimpl
from push_notification.queue import MemoryQueue, Queue
from push_notification.queue.redis import RedisQueue
from push_notification.queue.retry import RetryPolicy
from push_notification.queue.sqlite import SqliteQueue
from push_notification.settings import Settings
from push_notification.storm import SqliteStormStore, StormQueue, StormSettings
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction

from .queue_helpers import wait_for

FAST = RetryPolicy(min_delay=0.05, max_delay=0.1, deadline=30.0)


class Endpoint:
    """An endpoint that holds deliveries open: it remembers how many are open at once (and
    whether one user ever had two), and answers when the test says so."""

    def __init__(self, ctx: DriverContext) -> None:
        ctx.settings.check_unknown()
        self.open_users: set[str] = set()
        self.most_open = 0
        self.one_user_twice = False
        self.wanted_open = 0
        self.all_open = asyncio.Event()
        self.answer = asyncio.Event()
        self.answer.set()
        self.hang_user: str | None = None
        self.fail_once: set[str] = set()
        self.attempts: dict[str, int] = {}
        #: Per user, the uids of the events delivered, in delivery order.
        self.uids: dict[str, list[int]] = {}
        self.rng = random.Random(7)
        self.shuffle = False

    @hookimpl
    async def end_txn(self, txn: Transaction) -> None:
        user = txn.user.username
        self.one_user_twice |= user in self.open_users
        self.open_users.add(user)
        self.most_open = max(self.most_open, len(self.open_users))
        try:
            if self.wanted_open and len(self.open_users) >= self.wanted_open:
                self.all_open.set()
            if user == self.hang_user:
                await asyncio.Event().wait()
            await self.answer.wait()
            for _ in range(self.rng.randrange(5) if self.shuffle else 0):
                await asyncio.sleep(0)  # answers come back in another order than requests went out
            self.attempts[txn.id] = self.attempts.get(txn.id, 0) + 1
            if txn.id in self.fail_once and self.attempts[txn.id] == 1:
                raise RetryableError("endpoint busy")
            self.uids.setdefault(user, []).extend(e.uid for e in txn.events)  # type: ignore[attr-defined]
        finally:
            self.open_users.discard(user)


def endpoint(name: str = "dev", *, parallel: int = 8, timeout: float = 30.0) -> DriverInstance:
    ctx = DriverContext(instance=name, driver="endpoint", settings=Settings.from_dict(name, {}))
    return DriverInstance(name, "endpoint", Endpoint(ctx), timeout=timeout, max_parallel=parallel)


def mail(user: str, uid: int) -> Transaction:
    return make_transaction(make_event("MessageNew", uid=uid), user=user)


def plugin(instance: DriverInstance) -> Endpoint:
    assert isinstance(instance.plugin, Endpoint)
    return instance.plugin


async def clean_redis(request: pytest.FixtureRequest) -> str:
    """The URL of the session's redis-server, emptied (the async ``redis_url`` fixture cannot
    be asked for from inside another async fixture)."""
    import redis.asyncio as aioredis

    url: str = request.getfixturevalue("redis_server").url
    client = aioredis.from_url(url)
    await client.flushall()
    await client.aclose()
    return url


@pytest.fixture(params=["memory", "sqlite", "redis", "storm"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    """Every kind of queue the dispatcher reads from (storm control in front of memory)."""
    made: Queue
    if request.param == "memory":
        made = MemoryQueue()
    elif request.param == "sqlite":
        made = SqliteQueue(tmp_path / "queue.db", policy=FAST)
    elif request.param == "redis":
        made = RedisQueue(await clean_redis(request), partitions=4, visibility_timeout=1.0, policy=FAST)
        await made.start()
    else:
        inner = MemoryQueue()
        made = StormQueue(inner, lambda: SqliteStormStore(tmp_path / "storm.sqlite"), {"dev": StormSettings(0.01)})
    yield made
    await made.close()


async def started(queue: Queue, *instances: DriverInstance) -> Dispatcher:
    dispatcher = Dispatcher(queue, instances, log_deliveries=False)
    await dispatcher.start()
    return dispatcher


async def test_different_users_are_delivered_at_once_up_to_the_limit(queue: Queue) -> None:
    inst = endpoint(parallel=6)
    end = plugin(inst)
    end.answer.clear()
    end.wanted_open = 6
    dispatcher = await started(queue, inst)
    for number in range(10):
        await queue.put(mail(f"user{number}", number + 1))
    await asyncio.wait_for(end.all_open.wait(), 10)  # six requests held open at the same time
    end.answer.set()
    await wait_for(lambda: sum(map(len, end.uids.values())) == 10)
    await dispatcher.stop()
    assert end.most_open == 6


async def fed(queue: Queue, *, parallel: int, transactions: int, users: int) -> tuple[Dispatcher, Endpoint]:
    """A started dispatcher whose endpoint answers out of order, fed ``transactions`` mails
    spread over ``users`` users."""
    inst = endpoint(parallel=parallel)
    plugin(inst).shuffle = True
    dispatcher = await started(queue, inst)
    for uid in range(1, transactions + 1):
        await queue.put(mail(f"user{uid % users}", uid))
    return dispatcher, plugin(inst)


async def test_one_users_transactions_arrive_in_order_and_never_two_at_once(queue: Queue) -> None:
    dispatcher, end = await fed(queue, parallel=8, transactions=300, users=13)
    await wait_for(lambda: sum(map(len, end.uids.values())) == 300)
    await dispatcher.stop()
    assert not end.one_user_twice
    assert end.most_open > 1
    for user, uids in end.uids.items():
        assert uids == sorted(uids), user


async def test_a_retry_holds_back_that_users_later_transactions_only(tmp_path: Path, redis_url: str) -> None:
    for queue in (
        SqliteQueue(tmp_path / "queue.db", policy=FAST),
        RedisQueue(redis_url, partitions=4, visibility_timeout=1.0, policy=FAST),
    ):
        await queue.start()
        inst = endpoint(parallel=4)
        end = plugin(inst)
        first = mail("alice", 1)
        end.fail_once.add(first.id)
        dispatcher = await started(queue, inst)
        await queue.put(first)
        await queue.put(mail("alice", 2))
        await queue.put(mail("bob", 3))
        uids = end.uids
        await wait_for(lambda: len(uids.get("alice", ())) == 2 and "bob" in uids)  # noqa: B023 - awaited here
        await dispatcher.stop()
        await queue.close()
        assert end.uids["alice"] == [1, 2], type(queue).__name__
        assert end.attempts[first.id] == 2


async def test_a_hanging_delivery_times_out_while_other_users_go_on(caplog: pytest.LogCaptureFixture) -> None:
    queue = MemoryQueue()
    inst = endpoint(parallel=4, timeout=0.3)
    end = plugin(inst)
    end.hang_user = "stuck"
    dispatcher = await started(queue, inst)
    await queue.put(mail("stuck", 1))
    for uid in range(2, 12):
        await queue.put(mail(f"user{uid}", uid))
    await wait_for(lambda: len(end.uids) == 10)  # everyone else, while "stuck" hangs
    end.hang_user = None
    await queue.put(mail("stuck", 12))
    await wait_for(lambda: "stuck" in end.uids)
    await dispatcher.stop()
    assert end.uids["stuck"] == [12]
    assert "failed: timed out after 0.3s" in caplog.text


async def test_a_reload_hands_deliveries_in_flight_to_the_successor(queue: Queue) -> None:
    old = endpoint(parallel=5)
    plugin(old).answer.clear()
    plugin(old).wanted_open = 5
    dispatcher = await started(queue, old)
    for number in range(8):
        await queue.put(mail(f"user{number}", number + 1))
    await asyncio.wait_for(plugin(old).all_open.wait(), 10)
    new = endpoint(parallel=5)
    await dispatcher.replace(["dev"], [new])
    await wait_for(lambda: sum(map(len, plugin(new).uids.values())) == 8)
    await dispatcher.stop()
    assert sorted(uid for uids in plugin(new).uids.values() for uid in uids) == list(range(1, 9))


async def test_drain_waits_for_every_parallel_delivery() -> None:
    dispatcher, end = await fed(MemoryQueue(), parallel=4, transactions=40, users=9)
    assert await dispatcher.drain(10)
    assert sum(map(len, end.uids.values())) == 40
    await dispatcher.stop()


class Blocking:
    blocking = True

    def __init__(self, ctx: DriverContext) -> None:
        ctx.settings.check_unknown()

    @hookimpl
    def end_txn(self) -> None:
        pass


class Waking:
    max_parallel_deliveries = 16

    def __init__(self, ctx: DriverContext) -> None:
        ctx.settings.check_unknown()

    @hookimpl
    async def end_txn(self) -> None:
        pass


def build(factory: type, settings: dict[str, str]) -> DriverInstance:
    ctx = DriverContext(instance="x", driver="x", settings=Settings.from_dict("x", settings))
    return create_instance(ctx, factory)


def test_the_setting_overrides_the_drivers_default_and_is_never_the_drivers() -> None:
    assert build(Waking, {}).max_parallel == 16
    assert build(Waking, {"max_parallel_deliveries": "3"}).max_parallel == 3
    assert build(Blocking, {}).max_parallel == 1


def test_a_blocking_driver_refuses_parallel_deliveries_in_one_line() -> None:
    with pytest.raises(ConfigError, match="'max_parallel_deliveries': this driver blocks"):
        build(Blocking, {"max_parallel_deliveries": "4"})
    with pytest.raises(ConfigError, match="'max_parallel_deliveries': must be at least 1"):
        build(Waking, {"max_parallel_deliveries": "0"})


async def test_a_blocking_driver_still_delivers_in_its_thread(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    queue = MemoryQueue()
    dispatcher = Dispatcher(queue, [build(Blocking, {})])
    await dispatcher.start()
    for uid in range(1, 6):
        await queue.put(mail(f"user{uid}", uid))
    assert await dispatcher.drain(10)
    await dispatcher.stop()
    assert caplog.text.count("delivered transaction") == 5
