"""``PUSH_NOTIFICATION_TRACE=1``: a line per hook call (instance, hook, arguments, duration)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from push_notification import DriverContext, hookimpl
from push_notification.drivers import tracing_wanted
from push_notification.errors import PermanentError
from push_notification.events import Event
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.transaction import Transaction

LINE = re.compile(r"^trace (\S+) (\w+)\((.*)\) (.+) in (\d+\.\d{3}) ms$")


class Slow:
    def __init__(self, ctx: DriverContext) -> None:
        pass

    @hookimpl
    def begin_txn(self, txn: Transaction) -> bool:
        return txn.user.username != "nobody"

    @hookimpl
    async def message_new(self, txn: Transaction, event: Event) -> None:
        await asyncio.sleep(0.05)

    @hookimpl
    def event(self, txn: Transaction, event: Event) -> None:
        if event.name == "MessageRead":
            raise PermanentError("no")


def traces(caplog: pytest.LogCaptureFixture) -> list[tuple[str, ...]]:
    lines = [r.getMessage() for r in caplog.records if r.name == "push_notification.trace"]
    return [match.groups() for line in lines if (match := LINE.match(line))]


async def test_every_hook_call_is_a_line_with_instance_arguments_outcome_and_duration(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PUSH_NOTIFICATION_TRACE", "1")
    caplog.set_level(logging.INFO)
    txn = make_transaction(make_event("MessageNew", uid=7), make_event("MessageRead", uid=7), id="t1", user="alice")
    async with DriverHarness(Slow, instance="slow1") as harness:
        await harness.send(txn, make_transaction(make_event("MessageNew"), id="t2", user="nobody"))
    txn_arg = "txn=<txn t1 alice INBOX>"
    assert [line[:4] for line in traces(caplog)] == [
        ("slow1", "begin_txn", txn_arg, "-> True"),
        ("slow1", "message_new", f"{txn_arg}, event=<MessageNew uid=7>", "-> None"),
        ("slow1", "event", f"{txn_arg}, event=<MessageNew uid=7>", "-> None"),
        ("slow1", "event", f"{txn_arg}, event=<MessageRead uid=7>", "raised PermanentError"),
        ("slow1", "begin_txn", "txn=<txn t2 nobody INBOX>", "-> False"),
    ]
    async_call = traces(caplog)[1]
    assert float(async_call[4]) >= 50  # an async hook is timed until it finished


async def test_without_the_variable_nothing_is_traced_and_hooks_are_called_directly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PUSH_NOTIFICATION_TRACE", raising=False)
    caplog.set_level(logging.INFO)
    async with DriverHarness(Slow) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    assert traces(caplog) == []
    assert harness.instance.hooks["begin_txn"] == harness.plugin.begin_txn


@pytest.mark.parametrize(("value", "wanted"), [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_the_variable_turns_tracing_on_unless_it_says_no(
    monkeypatch: pytest.MonkeyPatch, value: str, wanted: bool
) -> None:
    monkeypatch.setenv("PUSH_NOTIFICATION_TRACE", value)
    assert tracing_wanted() is wanted
