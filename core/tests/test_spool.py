"""The spool reader takes in what the bridge script leaves in SPOOL/new, durably and in order."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest
from push_notification.errors import PushNotificationError
from push_notification.queue import MemoryQueue, QueueFull
from push_notification.queue.contract import Release
from push_notification.server.spool import RELEASE_BATCH, SpoolReader
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction


def spool_file(spool: Path, name: str, txn: Transaction | None = None, text: str | None = None) -> Path:
    """Write a file the way the bridge does: into tmp/, then rename into new/."""
    body = text if text is not None else json.dumps(txn.to_dict() if txn else {})
    tmp = spool / "tmp" / name
    tmp.write_text(body)
    target = spool / "new" / name
    os.rename(tmp, target)
    return target


def message_new(uid: int) -> Transaction:
    return make_transaction(make_event("MessageNew", uid=uid, subject_utf8=f"mail {uid}"), id=f"txn-{uid}")


class Recorder(MemoryQueue):
    """A memory queue that records what it accepted, and can refuse the first ``refuse``
    transactions with QueueFull or fail every one with ``error``."""

    def __init__(self, refuse: int = 0, error: Exception | None = None) -> None:
        super().__init__()
        self.accepted: list[Transaction] = []
        self.refuse = refuse
        self.error = error
        self.arrived = asyncio.Event()

    async def put(self, txn: Transaction) -> None:
        if self.error is not None:
            raise self.error
        if self.refuse:
            self.refuse -= 1
            raise QueueFull("full", retry_after=0.05)
        self.accepted.append(txn)
        self.arrived.set()

    def offer_held(self, txn: Transaction, release: Release) -> bool:
        return False  # every transaction goes through put, where it is recorded

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.accepted) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    SpoolReader(tmp_path / "spool", Recorder()).prepare()
    return tmp_path / "spool"


async def test_files_present_at_start_are_taken_in_oldest_first_and_deleted(spool: Path) -> None:
    for uid in (1, 2, 3):
        path = spool_file(spool, f"file-{uid}.json", message_new(uid))
        os.utime(path, ns=(uid * 10**9, uid * 10**9))
    recorder = Recorder()
    reader = SpoolReader(spool, recorder)
    assert await reader.scan() == 3
    assert [t.id for t in recorder.accepted] == ["txn-1", "txn-2", "txn-3"]
    assert list((spool / "new").iterdir()) == []
    assert reader.accepted == 3


@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "poll"])
async def test_files_arriving_while_running_are_picked_up(spool: Path, use_inotify: bool) -> None:
    recorder = Recorder()
    reader = SpoolReader(spool, recorder, use_inotify=use_inotify, poll_interval=0.05)
    await reader.start()
    try:
        for uid in range(1, 21):
            spool_file(spool, f"f{uid:03}.json", message_new(uid))
        await recorder.wait_for(20)
    finally:
        await reader.stop()
    assert sorted(t.id for t in recorder.accepted) == sorted(f"txn-{uid}" for uid in range(1, 21))
    assert list((spool / "new").iterdir()) == []


async def test_files_arriving_one_by_one_are_handed_over_in_rename_order(spool: Path) -> None:
    queue = MemoryQueue()
    queue.attach(["ox"])
    reader = SpoolReader(spool, queue, poll_interval=30)  # no safety-net scan: inotify alone
    await reader.start()
    try:
        await asyncio.sleep(0.05)
        for uid in range(1, 11):
            spool_file(spool, f"z{uid}.json", message_new(uid))  # names sort the other way round
            await asyncio.sleep(0.005)
        async with asyncio.timeout(5):
            while reader.accepted < 10:
                await asyncio.sleep(0.01)
    finally:
        await reader.stop()
    assert [t.id for t in await queue.get("ox", 20)] == [f"txn-{uid}" for uid in range(1, 11)]
    assert list((spool / "new").iterdir()) == []


async def running_reader(spool: Path, queue: MemoryQueue) -> SpoolReader:
    """A started reader with no safety-net scan of its own (inotify alone)."""
    reader = SpoolReader(spool, queue, poll_interval=30)
    await reader.start()
    await asyncio.sleep(0.05)
    return reader


async def until_accepted(reader: SpoolReader, count: int) -> None:
    async with asyncio.timeout(5):
        while reader.accepted < count:
            await asyncio.sleep(0.01)


async def test_a_file_whose_name_is_not_utf8_arriving_by_inotify_is_taken_in_and_deleted(spool: Path) -> None:
    queue = MemoryQueue()
    queue.attach(["ox"])
    reader = await running_reader(spool, queue)
    try:
        # Latin-1 bytes on disk, as a str the way os.listdir gives them (surrogateescape)
        spool_file(spool, os.fsdecode(b"caf\xe9-\xff.json"), message_new(1))
        await until_accepted(reader, 1)
    finally:
        await reader.stop()
    assert [t.id for t in await queue.get("ox", 20)] == ["txn-1"]
    assert os.listdir(spool / "new") == []
    assert reader.held == set()


async def test_released_files_are_deleted_together_at_the_next_scan_and_never_taken_again(spool: Path) -> None:
    queue = MemoryQueue()
    queue.attach(["ox"])
    reader = await running_reader(spool, queue)
    try:
        for uid in (1, 2, 3):
            spool_file(spool, f"f{uid}.json", message_new(uid))
        await until_accepted(reader, 3)
        # Released by the memory queue at once, and deleted with the next batch, not one by one.
        assert sorted(os.listdir(spool / "new")) == ["f1.json", "f2.json", "f3.json"]
        assert await reader.scan() == 0  # the scan deletes them: none is taken a second time
        assert os.listdir(spool / "new") == []
        assert reader.held == set()
    finally:
        await reader.stop()
    assert [t.id for t in await queue.get("ox", 20)] == ["txn-1", "txn-2", "txn-3"]


async def test_a_full_batch_of_released_files_is_deleted_at_once(spool: Path) -> None:
    queue = MemoryQueue()
    queue.attach(["ox"])
    reader = await running_reader(spool, queue)
    try:
        for uid in range(RELEASE_BATCH):
            spool_file(spool, f"f{uid:03}.json", message_new(uid))
        await until_accepted(reader, RELEASE_BATCH)
        assert os.listdir(spool / "new") == []
        assert reader.held == set()
    finally:
        await reader.stop()


async def test_stopping_the_reader_deletes_what_was_released_and_later_releases_delete_at_once(spool: Path) -> None:
    releases: list[Release] = []

    class Holding(MemoryQueue):
        def offer_held(self, txn: Transaction, release: Release) -> bool:
            releases.append(release)
            return True

    reader = await running_reader(spool, Holding())
    try:
        for uid in (1, 2):
            spool_file(spool, f"f{uid}.json", message_new(uid))
        await until_accepted(reader, 2)
        releases[0]()
    finally:
        await reader.stop()
    assert os.listdir(spool / "new") == ["f2.json"]  # released: deleted on stop; held: kept
    releases[1]()  # a delivery that ends after the reader stopped
    assert os.listdir(spool / "new") == []
    assert reader.held == set()


async def test_a_full_queue_leaves_the_file_until_it_is_accepted(spool: Path) -> None:
    spool_file(spool, "one.json", message_new(1))
    recorder = Recorder(refuse=2)
    reader = SpoolReader(spool, recorder, poll_interval=0.02)
    await reader.start()
    try:
        await recorder.wait_for(1)
    finally:
        await reader.stop()
    assert [t.id for t in recorder.accepted] == ["txn-1"]
    assert list((spool / "new").iterdir()) == []


async def test_a_failing_put_keeps_the_file_for_a_later_try(spool: Path) -> None:
    path = spool_file(spool, "one.json", message_new(1))
    reader = SpoolReader(spool, Recorder(error=RuntimeError("daemon is shutting down")))
    assert await reader.scan() == 0
    assert path.exists()


async def test_malformed_files_move_to_bad_with_one_clear_line(spool: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool_file(spool, "broken.json", text='{"mailbox": "INBOX", "user": ')
    spool_file(spool, "unknown.json", text=json.dumps({"mailbox": "INBOX", "user": "a", "events": [{"name": "Nope"}]}))
    spool_file(spool, "good.json", message_new(7))
    recorder = Recorder()
    reader = SpoolReader(spool, recorder)
    with caplog.at_level(logging.ERROR, logger="push_notification.server.spool"):
        await reader.scan()
    assert [t.id for t in recorder.accepted] == ["txn-7"]
    assert sorted(p.name for p in (spool / "bad").iterdir()) == ["broken.json", "unknown.json"]
    assert reader.rejected == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert all("not a valid transaction" in line and "\n" not in line for line in lines)
    assert any("unknown event" in line for line in lines)
    assert not any("Nope" in line for line in lines), "a value from inside a rejected file is never logged"


async def test_a_missing_spool_directory_is_created_on_start(tmp_path: Path) -> None:
    reader = SpoolReader(tmp_path / "fresh", Recorder())
    await reader.start()
    await reader.stop()
    assert {p.name for p in (tmp_path / "fresh").iterdir()} == {"tmp", "new", "bad"}


async def test_an_unusable_spool_directory_is_one_line_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    reader = SpoolReader(blocker / "spool", Recorder())
    with pytest.raises(PushNotificationError, match=r"^cannot use spool_dir .*a-file/spool: .*dovecot-config"):
        await reader.start()


async def test_a_vanished_new_directory_is_reported_once_not_every_poll(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reader = SpoolReader(spool, Recorder())
    (spool / "new").rmdir()
    with caplog.at_level(logging.ERROR, logger="push_notification.server.spool"):
        for _ in range(3):
            assert await reader.scan() == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"spool: {spool / 'new'} is missing; create it (push-notification dovecot-config shows how)"
    ]


async def test_a_held_file_stays_until_its_release_and_is_not_taken_twice(spool: Path) -> None:
    path = spool_file(spool, "held.json", message_new(1))
    releases: list[Release] = []

    class Holding(Recorder):
        """Holds every transaction until the test releases it."""

        async def put_held(self, txn: Transaction, release: Release) -> None:
            releases.append(release)

    reader = SpoolReader(spool, Holding())
    assert await reader.scan() == 1
    assert path.exists()  # the file is the transaction's durable copy while it is delivered
    assert await reader.scan() == 0  # ... and a rescan does not put it again
    assert len(releases) == 1
    releases[0]()
    assert not path.exists()
    assert reader.held == set()
