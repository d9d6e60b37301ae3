"""The catch-all ``event(txn, event)`` hook: every event once, right after its own hook."""

from __future__ import annotations

import asyncio
from typing import Any

from push_notification import DriverContext, hookimpl
from push_notification.events import Event
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.transaction import Message, Transaction

TXN = make_transaction(
    make_event("FlagsSet", uid=1, flags=("\\Flagged",)),
    make_event("MessageNew", uid=2),
    make_event("MessageRead", uid=2),
    id="t1",
)


class EveryEvent:
    """Only the catch-all: what a webhook or script bridge writes."""

    def __init__(self, ctx: DriverContext) -> None:
        self.calls: list[str] = []

    @hookimpl
    def process_msg(self, txn: Transaction, message: Message) -> None:
        self.calls.append(f"process_msg {message.uid}")

    @hookimpl
    def event(self, txn: Transaction, event: Event) -> None:
        self.calls.append(f"event {event.name}")

    @hookimpl
    def end_txn(self, txn: Transaction, success: bool) -> None:
        self.calls.append("end_txn")


class Both(EveryEvent):
    """A specific hook for one kind beside the catch-all, sync and async mixed."""

    @hookimpl
    async def message_new(self, txn: Transaction, event: Event) -> None:
        await asyncio.sleep(0)
        self.calls.append("message_new")

    @hookimpl
    def flags_set(self, txn: Transaction, event: Event) -> None:
        self.calls.append("flags_set")


class AsyncCatchAll(Both):
    @hookimpl
    async def event(self, txn: Transaction, event: Event) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.calls.append(f"event {event.name}")


class BlockingBoth(Both):
    """On the instance's own thread, where nothing is awaited."""

    blocking = True

    @hookimpl
    def message_new(self, txn: Transaction, event: Event) -> None:  # type: ignore[override]
        self.calls.append("message_new")


async def calls_for(driver: type[EveryEvent]) -> list[str]:
    async with DriverHarness(driver) as harness:
        await harness.send(TXN)
    calls: list[str] = harness.plugin.calls
    return calls


async def test_a_driver_with_only_event_gets_every_event_once_where_the_event_hooks_go() -> None:
    assert await calls_for(EveryEvent) == [
        "process_msg 1",
        "event FlagsSet",
        "process_msg 2",
        "event MessageNew",
        "event MessageRead",
        "end_txn",
    ]


async def test_event_follows_the_events_own_hook() -> None:
    expected = [
        "process_msg 1",
        "flags_set",
        "event FlagsSet",
        "process_msg 2",
        "message_new",
        "event MessageNew",
        "event MessageRead",
        "end_txn",
    ]
    for driver in (Both, AsyncCatchAll, BlockingBoth):
        assert await calls_for(driver) == expected, driver.__name__


def test_an_instance_without_event_keeps_its_hooks_untouched() -> None:
    class Plain:
        def __init__(self, ctx: DriverContext) -> None:
            pass

        @hookimpl
        def message_new(self, txn: Transaction, event: Event) -> Any:
            return None

    harness = DriverHarness(Plain)
    assert set(harness.instance.hooks) == {"message_new"}
    assert harness.instance.hooks["message_new"] == harness.plugin.message_new  # called directly
