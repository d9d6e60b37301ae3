"""The dispatcher: every instance gets every transaction, in order, whatever the others do."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from push_notification import DriverContext, Transaction, hookimpl
from push_notification.dispatch import Dispatcher, deliver
from push_notification.drivers import DriverInstance, create_instance
from push_notification.errors import ConfigError, PushNotificationError
from push_notification.queue import MemoryQueue
from push_notification.settings import Settings
from push_notification.testing import DriverHarness, make_event, make_transaction


class Recorder:
    """Records what it sees; ``label`` comes from its settings."""

    def __init__(self, ctx: DriverContext) -> None:
        self.label = ctx.settings.get_str("label", "")
        ctx.settings.check_unknown()
        self.seen: list[Any] = []

    @hookimpl
    def begin_txn(self, txn: Transaction) -> None:
        self.seen.append(("begin", txn.id))

    @hookimpl
    async def message_new(self, event: Any) -> None:
        await asyncio.sleep(0)
        self.seen.append((self.label, event.uid))

    @hookimpl
    def end_txn(self, success: bool) -> None:
        self.seen.append(("end", success))


class Raiser:
    def __init__(self, ctx: DriverContext) -> None:
        pass

    @hookimpl
    def message_new(self) -> None:
        raise RuntimeError("endpoint exploded")


class Hanger:
    """Never finishes a delivery; remembers which ones it began."""

    def __init__(self, ctx: DriverContext) -> None:
        self.began: list[int] = []

    @hookimpl
    async def message_new(self, event: Any) -> None:
        self.began.append(event.uid)
        await asyncio.Event().wait()


class Blocker:
    """A blocking driver (like Lua): runs in its own thread, blocked inside a hook until
    the test releases it."""

    blocking = True

    def __init__(self, ctx: DriverContext) -> None:
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.finished = False

    @hookimpl
    def message_new(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.release.wait(30)
        self.finished = True


class Decliner(Recorder):
    @hookimpl
    def begin_txn(self, txn: Transaction) -> bool:
        self.seen.append(("begin", txn.id))
        return False


def instance(factory: Any, name: str, timeout: float = 5.0, **settings: str) -> DriverInstance:
    ctx = DriverContext(instance=name, driver=name, settings=Settings.from_dict(name, settings))
    return create_instance(ctx, factory, timeout=timeout)


def new_mail(uid: int) -> Transaction:
    return make_transaction(make_event("MessageNew", uid=uid))


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Until ``condition()`` holds; the test fails if it never does."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def run(instances: list[DriverInstance], txns: list[Transaction]) -> None:
    dispatcher = Dispatcher(MemoryQueue(), instances)
    await dispatcher.start()
    for txn in txns:
        await dispatcher.queue.put(txn)
    await dispatcher.drain(timeout=10)
    await dispatcher.stop()


async def test_a_driver_sees_begin_events_end_in_order() -> None:
    txns = [new_mail(uid) for uid in range(1, 4)]
    async with DriverHarness(Recorder, {"label": "r"}) as harness:
        await harness.send(*txns)
    expected: list[Any] = []
    for txn in txns:
        expected += [("begin", txn.id), ("r", txn.events[0].uid), ("end", True)]  # type: ignore[attr-defined]
    assert harness.plugin.seen == expected


async def test_two_instances_of_one_driver_keep_their_own_settings_and_state() -> None:
    one, two = instance(Recorder, "one", label="first"), instance(Recorder, "two", label="second")
    await run([one, two], [new_mail(1)])
    assert ("first", 1) in one.plugin.seen and ("second", 1) not in one.plugin.seen  # type: ignore[attr-defined]
    assert ("second", 1) in two.plugin.seen  # type: ignore[attr-defined]


async def test_a_raising_driver_does_not_stop_a_healthy_one(caplog: pytest.LogCaptureFixture) -> None:
    healthy, broken = instance(Recorder, "healthy", label="ok"), instance(Raiser, "broken")
    await run([broken, healthy], [new_mail(uid) for uid in range(1, 6)])
    assert [s for s in healthy.plugin.seen if s[0] == "ok"] == [("ok", uid) for uid in range(1, 6)]  # type: ignore[attr-defined]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 5
    assert all("push_notification broken:" in e and "RuntimeError: endpoint exploded" in e for e in errors)


async def test_a_hanging_driver_times_out_without_delaying_a_healthy_one(caplog: pytest.LogCaptureFixture) -> None:
    healthy, hung = instance(Recorder, "healthy", label="ok"), instance(Hanger, "hung", timeout=0.5)
    dispatcher = Dispatcher(MemoryQueue(), [hung, healthy])
    await dispatcher.start()
    for uid in (1, 2):
        await dispatcher.queue.put(new_mail(uid))
    await until(lambda: len([s for s in healthy.plugin.seen if s[0] == "ok"]) == 2)  # type: ignore[attr-defined]
    # Both delivered while the hung one was still in its first: not held back by its timeout.
    assert hung.plugin.began == [1]  # type: ignore[attr-defined]
    assert await dispatcher.drain(timeout=5)
    await dispatcher.stop()
    assert (
        sum(
            "push_notification hung:" in r.getMessage() and "timed out after 0.5s" in r.getMessage()
            for r in caplog.records
        )
        == 2
    )


async def test_a_blocking_driver_runs_in_its_own_thread_and_does_not_block_the_loop() -> None:
    blocker, healthy = instance(Blocker, "slow"), instance(Recorder, "fast", label="ok")
    dispatcher = Dispatcher(MemoryQueue(), [blocker, healthy])
    await dispatcher.start()
    await dispatcher.queue.put(new_mail(1))
    await until(lambda: healthy.plugin.seen)  # type: ignore[attr-defined]
    assert not blocker.plugin.finished  # type: ignore[attr-defined]  # delivered while the other blocks
    blocker.plugin.release.set()  # type: ignore[attr-defined]
    await dispatcher.drain(timeout=5)
    await dispatcher.stop()
    assert blocker.plugin.threads and threading.current_thread().name not in blocker.plugin.threads  # type: ignore[attr-defined]


async def test_declining_begin_txn_skips_the_rest_of_the_transaction() -> None:
    async with DriverHarness(Decliner) as harness:
        txn = new_mail(1)
        await harness.send(txn)
    assert harness.plugin.seen == [("begin", txn.id)]


async def test_a_rolled_back_transaction_reaches_drivers_as_end_txn_false() -> None:
    async with DriverHarness(Recorder) as harness:
        txn = make_transaction(success=False)
        await harness.send(txn)
    assert harness.plugin.seen == [("begin", txn.id), ("end", False)]


def test_unknown_hook_names_are_refused_when_the_instance_is_created() -> None:
    class Typo:
        def __init__(self, ctx: DriverContext) -> None:
            pass

        @hookimpl
        def message_neu(self) -> None:
            pass

    with pytest.raises(PushNotificationError, match=r"invalid hook.*message_neu"):
        instance(Typo, "typo")


def test_unknown_settings_are_a_start_up_error_naming_instance_and_key() -> None:
    with pytest.raises(ConfigError, match="push_notification rec: setting 'lable': unknown setting"):
        instance(Recorder, "rec", lable="x")


async def test_a_driver_that_fails_to_start_is_one_line_naming_the_instance() -> None:
    class Broken:
        def __init__(self, ctx: DriverContext) -> None:
            pass

        @hookimpl
        def driver_init(self) -> None:
            raise OSError("script.lua: No such file or directory")

    dispatcher = Dispatcher(MemoryQueue(), [instance(Broken, "scripted")])
    with pytest.raises(
        Exception, match=r"^push_notification scripted: driver 'scripted' failed to start: OSError: script.lua"
    ):
        await dispatcher.start()


class _EndOnly:
    def __init__(self) -> None:
        self.ended: list[bool] = []

    @hookimpl
    def end_txn(self, txn: Transaction, success: bool) -> None:
        self.ended.append(success)


def test_an_instance_with_only_end_txn_never_has_the_per_message_calls_built() -> None:
    plugin = _EndOnly()
    instance = DriverInstance("end-only", "test", plugin, timeout=5)
    txn = make_transaction(make_event("MessageNew"))
    asyncio.run(deliver(instance, txn))
    assert plugin.ended == [True]
    assert "hook_calls" not in txn.__dict__  # no Message and no call tuples for a driver that ignores them
