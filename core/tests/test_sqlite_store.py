"""Opening the queue file: a bad store is one clear line at start-up, never silent loss."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from push_notification.queue import QueueFull
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import PAGE_SIZE, SCHEMA, SCHEMA_VERSION, QueueStoreError, open_store
from push_notification.testing import make_event, make_transaction


def test_a_new_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "queue.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_bridge_sized_transaction_is_one_page_written_per_acceptance(tmp_path: Path) -> None:
    """A row of about 1 KiB fits a new file's page whole: no overflow page, no free-list churn."""
    conn = open_store(tmp_path / "queue.db")
    assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    insert = "INSERT INTO delivery (instance, seq, txn_id, username, accepted_at, body) VALUES ('ox', ?, ?, 'u', 0, ?)"
    conn.execute(insert, (1, "a" * 40, "x" * 1500))
    wal = tmp_path / "queue.db-wal"
    before = wal.stat().st_size
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM delivery WHERE seq = 1")
    conn.execute(insert, (2, "b" * 40, "x" * 1500))
    conn.execute("COMMIT")
    assert wal.stat().st_size - before == 24 + PAGE_SIZE  # one frame: its header and the one leaf page
    conn.close()


_ONE = make_transaction(make_event("MessageNew", uid=1))


def _old_file(path: Path, rows: int) -> None:
    """A queue file as made before :data:`PAGE_SIZE`: 4 KiB pages, ``rows`` deliveries."""
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size = 4096")
    old.execute("PRAGMA journal_mode = WAL")
    old.executescript(SCHEMA)
    old.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    insert = "INSERT INTO delivery (instance, seq, txn_id, username, accepted_at, body) VALUES ('ox', ?, ?, 'u', 0, ?)"
    old.executemany(insert, [(seq, _ONE.id, _ONE.json) for seq in range(1, rows + 1)])
    old.commit()
    old.close()


def page_size(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    return size


async def test_an_older_file_holding_rows_keeps_its_pages_and_delivers_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    _old_file(path, rows=3)
    queue = SqliteQueue(path)
    queue.attach(["ox"])
    assert queue.depth("ox") == 3
    assert {t.id for t in await queue.get("ox", 10)} == {_ONE.id}
    await queue.close()
    assert page_size(path) == 4096


async def test_an_older_file_takes_the_larger_pages_once_empty(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    _old_file(path, rows=0)
    queue = SqliteQueue(path)
    queue.attach(["ox"])
    await queue.put(_ONE)
    await queue.close()
    assert page_size(path) == PAGE_SIZE
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM delivery").fetchone()[0] == 1


async def test_a_reader_of_an_older_empty_file_only_postpones_the_larger_pages(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    _old_file(path, rows=0)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader:  # push-notification queue
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM delivery").fetchone()
        queue = SqliteQueue(path)  # at once: no waiting for the reader
        queue.attach(["ox"])
        await queue.put(_ONE)
        reader.execute("COMMIT")
    await queue.close()
    assert page_size(path) == 4096
    second = SqliteQueue(path)  # the next start: the row is still there, so are the small pages
    await second.close()
    assert page_size(path) == 4096


def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(QueueStoreError) as error:
        SqliteQueue(path)
    assert str(error.value).startswith(f"queue_path {path}: not usable (file is not a database)")
    assert "move a damaged file aside" in str(error.value)


def test_a_damaged_page_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue_conn = open_store(path)
    queue_conn.executemany(
        "INSERT INTO delivery (instance, seq, txn_id, username, accepted_at, body) VALUES ('ox', ?, 'x', 'u', 0, ?)",
        [(i, "x" * 2000) for i in range(200)],
    )
    queue_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    queue_conn.close()
    data = bytearray(path.read_bytes())
    data[8192:16384] = b"\xff" * 8192  # clobber pages in the middle of the table
    path.write_bytes(bytes(data))
    with pytest.raises(QueueStoreError) as error:
        SqliteQueue(path)
    assert str(error.value).startswith(f"queue_path {path}: ")
    assert "\n" not in str(error.value)


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE mail (id INTEGER)")
    with pytest.raises(QueueStoreError, match=r"not a push-notification queue .*tables mail\); point queue_path"):
        SqliteQueue(path)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(QueueStoreError, match=r"directory .*/nope does not exist; create it or change queue_path"):
        SqliteQueue(tmp_path / "nope" / "queue.db")


@contextmanager
def unwritable(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unwritable even for root (``chattr +i``), or skip the test."""
    if os.geteuid() != 0:
        for path in paths:
            path.chmod(0o444)
        try:
            yield
        finally:
            for path in paths:
                path.chmod(0o644)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root ignores file modes and chattr is not installed")
    if subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True).returncode:
        pytest.skip("this file system has no immutable attribute")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_an_unwritable_file_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    open_store(path).close()
    with unwritable(path), pytest.raises(QueueStoreError) as error:
        SqliteQueue(path)
    assert str(error.value).startswith(f"queue_path {path}: ")
    assert "make the file and its directory writable" in str(error.value)


async def test_a_store_that_fails_at_run_time_refuses_with_queue_full_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    queue.attach(["ox"])
    await queue.put(make_transaction(make_event("MessageNew", uid=1)))
    with unwritable(path, path.with_name("queue.db-wal")), pytest.raises(QueueFull) as refused:
        await queue.put(make_transaction(make_event("MessageNew", uid=2)))
    assert str(refused.value).startswith(f"queue store {path} cannot be written: ")
    await queue.put(make_transaction(make_event("MessageNew", uid=3)))
    assert queue.depth("ox") == 2
    await queue.close()


async def test_two_daemons_cannot_share_a_queue_file(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    first = SqliteQueue(path)
    with pytest.raises(QueueStoreError, match=r"in use by another push-notification daemon"):
        SqliteQueue(path)
    await first.close()
    await SqliteQueue(path).close()  # free again once the first one closed
