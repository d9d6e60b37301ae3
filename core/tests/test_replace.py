"""A reload replaces instances without losing accepted work, whatever the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from push_notification.dispatch import Dispatcher
from push_notification.drivers import DriverContext
from push_notification.errors import PushNotificationError
from push_notification.hookspecs import hookimpl
from push_notification.queue import MemoryQueue, Queue
from push_notification.queue.sqlite import SqliteQueue
from push_notification.settings import Settings
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction

from .queue_helpers import Recorder, RecorderInstance, wait_for


class Successor(Recorder):
    """A recorder whose ``driver_init`` waits until the test lets it finish."""

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.initialising = asyncio.Event()
        self.may_finish = asyncio.Event()

    @hookimpl
    async def driver_init(self) -> None:
        self.initialising.set()
        await self.may_finish.wait()


class Stuck(Recorder):
    """Takes a transaction and never finishes delivering it."""

    @hookimpl
    async def end_txn(self, txn: Transaction) -> None:
        self.attempts[txn.id] = self.attempts.get(txn.id, 0) + 1
        await asyncio.Event().wait()


class FailsToStart(Recorder):
    @hookimpl
    def driver_init(self) -> None:
        raise RuntimeError("no such endpoint")


def instance(name: str, driver: type[Recorder]) -> RecorderInstance:
    ctx = DriverContext(instance=name, driver=name, settings=Settings.from_dict(name, {}))
    return RecorderInstance(name, name, driver(ctx), timeout=30.0)


def mail(uid: int) -> Transaction:
    return make_transaction(make_event("MessageNew", uid=uid), user=f"user{uid}")


@pytest.fixture(params=["memory", "sqlite"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Queue:
    return MemoryQueue() if request.param == "memory" else SqliteQueue(tmp_path / "queue.db")


async def test_work_taken_by_the_old_instance_and_accepted_during_the_restart_reaches_its_successor(
    queue: Queue,
) -> None:
    old, new = instance("ox", Stuck), instance("ox", Successor)
    dispatcher = Dispatcher(queue, [old])
    await dispatcher.start()
    taken = mail(1)
    await queue.put(taken)
    await wait_for(lambda: old.plugin.attempts)  # the old instance is in the middle of delivering it

    restart = asyncio.create_task(dispatcher.replace(["ox"], [new]))
    await new.plugin.initialising.wait()  # the old one stopped; its successor is not running yet
    during = mail(2)
    await queue.put(during)
    new.plugin.may_finish.set()
    await restart

    assert await dispatcher.drain(5)
    assert sorted(new.plugin.delivered_ids) == sorted([taken.id, during.id])
    await dispatcher.stop()
    await queue.close()


async def test_an_instance_that_fails_to_start_is_named_and_the_others_start(queue: Queue) -> None:
    dispatcher = Dispatcher(queue, [instance("ox", Recorder)])
    await dispatcher.start()
    webhook = instance("webhook", Recorder)
    with pytest.raises(PushNotificationError, match=r"^push_notification broken: .*failed to start: RuntimeError"):
        await dispatcher.replace([], [instance("broken", FailsToStart), webhook])
    assert sorted(dispatcher.instances) == ["ox", "webhook"]
    later = mail(3)
    await queue.put(later)
    assert await dispatcher.drain(5)
    assert webhook.plugin.delivered_ids == [later.id]
    assert queue.depth("broken") == 0  # detached: nothing waits for an instance that is not running
    await dispatcher.stop()
    await queue.close()
