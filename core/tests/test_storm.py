"""Storm control in front of a queue: windows, merging, flushing by new mail, retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from push_notification.errors import RetryableError
from push_notification.queue import MemoryQueue
from push_notification.queue.retry import RetryPolicy
from push_notification.storm import SqliteStormStore, StormQueue, StormSettings, merge
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction


def flags(uid: int, user: str = "jane", mailbox: str = "INBOX") -> Transaction:
    return make_transaction(make_event("FlagsSet", mailbox, uid=uid, flags=["\\Seen"]), user=user)


def new_mail(uid: int, user: str = "jane", mailbox: str = "INBOX") -> Transaction:
    return make_transaction(make_event("MessageNew", mailbox, uid=uid), user=user)


def storm_queue(tmp_path: Path, **settings: float) -> StormQueue:
    inner = MemoryQueue()
    inner.retry_policies = {"dev": RetryPolicy(min_delay=0.05, max_delay=0.05)}
    queue = StormQueue(inner, lambda: SqliteStormStore(tmp_path / "storm.sqlite"), {"dev": StormSettings(**settings)})
    queue.attach(["dev"])
    return queue


def test_merge_keeps_one_transaction_per_mailbox_with_every_event_in_order() -> None:
    a, b, c = flags(1), new_mail(2, mailbox="Work"), new_mail(3)
    merged = merge([a, b, c])
    assert [(t.mailbox, [e.name for e in t.events], idx) for t, idx in merged] == [
        ("INBOX", ["FlagsSet", "MessageNew"], [0, 2]),
        ("Work", ["MessageNew"], [1]),
    ]
    assert merged[0][0].status == c.status


async def test_transactions_within_the_coalesce_window_are_delivered_as_one(tmp_path: Path) -> None:
    queue = storm_queue(tmp_path, coalesce=0.2)
    for uid in range(3):
        await queue.put(new_mail(uid))
    started = asyncio.get_running_loop().time()
    [txn] = await queue.get("dev", 100)
    assert asyncio.get_running_loop().time() - started >= 0.15
    assert [e.uid for e in txn.events] == [0, 1, 2]  # type: ignore[attr-defined]
    await queue.done("dev", txn, None)
    assert queue.depth() == 0
    await queue.close()


async def test_new_mail_flushes_deferred_flag_changes_at_once(tmp_path: Path) -> None:
    queue = storm_queue(tmp_path, defer_non_new=30)
    for uid in range(5):
        await queue.put(flags(uid))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get("dev", 100), 0.2)
    await queue.put(new_mail(9))
    [txn] = await asyncio.wait_for(queue.get("dev", 100), 2)
    assert [e.name for e in txn.events] == ["FlagsSet"] * 5 + ["MessageNew"]
    await queue.close()


async def test_users_have_windows_of_their_own(tmp_path: Path) -> None:
    queue = storm_queue(tmp_path, defer_non_new=30)
    await queue.put(flags(1, user="jane"))
    await queue.put(new_mail(2, user="bob"))
    [txn] = await asyncio.wait_for(queue.get("dev", 100), 2)
    assert txn.user.username == "bob" and queue.depth("dev") == 1
    await queue.close()


async def test_a_failed_merged_delivery_is_retried_whole_and_kept_until_delivered(tmp_path: Path) -> None:
    queue = storm_queue(tmp_path, coalesce=0.05)
    await queue.put(new_mail(1))
    await queue.put(new_mail(2))
    [first] = await asyncio.wait_for(queue.get("dev", 100), 2)
    await queue.done("dev", first, RetryableError("503"))
    await queue.put(new_mail(3))
    [again] = await asyncio.wait_for(queue.get("dev", 100), 2)
    assert [e.uid for e in again.events] == [1, 2, 3]  # type: ignore[attr-defined]
    await queue.done("dev", again, None)
    assert await SqliteStormStore(tmp_path / "storm.sqlite").load("dev") == []
    await queue.close()


async def test_what_a_stopped_daemon_held_is_delivered_after_the_restart(tmp_path: Path) -> None:
    first = storm_queue(tmp_path, defer_non_new=30)
    for uid in range(3):
        await first.put(flags(uid))
    while first.depth("dev") != 3 or first.inner.depth("dev"):
        await asyncio.sleep(0.01)
    await first.close()
    second = storm_queue(tmp_path, defer_non_new=30)
    await second.put(new_mail(7))
    [txn] = await asyncio.wait_for(second.get("dev", 100), 2)
    assert [e.name for e in txn.events] == ["FlagsSet"] * 3 + ["MessageNew"]
    await second.close()


async def test_instances_without_storm_control_pass_straight_through(tmp_path: Path) -> None:
    queue = StormQueue(MemoryQueue(), lambda: SqliteStormStore(tmp_path / "s.sqlite"), {"dlog": StormSettings()})
    queue.attach(["dlog"])
    await queue.put(flags(1))
    [txn] = await asyncio.wait_for(queue.get("dlog", 100), 1)
    await queue.done("dlog", txn, None)
    assert not (tmp_path / "s.sqlite").exists()
    await queue.close()
