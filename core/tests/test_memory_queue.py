"""Memory mode: fast, nothing kept across restarts, but a reload keeps a restarted instance's queue."""

from __future__ import annotations

import pytest
from push_notification.queue import MemoryQueue, QueueFull
from push_notification.testing import make_event, make_transaction


async def test_an_instance_restarted_by_a_reload_keeps_its_queue() -> None:
    queue = MemoryQueue()
    queue.attach(["a", "b"])
    await queue.put(make_transaction(make_event("MessageNew")))
    queue.attach(["b"])  # reload: a stops ...
    queue.attach(["a", "b"])  # ... and starts again with its new settings
    assert queue.depth("a") == 1


async def test_a_reload_hands_a_restarted_instance_what_it_had_taken_but_not_finished() -> None:
    queue = MemoryQueue()
    queue.attach(["a"])
    first, second = (make_transaction(make_event("MessageNew", uid=uid)) for uid in (1, 2))
    await queue.put(first)
    await queue.put(second)
    assert await queue.get("a", 10) == [first, second]  # the worker took both ...
    await queue.done("a", first, None)  # ... finished the first, then the reload stopped it
    queue.attach([])
    queue.attach(["a"])
    assert await queue.get("a", 10) == [second]


async def test_a_removed_instance_loses_its_queue() -> None:
    queue = MemoryQueue()
    queue.attach(["a", "b"])
    await queue.put(make_transaction(make_event("MessageNew")))
    queue.attach(["b"])
    queue.attach(["b", "c"])
    assert queue.depth("a") == 0 and queue.depth("b") == 1 and queue.depth("c") == 0


async def test_past_max_pending_put_is_refused() -> None:
    queue = MemoryQueue(max_pending=2)
    queue.attach(["a"])
    for uid in (1, 2):
        await queue.put(make_transaction(make_event("MessageNew", uid=uid)))
    with pytest.raises(QueueFull, match="push_notification a holds 2 transactions"):
        await queue.put(make_transaction(make_event("MessageNew", uid=3)))
