"""Filters choose which events an instance sends: by event name, mailbox glob and user glob."""

from __future__ import annotations

from typing import Any

import pytest
from push_notification.errors import ConfigError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.transaction import Transaction
from push_notification_webhook import WebhookDriver


async def send_all(endpoint: Any, settings: dict[str, str], *transactions: Transaction) -> list[tuple[str, str, str]]:
    async with DriverHarness(WebhookDriver, {"url": endpoint.url, **settings}) as harness:
        await harness.send(*transactions)
    return [(r.json()["type"], r.json()["data"]["user"], r.json()["data"]["mailbox"]) for r in endpoint.received]


async def test_events_filter_sends_only_the_named_events(endpoint: Any) -> None:
    txn = make_transaction(
        make_event("FlagsSet", flags=["\\Seen"]), make_event("MessageRead"), make_event("MessageNew", uid=2)
    )
    sent = await send_all(endpoint, {"events": "MessageNew messageread"}, txn)
    assert sent == [("MessageRead", "alice", "INBOX"), ("MessageNew", "alice", "INBOX")]


async def test_unknown_or_unsupported_event_names_are_start_up_errors(endpoint: Any) -> None:
    with pytest.raises(ConfigError, match=r"setting 'events': unknown event 'MessageNu'"):
        DriverHarness(WebhookDriver, {"url": endpoint.url, "events": "MessageNew MessageNu"})
    with pytest.raises(ConfigError, match=r"'QuotaExceed' is not supported .*the quota plugin"):
        DriverHarness(WebhookDriver, {"url": endpoint.url, "events": "QuotaExceed"})


async def test_mailboxes_filter_takes_globs_and_inbox_in_any_case(endpoint: Any) -> None:
    transactions = [
        make_transaction(make_event("MessageNew", mailbox=box))
        for box in ("inbox", "Work", "Work/Projects", "Work/Projects/2026", "Workshop", "Archive")
    ]
    sent = await send_all(endpoint, {"mailboxes": "INBOX Work/*"}, *transactions)
    assert [box for _, _, box in sent] == ["inbox", "Work/Projects", "Work/Projects/2026"]


async def test_users_filter_takes_globs(endpoint: Any) -> None:
    transactions = [
        make_transaction(make_event("MessageNew"), user=user)
        for user in ("alice@example.com", "bob@example.org", "carol@example.com", "dave")
    ]
    sent = await send_all(endpoint, {"users": "*@example.com dave"}, *transactions)
    assert [user for _, user, _ in sent] == ["alice@example.com", "carol@example.com", "dave"]


async def test_filters_combine_and_a_declined_transaction_sends_nothing(endpoint: Any) -> None:
    settings = {"events": "MessageNew", "mailboxes": "INBOX", "users": "alice"}
    sent = await send_all(
        endpoint,
        settings,
        make_transaction(make_event("MessageNew"), user="bob"),
        make_transaction(make_event("MessageNew", mailbox="Spam")),
        make_transaction(make_event("MessageExpunge")),
        make_transaction(make_event("MessageNew", uid=9)),
    )
    assert sent == [("MessageNew", "alice", "INBOX")]


async def test_a_rolled_back_transaction_sends_nothing(endpoint: Any) -> None:
    assert await send_all(endpoint, {}, make_transaction(success=False)) == []
