"""The Redis queue (``queue = redis``) against a real redis-server: the queue contract, per-user
order across retries, dead letters, several daemons sharing the work, takeover after a crash,
and a Redis outage."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from push_notification.drivers import DriverInstance
from push_notification.errors import PermanentError, PushNotificationError, RetryableError
from push_notification.hookspecs import hookimpl
from push_notification.queue import QueueFull
from push_notification.queue.redis import RedisQueue, _letter
from push_notification.queue.redis_dead_letters import RedisDeadLetters
from push_notification.queue.retry import RetryPolicy
from push_notification.queue.sqlite_store import Filter
from push_notification.testing import make_event, make_transaction
from push_notification.testing.redis import RedisServer

from .queue_helpers import Running, recorder, wait_for

FAST = RetryPolicy(min_delay=0.05, max_delay=0.1, deadline=30.0)


def txn(user: str = "alice", uid: int = 1):
    return make_transaction(make_event("MessageNew", uid=uid), user=user)


async def started(url: str, **options) -> RedisQueue:
    options.setdefault("partitions", 4)
    options.setdefault("visibility_timeout", 1.0)
    queue = RedisQueue(url, **options)
    await queue.start()
    return queue


async def test_every_transaction_put_is_delivered_and_acknowledged(redis_url: str) -> None:
    queue = await started(redis_url)
    inst = recorder("a")
    async with Running(queue, inst):
        sent = [txn(user=f"u{i % 7}", uid=i) for i in range(50)]
        for t in sent:
            await queue.put(t)
        await wait_for(lambda: len(inst.plugin.delivered) == 50)
        await wait_for(lambda: queue.depth("a") == 0)
    assert sorted(inst.plugin.delivered_ids) == sorted(t.id for t in sent)


async def test_a_retry_holds_back_only_that_users_later_transactions(redis_url: str) -> None:
    first = txn("alice", 1)

    def script(t, attempt):
        return RetryableError("endpoint busy") if t.id == first.id and attempt == 1 else None

    # A retry later than a paced read's wait (READ_PACE): bob's read comes before it for sure.
    queue = await started(redis_url, policy=RetryPolicy(min_delay=0.5, max_delay=0.6, deadline=30.0))
    inst = recorder("a", script)
    async with Running(queue, inst):
        later, other = txn("alice", 2), txn("bob", 3)
        for t in (first, later, other):
            await queue.put(t)
        await wait_for(lambda: len(inst.plugin.delivered) == 3)
    order = inst.plugin.delivered_ids
    assert order.index(first.id) < order.index(later.id)
    assert order[0] == other.id


async def test_a_permanent_failure_becomes_a_dead_letter_counted_by_every_daemon(redis_url: str) -> None:
    queue = await started(redis_url)
    inst = recorder("a", lambda t, n: PermanentError("410 gone"))
    async with Running(queue, inst):
        await queue.put(txn())
        await wait_for(lambda: inst.plugin.attempts)
        other = await started(redis_url)
        other.attach(["a"])
        await wait_for(lambda: other.dead_letters("a") == 1)
        await other.close()
        await wait_for(lambda: queue.depth("a") == 0)


async def test_every_outcome_is_acknowledged_in_redis_whichever_batch_it_shares(redis_url: str) -> None:
    """Acks share one command with each other and with dead letters and retries; none is lost."""
    import redis.asyncio as aioredis

    doomed = {f"u{i}" for i in range(0, 40, 7)}
    # A visibility timeout longer than the test: a lost ack is not hidden by a takeover sweep.
    queue = await started(redis_url, policy=FAST, visibility_timeout=30.0)
    inst = recorder("a", lambda t, n: PermanentError("gone") if t.user.username in doomed else None)
    admin = aioredis.from_url(redis_url, decode_responses=True)

    async def pending() -> int:
        return sum([int((await admin.xpending(f"pn:s:{p}", "a"))["pending"]) for p in range(4)])

    async with Running(queue, inst):
        for i in range(40):
            await queue.put(txn(f"u{i}", i))
        await wait_for(lambda: len(inst.plugin.attempts) >= 40)
        deadline = asyncio.get_running_loop().time() + 5
        while await pending() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert await pending() == 0
        assert await admin.hlen("pn:d:a") == len(doomed)
        assert set(inst.plugin.attempts.values()) == {1}
    await admin.aclose()


async def test_two_daemons_share_the_partitions_and_deliver_each_transaction_once_in_user_order(
    redis_url: str,
) -> None:
    one, two = await started(redis_url, partitions=16), await started(redis_url, partitions=16)
    a1, a2 = recorder("a"), recorder("a")
    async with Running(one, a1), Running(two, a2):
        # Rendezvous hashing splits the 16 partitions; the first daemon hands the second its share.
        await wait_for(lambda: one.owned and two.owned and len(one.owned | two.owned) == 16)
        sent = [txn(user=f"user{i % 13}", uid=i) for i in range(300)]
        for i, t in enumerate(sent):
            await (one if i % 2 else two).put(t)
        await wait_for(lambda: len(a1.plugin.delivered) + len(a2.plugin.delivered) == 300)
    delivered = a1.plugin.delivered + a2.plugin.delivered
    assert sorted(t.id for t in delivered) == sorted(t.id for t in sent)
    assert a1.plugin.delivered and a2.plugin.delivered, "both daemons deliver"
    for plugin in (a1.plugin, a2.plugin):
        uids: dict[str, list[int]] = {}
        for t in plugin.delivered:
            uids.setdefault(t.user.username, []).append(t.events[0].uid)
        assert all(u == sorted(u) for u in uids.values())


async def test_a_crashed_daemons_unacknowledged_deliveries_are_taken_over(redis_url: str) -> None:
    gate = asyncio.Event()

    class Stuck:
        @hookimpl
        async def end_txn(self, txn) -> None:
            await gate.wait()

    crashed = await started(redis_url, visibility_timeout=0.6)
    dispatcher_task = Running(crashed, DriverInstance("a", "stuck", Stuck(), timeout=60.0))
    await dispatcher_task.dispatcher.start()
    sent = [txn(user=f"u{i}", uid=i) for i in range(10)]
    for t in sent:
        await crashed.put(t)
    # Read from Redis (pending under its name), one of them in flight.
    await wait_for(lambda: sum(lane.in_memory for lane in crashed._lanes.values()) == 10)
    # A SIGKILL: the daemon stops beating and never acknowledges; its leases lapse.
    for task in [*crashed._tasks, *crashed._readers.values()]:
        task.cancel()
    survivor = await started(redis_url, visibility_timeout=0.6)
    inst = recorder("a")
    async with Running(survivor, inst):
        await wait_for(lambda: len(inst.plugin.delivered) == 10, timeout=20)
    assert sorted(inst.plugin.delivered_ids) == sorted(t.id for t in sent)
    gate.set()
    with contextlib.suppress(Exception):
        await dispatcher_task.dispatcher.stop(timeout=0)
        await crashed.client.aclose()


async def test_while_redis_is_away_puts_are_refused_with_503_and_delivery_resumes(
    redis_server: RedisServer, redis_url: str
) -> None:
    queue = await started(redis_url)
    inst = recorder("a")
    async with Running(queue, inst):
        await queue.put(txn("alice", 1))
        await wait_for(lambda: len(inst.plugin.delivered) == 1)
        redis_server.stop()
        try:
            with pytest.raises(QueueFull) as refused:
                await queue.put(txn("alice", 2))
            assert "unreachable" in str(refused.value)
        finally:
            redis_server.start()

        async def accepted() -> None:
            while True:
                try:
                    await queue.put(txn("alice", 3))
                    return
                except QueueFull:
                    await asyncio.sleep(0.1)

        await asyncio.wait_for(accepted(), 15)
        await wait_for(lambda: len(inst.plugin.delivered) == 2, timeout=15)


async def test_an_unreachable_redis_at_start_up_is_one_clear_line() -> None:
    from push_notification.testing.net import free_port

    queue = RedisQueue(f"redis://:secret@127.0.0.1:{free_port()}/0")
    with pytest.raises(PushNotificationError) as error:
        await queue.start()
    message = str(error.value)
    assert "cannot use Redis" in message and "\n" not in message
    assert "secret" not in message


async def test_daemons_must_agree_on_the_partition_count(redis_url: str) -> None:
    queue = await started(redis_url)
    other = RedisQueue(redis_url, partitions=8)
    with pytest.raises(PushNotificationError, match=r"queue_partitions = 8.*set queue_partitions = 4"):
        await other.start()
    await queue.close()


async def test_dead_letters_made_by_one_daemon_are_listed_and_retried_from_any_host(redis_url: str) -> None:
    fixed = asyncio.Event()
    queue = await started(redis_url, visibility_timeout=30.0)
    inst = recorder("a", lambda t, n: None if fixed.is_set() else PermanentError("401 bad token"))
    async with Running(queue, inst):
        letter = txn("alice", 7)
        await queue.put(letter)
        await wait_for(lambda: inst.plugin.attempts)
        book = RedisDeadLetters(redis_url)
        await wait_for(lambda: [d.txn_id for d in book.dead_letters(Filter())] == [letter.id])
        (row,) = book.dead_letters(Filter(instance="a", user="alice"))
        assert (row.attempts, row.last_error) == (1, "PermanentError: 401 bad token")
        shown = book.dead_letter_body("a", letter.id)
        assert shown is not None and json.loads(shown[1])["id"] == letter.id
        fixed.set()
        assert book.requeue(Filter(instance="a")) == 1
        await wait_for(lambda: inst.plugin.delivered_ids == [letter.id])
        assert list(book.dead_letters(Filter())) == []
        book.close()


async def test_purge_deletes_only_matching_dead_letters(redis_url: str) -> None:
    # A visibility timeout longer than any stall of a loaded machine: a delivery taken over and
    # refused again would write its dead letter again after the purge (at-least-once, not a bug).
    queue = await started(redis_url, visibility_timeout=30.0)
    inst = recorder("a", lambda t, n: PermanentError("gone"))
    async with Running(queue, inst):
        for user in ("alice", "bob"):
            await queue.put(txn(user))
        book = RedisDeadLetters(redis_url)
        await wait_for(lambda: len(list(book.dead_letters(Filter()))) == 2)
        assert book.purge(Filter(user="bob")) == 1
        assert [d.username for d in book.dead_letters(Filter())] == ["alice"]
        book.close()


async def test_entries_of_two_partitions_with_one_id_keep_their_own_retry_state_and_dead_letter(
    redis_url: str,
) -> None:
    # Every stream numbers its entries by the clock: puts of one millisecond to two partitions
    # get the same entry id. Keyed by id alone, one user's dead letter overwrote the other's.
    queue = await started(redis_url)
    async with Running(queue, recorder("a")):
        store = queue.store
        first, second = store.stream(0), store.stream(1)
        await store.record([("retry", (first, "a", "7-0", '{"attempts": 1}')), ("retry", (second, "a", "7-0", '{"attempts": 2}'))], queue.leases)  # fmt: skip
        assert await store.retry_states("a", first, ["7-0"]) == {"7-0": {"attempts": 1}}
        assert await store.retry_states("a", second, ["7-0"]) == {"7-0": {"attempts": 2}}
        letters = [_letter(txn(user), 0.0, 1, "gone", 1.0) for user in ("alice", "bob")]
        await store.record([("dead", (first, "a", "7-0", letters[0])), ("dead", (second, "a", "7-0", letters[1]))], queue.leases)  # fmt: skip
        book = RedisDeadLetters(redis_url)
        assert sorted(d.username for d in book.dead_letters(Filter())) == ["alice", "bob"]
        book.close()
        # Each dead letter took its own entry's retry state along, not the other's.
        assert await store.retry_states("a", first, ["7-0"]) == {}
        assert await store.retry_states("a", second, ["7-0"]) == {}


async def test_a_redis_that_evicts_keys_is_refused_at_start_up(redis_url: str) -> None:
    import redis.asyncio as aioredis

    admin = aioredis.from_url(redis_url)
    await admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        queue = RedisQueue(redis_url, partitions=4)
        with pytest.raises(PushNotificationError, match="maxmemory-policy noeviction"):
            await queue.start()
    finally:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.aclose()


async def test_puts_made_while_one_command_is_in_flight_share_the_next(redis_url: str) -> None:
    queue = await started(redis_url)
    batches: list[int] = []
    in_flight, answered = asyncio.Event(), asyncio.Event()
    add = queue.store.add

    async def slow_first(batch):  # the real command, the first one answered only when we say
        batches.append(len(batch))
        if len(batches) == 1:
            in_flight.set()
            await answered.wait()
        return await add(batch)

    queue.store.add = slow_first  # type: ignore[method-assign]
    inst = recorder("a")
    async with Running(queue, inst):
        first = asyncio.ensure_future(queue.put(txn("alice", 1)))
        await in_flight.wait()
        later = []
        for i in range(2, 12):  # one put per loop turn
            later.append(asyncio.ensure_future(queue.put(txn(f"u{i}", i))))
            await asyncio.sleep(0)
        answered.set()
        await asyncio.gather(first, *later)
        await wait_for(lambda: len(inst.plugin.delivered) == 11)
    assert batches == [1, 10]


def test_a_thin_read_waits_until_a_full_one_is_likely_and_never_longer_than_the_pace() -> None:
    from push_notification.queue.redis import READ_FULL, READ_PACE, _pace

    assert _pace(READ_FULL, 0.001) == 0.0
    assert _pace(READ_FULL // 2, 0.01) == pytest.approx(0.01)  # as long again as half a read took
    assert _pace(1, 5.0) == READ_PACE  # a trickle: bounded
    assert 0.0 < _pace(READ_FULL - 1, 0.001) < 0.001
