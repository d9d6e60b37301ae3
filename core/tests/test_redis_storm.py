"""Storm-control windows with ``queue = redis``: what a window holds is in Redis, and a dead
daemon's windows go back into the queue, where the partition's next owner holds them again."""

from __future__ import annotations

import asyncio

from push_notification.queue.redis import RedisQueue
from push_notification.storm.redis_store import RedisStormStore
from push_notification.testing import make_event, make_transaction


async def started(url: str) -> RedisQueue:
    queue = RedisQueue(url, partitions=4, visibility_timeout=0.6)
    await queue.start()
    queue.attach(["dev"])
    return queue


async def crash(queue: RedisQueue) -> None:
    """A SIGKILL: no more heartbeats, no acknowledgements, no lease handed back."""
    queue._closing = True
    tasks = [*queue._tasks, *queue._readers.values()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await queue.client.zrem("pn:daemons", queue.me)


async def test_a_window_held_by_a_daemon_that_died_is_delivered_by_another(redis_url: str) -> None:
    first = await started(redis_url)
    held = RedisStormStore(first.client, "pn", first.me, first.partition)
    txn = make_transaction(make_event("FlagsSet", flags=["\\Seen"]), user="alice")
    key = await held.add("dev", txn, 1.0)
    assert [k for k, _, _ in await held.load("dev")] == [key]
    # A SIGKILL: no more heartbeats; the window's row stays in Redis.
    held.close()
    await crash(first)

    second = await started(redis_url)
    adopter = RedisStormStore(second.client, "pn", second.me, second.partition)
    assert await adopter.load("dev") == []  # not its own: it comes back through the queue
    (delivered,) = await asyncio.wait_for(second.get("dev", 10), 15)
    assert delivered.id == txn.id and delivered.events == txn.events
    await second.done("dev", delivered, None)
    assert await second.client.hlen("pn:storm:dev") == 0
    adopter.close()
    await second.close()
    await first.client.aclose()


async def test_a_window_removed_after_its_delivery_leaves_nothing_behind(redis_url: str) -> None:
    queue = await started(redis_url)
    store = RedisStormStore(queue.client, "pn", queue.me, queue.partition)
    keys = [await store.add("dev", make_transaction(make_event("MessageNew"), user=u), 1.0) for u in ("a", "b")]
    await store.load("dev")
    await store.remove(keys)
    assert await store.load("dev") == []
    store.close()
    await queue.close()
