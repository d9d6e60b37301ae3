"""The durable queue, driven by the real dispatcher: what it promises to keep and deliver."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from push_notification.errors import PermanentError, RetryableError
from push_notification.queue import QueueFull
from push_notification.queue.retry import RetryPolicy
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import Filter, count_deliveries, dead_letters, open_store, requeue
from push_notification.testing import make_event, make_transaction

from .queue_helpers import Running, recorder, wait_for

FAST = RetryPolicy(min_delay=0.02, max_delay=0.05, deadline=5.0)


def txn(user: str = "alice", uid: int = 1):
    return make_transaction(make_event("MessageNew", uid=uid), user=user)


async def test_delivers_every_transaction_and_forgets_it_afterwards(tmp_path):
    path = tmp_path / "queue.db"
    ox = recorder("ox")
    sent = [txn(uid=i) for i in range(50)]
    async with Running(SqliteQueue(path), ox) as dispatcher:
        for t in sent:
            await dispatcher.queue.put(t)
        assert await dispatcher.drain(5)
    assert ox.plugin.delivered_ids == [t.id for t in sent]
    assert count_deliveries(path) == 0


async def test_an_accepted_transaction_is_on_disk_before_put_returns(tmp_path):
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    queue.attach(["ox", "web"])
    t = txn()
    await queue.put(t)
    assert count_deliveries(path) == 2  # one delivery row per instance
    await queue.close()


@pytest.mark.parametrize("fsync", [False, True], ids=["commit", "fsync"])
async def test_transactions_accepted_before_a_restart_are_delivered_after_it(tmp_path, fsync):
    path = tmp_path / "queue.db"
    first = SqliteQueue(path, fsync=fsync)
    first.attach(["ox"])
    sent = [txn(user=f"u{i % 3}", uid=i) for i in range(20)]
    for t in sent:
        await first.put(t)
    await first.close()  # nothing was delivered: no dispatcher ran

    ox = recorder("ox")
    async with Running(SqliteQueue(path), ox) as dispatcher:
        assert await dispatcher.drain(5)
    assert sorted(ox.plugin.delivered_ids) == sorted(t.id for t in sent)
    assert {t.id: t for t in ox.plugin.delivered}[sent[4].id].events == sent[4].events


@pytest.mark.parametrize("fsync", [False, True], ids=["commit", "fsync"])
async def test_concurrent_puts_share_commits(tmp_path, fsync):
    queue = SqliteQueue(tmp_path / "queue.db", fsync=fsync)
    queue.attach(["ox"])
    await asyncio.gather(*(queue.put(txn(uid=i)) for i in range(500)))
    assert queue.depth("ox") == 500
    assert queue.commits < 100
    await queue.close()


@pytest.mark.parametrize("fsync", [False, True], ids=["commit", "fsync"])
async def test_put_then_tells_from_the_commit_once_the_rows_are_on_disk(tmp_path, fsync):
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path, fsync=fsync)
    queue.attach(["ox"])
    told: list[tuple[int, BaseException | None, int]] = []
    for i in range(3):  # as three requests read in one turn of the loop
        queue.put_then(txn(uid=i), lambda error, i=i: told.append((i, error, count_deliveries(path))))
    assert told == []  # not before the commit
    await wait_for(lambda: len(told) == 3)
    assert [(i, error) for i, error, _ in told] == [(0, None), (1, None), (2, None)]  # in order
    assert all(on_disk > i for i, _, on_disk in told)  # each row is on disk when its sender is told
    if not fsync:
        assert queue.commits == 1  # one commit for the three
    assert queue.depth("ox") == 3
    await queue.close()


async def test_put_then_past_the_high_water_mark_tells_queue_full_at_once(tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db", high_water=1)
    queue.attach(["ox"])
    await queue.put(txn())
    told: list[BaseException | None] = []
    queue.put_then(txn(uid=2), told.append)
    assert len(told) == 1 and isinstance(told[0], QueueFull)
    await queue.close()


async def test_retryable_failures_are_retried_until_delivered(tmp_path):
    def fail_twice(t, attempt):
        return RetryableError("503 Service Unavailable") if attempt <= 2 else None

    ox = recorder("ox", fail_twice)
    t = txn()
    async with Running(SqliteQueue(tmp_path / "queue.db", policy=FAST), ox) as dispatcher:
        await dispatcher.queue.put(t)
        await wait_for(lambda: ox.plugin.delivered)
    assert ox.plugin.attempts[t.id] == 3
    assert ox.plugin.delivered_ids == [t.id]


async def test_retry_after_is_honoured(tmp_path):
    loop = asyncio.get_running_loop()
    times: list[float] = []

    def busy_once(t, attempt):
        times.append(loop.time())
        return RetryableError("503", retry_after=0.3) if attempt == 1 else None

    ox = recorder("ox", busy_once)
    async with Running(SqliteQueue(tmp_path / "queue.db", policy=FAST), ox) as dispatcher:
        await dispatcher.queue.put(txn())
        await wait_for(lambda: ox.plugin.delivered)
    assert times[1] - times[0] >= 0.29


async def test_a_retrying_transaction_holds_back_only_its_own_user(tmp_path):
    first_of_alice = txn("alice", 1)

    def alice_first_fails(t, attempt):
        return RetryableError("busy") if t.id == first_of_alice.id and attempt <= 3 else None

    ox = recorder("ox", alice_first_fails)
    later_of_alice = txn("alice", 2)
    bob = [txn("bob", i) for i in range(5)]
    async with Running(SqliteQueue(tmp_path / "queue.db", policy=FAST), ox) as dispatcher:
        await dispatcher.queue.put(first_of_alice)
        await dispatcher.queue.put(later_of_alice)
        for t in bob:
            await dispatcher.queue.put(t)
        await wait_for(lambda: len(ox.plugin.delivered) == 7)
    order = ox.plugin.delivered_ids
    assert order.index(first_of_alice.id) < order.index(later_of_alice.id)
    assert order.index(bob[-1].id) < order.index(first_of_alice.id)  # bob was not held back


async def test_a_failing_instance_never_holds_back_another(tmp_path):
    down = recorder("down", lambda t, a: RetryableError("connection refused"))
    up = recorder("up")
    sent = [txn(uid=i) for i in range(10)]
    async with Running(SqliteQueue(tmp_path / "queue.db", policy=FAST), down, up) as dispatcher:
        for t in sent:
            await dispatcher.queue.put(t)
        await wait_for(lambda: len(up.plugin.delivered) == 10)
        assert dispatcher.queue.depth("down") == 10
        assert dispatcher.queue.depth("up") == 0


@pytest.mark.parametrize("fsync", [False, True], ids=["commit", "fsync"])
async def test_permanent_failures_become_dead_letters_and_retry_delivers_them(tmp_path, fsync):
    path = tmp_path / "queue.db"
    broken = {"yes": True}

    def rejects_while_broken(t, attempt):
        return PermanentError("400 Bad Request") if broken["yes"] else None

    ox = recorder("ox", rejects_while_broken)
    t = txn()
    async with Running(SqliteQueue(path, policy=FAST, fsync=fsync), ox) as dispatcher:
        await dispatcher.queue.put(t)
        await wait_for(lambda: dispatcher.queue.dead_letters("ox") == 1)
        assert ox.plugin.attempts[t.id] == 1  # permanent: no retry
        assert count_deliveries(path, state="dead") == 1
        broken["yes"] = False
        admin = open_store(path, create=False)
        assert requeue(admin, Filter(instance="ox")) == 1
        admin.close()
        await wait_for(lambda: ox.plugin.delivered)
        await wait_for(lambda: dispatcher.queue.dead_letters("ox") == 0)
    assert ox.plugin.delivered_ids == [t.id]
    assert count_deliveries(path) == 0


async def test_retries_stop_at_the_deadline(tmp_path):
    path = tmp_path / "queue.db"
    ox = recorder("ox", lambda t, a: RetryableError("503"))
    policy = RetryPolicy(min_delay=0.05, max_delay=0.1, deadline=0.4)
    async with Running(SqliteQueue(path, policy=policy), ox) as dispatcher:
        t = txn()
        await dispatcher.queue.put(t)
        await wait_for(lambda: dispatcher.queue.dead_letters("ox") == 1)
        assert ox.plugin.attempts[t.id] >= 3
    with contextlib.closing(open_store(path, create=False)) as conn:
        [letter] = dead_letters(conn, Filter())
    assert (letter.state, letter.last_error) == ("dead", "RetryableError: 503")


async def test_unclassified_exceptions_are_retried(tmp_path):
    ox = recorder("ox", lambda t, a: RuntimeError("flaky") if a == 1 else None)
    async with Running(SqliteQueue(tmp_path / "queue.db", policy=FAST), ox) as dispatcher:
        await dispatcher.queue.put(txn())
        await wait_for(lambda: ox.plugin.delivered)


async def test_past_the_high_water_mark_put_is_refused(tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db", high_water=5)
    queue.attach(["ox"])
    for i in range(5):
        await queue.put(txn(uid=i))
    with pytest.raises(QueueFull) as refused:
        await queue.put(txn(uid=6))
    assert "push_notification ox holds 5 transactions" in str(refused.value)
    assert refused.value.retry_after > 0
    await queue.close()


async def test_memory_holds_a_window_and_the_rest_is_read_back_in_order(tmp_path):
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path, window=8)
    queue.attach(["ox"])
    sent = [txn(uid=i) for i in range(100)]
    for t in sent:
        await queue.put(t)
    ox = recorder("ox")
    async with Running(queue, ox) as dispatcher:
        assert await dispatcher.drain(10)
    assert ox.plugin.delivered_ids == [t.id for t in sent]


async def test_a_removed_instance_keeps_its_queue_until_it_comes_back(tmp_path):
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    down = recorder("ox", lambda t, a: RetryableError("down"))
    t = txn()
    async with Running(queue, down) as dispatcher:
        await dispatcher.queue.put(t)
        await wait_for(lambda: down.plugin.attempts)
        await dispatcher.remove(["ox"])
        assert count_deliveries(path) == 1
        back = recorder("ox")
        await dispatcher.add([back])
        await wait_for(lambda: back.plugin.delivered)
    assert back.plugin.delivered_ids == [t.id]
