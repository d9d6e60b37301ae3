"""Transactions whose sender keeps a durable copy (the bridge's spool files): the durable
queue delivers them from memory and writes a row only for an instance that cannot deliver
at once, or is still owed one when the queue closes."""

from __future__ import annotations

import asyncio

from push_notification.drivers import DriverInstance
from push_notification.errors import PermanentError, RetryableError
from push_notification.hookspecs import hookimpl
from push_notification.queue.retry import RetryPolicy
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import count_deliveries
from push_notification.testing import make_event, make_transaction

from .queue_helpers import Running, recorder, wait_for

FAST = RetryPolicy(min_delay=0.02, max_delay=0.05, deadline=5.0)


def txn(user: str = "alice", uid: int = 1):
    return make_transaction(make_event("MessageNew", uid=uid), user=user)


class Releases:
    """Release callbacks that count how often each transaction's copy was released."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def of(self, t):
        return lambda: self.count.__setitem__(t.id, self.count.get(t.id, 0) + 1)


class Gated:
    """A driver that delivers only once its gate is open."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.delivered: list[str] = []

    @hookimpl
    async def end_txn(self, txn) -> None:
        await self.gate.wait()
        self.delivered.append(txn.id)


def gated(name: str) -> tuple[DriverInstance, Gated]:
    plugin = Gated()
    return DriverInstance(name, "gated", plugin, timeout=30.0), plugin


async def started(queue: SqliteQueue, *instances):
    running = Running(queue, *instances)
    dispatcher = await running.__aenter__()
    # A lane starts out reading its backlog from disk; held transactions go to memory after.
    await wait_for(lambda: all(not lane.spilled for lane in queue._lanes.values()))
    return running, dispatcher


async def test_delivered_by_every_instance_it_is_released_once_and_never_written(tmp_path):
    path = tmp_path / "queue.db"
    ox, web = recorder("ox"), recorder("web")
    releases = Releases()
    sent = [txn(uid=i) for i in range(20)]
    running, dispatcher = await started(SqliteQueue(path), ox, web)
    commits = dispatcher.queue.commits
    for t in sent:
        await dispatcher.queue.put_held(t, releases.of(t))
    await wait_for(lambda: len(releases.count) == 20)
    assert ox.plugin.delivered_ids == web.plugin.delivered_ids == [t.id for t in sent]
    assert set(releases.count.values()) == {1}
    assert dispatcher.queue.commits == commits  # no row written, none deleted
    await running.__aexit__()
    assert count_deliveries(path) == 0


async def test_the_copy_is_kept_until_the_slowest_instance_delivered(tmp_path):
    slow, gate = gated("slow")
    fast = recorder("fast")
    releases = Releases()
    t = txn()
    running, dispatcher = await started(SqliteQueue(tmp_path / "queue.db"), fast, slow)
    await dispatcher.queue.put_held(t, releases.of(t))
    await wait_for(lambda: fast.plugin.delivered)
    await asyncio.sleep(0.05)
    assert releases.count == {}
    gate.gate.set()
    await wait_for(lambda: releases.count == {t.id: 1})
    await running.__aexit__()


async def test_an_instance_that_must_retry_gets_its_row_before_the_release(tmp_path):
    path = tmp_path / "queue.db"
    down = {"yes": True}
    flaky = recorder("flaky", lambda t, a: RetryableError("503 Service Unavailable") if down["yes"] else None)
    ok = recorder("ok")
    releases = Releases()
    t = txn()
    running, dispatcher = await started(SqliteQueue(path, policy=FAST), ok, flaky)
    await dispatcher.queue.put_held(t, releases.of(t))
    await wait_for(lambda: releases.count == {t.id: 1})
    assert count_deliveries(path, state="pending", instance="flaky") == 1  # the queue now keeps it for the retries
    assert count_deliveries(path, instance="ok") == 0
    down["yes"] = False
    await wait_for(lambda: flaky.plugin.delivered)
    await running.__aexit__()
    assert count_deliveries(path) == 0


