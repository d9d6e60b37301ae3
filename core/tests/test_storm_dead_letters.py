"""A merged storm-control delivery the driver refuses for good: each transaction it stands for
becomes a dead letter of the queue, as if its own delivery had failed, which
``push-notification queue list`` shows and ``queue retry`` sends back through the window."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from push_notification.errors import PermanentError
from push_notification.queue import MemoryQueue, Queue
from push_notification.queue.contract import Letter
from push_notification.queue.dead_letters import DeadLetterBook, SqliteDeadLetters
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import Filter
from push_notification.storm import SqliteStormStore, StormQueue, StormSettings
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction

REFUSAL = PermanentError("413 Payload Too Large (the encrypted payload is too large for this push service)")


def flags(uid: int) -> Transaction:
    return make_transaction(make_event("FlagsSet", uid=uid, flags=["\\Seen"]), user="jane")


def new_mail(uid: int) -> Transaction:
    return make_transaction(make_event("MessageNew", uid=uid), user="jane")


@dataclass
class Storm:
    queue: StormQueue
    store: Path

    async def merged_delivery(self, txns: list[Transaction]) -> Transaction:
        """Flag changes deferred, then new mail flushing them: one merged transaction."""
        for txn in txns:
            await self.queue.put(txn)
        [merged] = await asyncio.wait_for(self.queue.get("dev", 100), 10)
        return merged

    async def held(self) -> int:
        return len(await SqliteStormStore(self.store).load("dev"))


def storm_over(inner: Queue, tmp_path: Path) -> Storm:
    store = tmp_path / "storm.sqlite"
    queue = StormQueue(inner, lambda: SqliteStormStore(store), {"dev": StormSettings(defer_non_new=1)})
    queue.attach(["dev"])
    return Storm(queue, store)


@pytest.fixture(params=["sqlite", "redis"])
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Storm, DeadLetterBook]]:
    """Storm control in front of each queue that keeps dead letters, and that queue's book as
    ``push-notification queue`` opens it."""
    inner: Queue
    book: DeadLetterBook
    if request.param == "sqlite":
        inner = SqliteQueue(tmp_path / "queue.sqlite")
        book = SqliteDeadLetters(str(tmp_path / "queue.sqlite"))
    else:
        from push_notification.queue.redis import RedisQueue
        from push_notification.queue.redis_dead_letters import RedisDeadLetters

        url = request.getfixturevalue("redis_server").url
        inner = RedisQueue(url, partitions=2)
        await inner.client.flushall()
        await inner.start()
        book = RedisDeadLetters(url)
    storm = storm_over(inner, tmp_path)
    yield storm, book
    book.close()
    await storm.queue.close()


async def test_each_transaction_of_a_refused_merged_delivery_is_a_dead_letter(
    durable: tuple[Storm, DeadLetterBook],
) -> None:
    storm, book = durable
    txns = [flags(1), flags(2), new_mail(3)]
    merged = await storm.merged_delivery(txns)
    assert len(merged.events) == 3
    await storm.queue.done("dev", merged, REFUSAL)
    assert storm.queue.dead_letters("dev") == 3
    letters = list(book.dead_letters(Filter(instance="dev")))
    assert sorted(letter.txn_id for letter in letters) == sorted(txn.id for txn in txns)
    assert {(letter.username, letter.attempts) for letter in letters} == {("jane", 1)}
    assert all("413 Payload Too Large" in (letter.last_error or "") for letter in letters)
    assert await storm.held() == 0  # the queue keeps them now, not the window


async def test_queue_retry_sends_them_back_through_the_window(durable: tuple[Storm, DeadLetterBook]) -> None:
    storm, book = durable
    txns = [flags(1), flags(2), new_mail(3)]
    await storm.queue.done("dev", await storm.merged_delivery(txns), REFUSAL)
    assert book.requeue(Filter(instance="dev")) == 3
    delivered: list[int] = []
    while len(delivered) < 3:  # merged again as they come back (Redis requeues in no set order)
        for again in await asyncio.wait_for(storm.queue.get("dev", 100), 10):
            delivered += [e.uid for e in again.events]  # type: ignore[attr-defined]
            await storm.queue.done("dev", again, None)
    assert sorted(delivered) == [1, 2, 3]
    assert list(book.dead_letters(Filter(instance="dev"))) == []
    assert await storm.held() == 0


async def test_a_retried_letter_taken_back_into_the_window_is_not_logged_as_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "push_notification.queue")
    storm = storm_over(SqliteQueue(tmp_path / "queue.sqlite"), tmp_path)
    await storm.queue.done("dev", await storm.merged_delivery([flags(1), new_mail(2)]), REFUSAL)
    book = SqliteDeadLetters(str(tmp_path / "queue.sqlite"))
    book.requeue(Filter(instance="dev"))
    book.close()
    [again] = await asyncio.wait_for(storm.queue.get("dev", 100), 10)
    await storm.queue.done("dev", again, None)
    lines = [r.getMessage() for r in caplog.records if "after push-notification queue retry" in r.getMessage()]
    assert len(lines) == 2 and all("taken into storm control after" in line for line in lines), lines
    await storm.queue.close()


async def test_a_queue_that_keeps_no_dead_letters_drops_them_in_one_logged_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storm = storm_over(MemoryQueue(), tmp_path)
    await storm.queue.done("dev", await storm.merged_delivery([flags(1), new_mail(2)]), REFUSAL)
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line == ("push_notification dev: 2 transaction(s) of user jane dropped after 1 attempt(s):"
                    f" PermanentError: {REFUSAL} (queue = memory keeps no dead letters)")  # fmt: skip
    assert storm.queue.dead_letters() == 0 and await storm.held() == 0
    await storm.queue.close()


class _StoreDown(MemoryQueue):
    """A queue whose store refuses writes until ``up`` is set."""

    up = False

    async def bury(self, instance: str, letters: Sequence[Letter], error: BaseException, attempts: int) -> None:
        if not self.up:
            raise OSError("disk I/O error")
        self.buried = [letter.txn.id for letter in letters]


async def test_what_cannot_be_made_a_dead_letter_stays_held_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("push_notification.storm.windows.BURY_PAUSE", 0.05)
    inner = _StoreDown()
    storm = storm_over(inner, tmp_path)
    txns = [flags(1), new_mail(2)]
    await storm.queue.done("dev", await storm.merged_delivery(txns), REFUSAL)
    assert await storm.held() == 2
    inner.up = True
    [again] = await asyncio.wait_for(storm.queue.get("dev", 100), 10)
    await storm.queue.done("dev", again, REFUSAL)
    assert inner.buried == [txn.id for txn in txns] and await storm.held() == 0
    await storm.queue.close()
