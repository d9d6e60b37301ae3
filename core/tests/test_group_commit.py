"""Group commit: one write that cannot be stored fails alone; the writer and the queue go on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from push_notification.queue import QueueFull
from push_notification.queue.group_commit import LAZY_DELAY, GroupCommitter, Write
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import open_store
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction

from .queue_helpers import Running, recorder


def txn(user: str = "alice", uid: int = 1) -> Transaction:
    return make_transaction(make_event("MessageNew", uid=uid), user=user)


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
async def test_a_write_sqlite_cannot_encode_fails_only_its_own_put(tmp_path: Path, fsync: bool) -> None:
    queue = SqliteQueue(tmp_path / "queue.db", fsync=fsync)
    ox = recorder("ox")
    async with Running(queue, ox) as dispatcher:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(queue.put(txn(uid=i)) for i in range(5)),
                queue.put(txn(user="evil\ud800")),
                *(queue.put(txn(uid=i)) for i in range(5, 10)),
                return_exceptions=True,
            ),
            10,
        )
        assert [type(o).__name__ for o in outcomes].count("NoneType") == 10
        refused = outcomes[5]
        assert isinstance(refused, QueueFull) and "UnicodeEncodeError" in str(refused)
        await asyncio.wait_for(queue.put(txn(uid=11)), 5)  # the writer still runs
        assert await dispatcher.drain(10)
    assert len(ox.plugin.delivered) == 11


async def test_a_failing_commit_callback_never_skips_the_others(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "queue.db")
    committer = GroupCommitter(conn, tmp_path / "queue.db", fsync=False, tick=lambda c: None)
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("callback bug")

    committer.submit(Write(lambda c: boom))
    committer.submit(Write(lambda c: lambda: ran.append(1)))
    await asyncio.sleep(0.05)
    assert ran == [1]
    await committer.close()


async def test_a_writer_thread_crash_is_reported_and_the_thread_goes_on(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "queue.db")
    ticks = 0

    def tick(c: sqlite3.Connection) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            raise RuntimeError("tick bug")

    committer = GroupCommitter(conn, tmp_path / "queue.db", fsync=True, tick=tick, tick_interval=0.01)
    reported = threading.Event()
    crashes: list[str] = []

    def report(name: str, exc: BaseException) -> None:
        crashes.append(f"{name}: {exc}")
        reported.set()

    committer.report = report
    done = asyncio.get_running_loop().create_future()
    committer.submit(Write(lambda c: lambda: done.set_result(True), sync=True))
    assert await asyncio.wait_for(done, 5)
    assert await asyncio.get_running_loop().run_in_executor(None, reported.wait, 5)
    assert crashes == ["queue writer: tick bug"]
    again = asyncio.get_running_loop().create_future()
    committer.submit(Write(lambda c: lambda: again.set_result(True), sync=True))
    assert await asyncio.wait_for(again, 5), "a write after the crash still commits"
    await committer.close()


async def test_a_lazy_write_rides_the_next_commit_or_gets_its_own_within_the_lazy_delay(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "queue.db")
    committer = GroupCommitter(conn, tmp_path / "queue.db", fsync=False, tick=lambda c: None)
    ran: list[str] = []
    committer.submit(Write(lambda c: lambda: ran.append("lazy 1"), lazy=True))
    committer.submit(Write(lambda c: lambda: ran.append("accept")))
    await asyncio.sleep(0)
    assert ran == ["lazy 1", "accept"] and committer.commits == 1  # one commit, no waiting
    committer.submit(Write(lambda c: lambda: ran.append("lazy 2"), lazy=True))
    committer.submit(Write(lambda c: lambda: ran.append("lazy 3"), lazy=True))
    await asyncio.sleep(0)
    assert ran[2:] == []  # nothing to share a commit with yet
    await asyncio.sleep(LAZY_DELAY * 2)
    assert ran[2:] == ["lazy 2", "lazy 3"] and committer.commits == 2
    await committer.close()