async def test_a_dead_letter_gets_its_row_before_the_release(tmp_path):
    path = tmp_path / "queue.db"
    ox = recorder("ox", lambda t, a: PermanentError("400 Bad Request"))
    releases = Releases()
    t = txn()
    running, dispatcher = await started(SqliteQueue(path, policy=FAST), ox)
    await dispatcher.queue.put_held(t, releases.of(t))
    await wait_for(lambda: releases.count == {t.id: 1})
    assert count_deliveries(path, state="dead", instance="ox") == 1
    assert dispatcher.queue.dead_letters("ox") == 1
    await running.__aexit__()


async def test_what_is_still_owed_at_close_becomes_rows_delivered_after_a_restart(tmp_path):
    path = tmp_path / "queue.db"
    stuck, _ = gated("ox")
    releases = Releases()
    sent = [txn(user=f"u{i}", uid=i) for i in range(5)]
    running, dispatcher = await started(SqliteQueue(path), stuck)
    for t in sent:
        await dispatcher.queue.put_held(t, releases.of(t))
    await running.__aexit__()  # stops the instance mid-delivery, closes the queue
    assert releases.count == {t.id: 1 for t in sent}
    assert count_deliveries(path, state="pending", instance="ox") == 5

    again = recorder("ox")
    async with Running(SqliteQueue(path), again):
        await wait_for(lambda: len(again.plugin.delivered) == 5)
    assert sorted(again.plugin.delivered_ids) == sorted(t.id for t in sent)
    assert count_deliveries(path) == 0


async def test_behind_a_backlog_on_disk_it_is_stored_and_released_at_once(tmp_path):
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    queue.attach(["ox"])  # no consumer has read the lane's backlog yet: it counts as spilled
    releases = Releases()
    t = txn()
    await queue.put_held(t, releases.of(t))
    assert releases.count == {t.id: 1}
    assert count_deliveries(path, state="pending", instance="ox") == 1
    await queue.close()


async def test_an_instance_removed_by_a_reload_keeps_what_it_was_owed(tmp_path):
    path = tmp_path / "queue.db"
    stuck, _ = gated("ox")
    releases = Releases()
    t = txn()
    running, dispatcher = await started(SqliteQueue(path), stuck)
    await dispatcher.queue.put_held(t, releases.of(t))
    await dispatcher.remove(["ox"])  # as a reload that drops the instance
    await wait_for(lambda: releases.count == {t.id: 1})
    assert count_deliveries(path, state="pending", instance="ox") == 1

    back = recorder("ox")  # the instance comes back under the same name
    await dispatcher.add([back])
    await wait_for(lambda: back.plugin.delivered_ids == [t.id])
    await running.__aexit__()
    assert count_deliveries(path) == 0


async def test_offered_without_waiting_it_is_delivered_from_memory_and_released_once(tmp_path):
    path = tmp_path / "queue.db"
    ox = recorder("ox")
    releases = Releases()
    sent = [txn(uid=i) for i in range(5)]
    running, dispatcher = await started(SqliteQueue(path), ox)
    assert all(dispatcher.queue.offer_held(t, releases.of(t)) for t in sent)
    await wait_for(lambda: len(releases.count) == 5)
    assert ox.plugin.delivered_ids == [t.id for t in sent]
    assert set(releases.count.values()) == {1}
    await running.__aexit__()
    assert count_deliveries(path) == 0


async def test_behind_a_backlog_an_offer_is_declined_and_nothing_is_held(tmp_path):
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    queue.attach(["ox"])  # spilled: the sender must await put_held, which writes a row
    releases = Releases()
    t = txn()
    assert queue.offer_held(t, releases.of(t)) is False
    assert releases.count == {}
    assert queue.depth() == 0
    await queue.close()
