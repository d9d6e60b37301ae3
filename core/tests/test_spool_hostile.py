"""The spool reader trusts nothing in SPOOL/new: every entry is delivered or moved to bad/
with one line naming it, and the reader never dies, blocks, follows a link out or reads a
value of a bad file into the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from push_notification.config import parse_config
from push_notification.errors import ConfigError
from push_notification.server.spool import SpoolReader, read_spool_file
from push_notification.server.supervisor import Health
from push_notification.transaction import Transaction

from .test_spool import Recorder, message_new, spool_file


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    SpoolReader(tmp_path / "spool", Recorder()).prepare()
    return tmp_path / "spool"


def bad(spool: Path) -> list[str]:
    return sorted(p.name for p in (spool / "bad").iterdir())


async def scan_logged(reader: SpoolReader, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="push_notification.server.spool"):
        await asyncio.wait_for(reader.scan(), 5)
    return [record.getMessage() for record in caplog.records]


async def test_only_regular_files_are_taken_and_every_other_entry_goes_to_bad_with_one_line(
    spool: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new = spool / "new"
    outside = tmp_path / "secret.json"
    outside.write_text(message_new(99).json)
    (new / "a-directory").mkdir()
    os.mkfifo(new / "a-fifo")
    (new / "to-dev-zero").symlink_to("/dev/zero")
    (new / "to-outside").symlink_to(outside)
    (new / "dangling").symlink_to(tmp_path / "nothing-here")
    spool_file(spool, "good.json", message_new(1))
    recorder = Recorder()
    lines = await scan_logged(SpoolReader(spool, recorder), caplog)
    assert [t.id for t in recorder.accepted] == ["txn-1"], "a symlink is never followed out of the spool"
    assert bad(spool) == ["a-directory", "a-fifo", "dangling", "to-dev-zero", "to-outside"]
    assert len(lines) == 5
    assert any("a-directory" in line and "a directory, not a regular file" in line for line in lines)
    assert any("a-fifo" in line and "a FIFO" in line for line in lines)
    assert sum("a symbolic link" in line for line in lines) == 3
    assert (spool / "bad" / "to-outside").is_symlink() and outside.exists(), "the link moves, not its target"


async def test_a_file_over_spool_max_size_goes_to_bad(spool: Path, caplog: pytest.LogCaptureFixture) -> None:
    huge = spool_file(spool, "huge.json", text=" " * 5000 + message_new(1).json)
    size = huge.stat().st_size
    spool_file(spool, "fits.json", message_new(2))
    recorder = Recorder()
    lines = await scan_logged(SpoolReader(spool, recorder, max_size=4096), caplog)
    assert [t.id for t in recorder.accepted] == ["txn-2"]
    assert bad(spool) == ["huge.json"]
    assert lines == [f"spool: moved huge.json to {spool / 'bad'}: {size} bytes, more than spool_max_size (4096)"]


async def test_a_big_file_within_the_limit_is_read_in_a_thread_and_delivered(spool: Path) -> None:
    spool_file(spool, "padded.json", text=message_new(3).json + " " * 300_000)
    recorder = Recorder()
    await SpoolReader(spool, recorder).scan()
    assert [t.id for t in recorder.accepted] == ["txn-3"]


async def test_a_file_name_with_a_newline_is_logged_on_one_line(spool: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool_file(spool, "evil\n2026-11-30 INFO forged.json", text="not json")
    lines = await scan_logged(SpoolReader(spool, Recorder()), caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "evil\\n2026-11-30 INFO forged.json" in lines[0]


async def test_no_value_from_a_bad_file_reaches_the_log(spool: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool_file(spool, "a.json", text='{"user": {"username": "u", "uid": "hunter2"}, "mailbox": "INBOX", "events": []}')
    spool_file(spool, "b.json", text='{"user": "u", "mailbox": "INBOX", "events": [{"name": "s3cret-event"}]}')
    lines = await scan_logged(SpoolReader(spool, Recorder()), caplog)
    assert len(lines) == 2 and bad(spool) == ["a.json", "b.json"]
    assert not any("hunter2" in line or "s3cret" in line for line in lines)


async def test_a_second_bad_file_of_the_same_name_never_replaces_the_first(spool: Path) -> None:
    reader = SpoolReader(spool, Recorder())
    for text in ("first", "second"):
        spool_file(spool, "same.json", text=text)
        await reader.scan()
    assert {(spool / "bad" / name).read_text() for name in bad(spool)} == {"first", "second"}


def test_the_reader_function_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc/hostname")
    with pytest.raises(Exception, match="symbolic link"):
        read_spool_file(str(tmp_path / "link"))
    assert read_spool_file(str(tmp_path / "gone")) is None


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` cannot be written, as under systemd's ProtectSystem=strict: a read-only
    bind mount as root (root ignores file modes), else mode 0555."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", str(directory), str(directory)], capture_output=True).returncode:
        pytest.skip("a read-only directory needs a bind mount, which failed here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True, capture_output=True)


async def test_a_read_only_new_directory_degrades_health_and_recovers_without_duplicates(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    health = Health()
    recorder = Recorder()
    reader = SpoolReader(spool, recorder, health=health)
    for uid in (1, 2):
        spool_file(spool, f"{uid}.json", message_new(uid))
    with read_only(spool / "new"):
        lines = await scan_logged(reader, caplog)
        assert [t.id for t in recorder.accepted] == ["txn-1", "txn-2"], "delivery goes on"
        assert len(lines) == 1 and "ReadWritePaths=" in lines[0]
        assert not health.ok and "is not writable" in health.reasons()[0]
        await reader.scan()
        assert len(recorder.accepted) == 2, "a delivered file that could not be deleted is not taken again"
    lines = await scan_logged(reader, caplog)
    assert health.ok and any("writable again" in line for line in lines)
    assert list((spool / "new").iterdir()) == [] and len(recorder.accepted) == 2


class Holding(Recorder):
    """A queue that holds every spool file until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.releases: list[Callable[[], None]] = []

    async def put_held(self, txn: Transaction, release: Callable[[], None]) -> None:
        self.releases.append(release)


async def test_an_unlink_error_never_escapes_a_release(spool: Path) -> None:
    """The release runs inside the queue's done(): raising there would kill a worker."""
    health = Health()
    queue = Holding()
    reader = SpoolReader(spool, queue, health=health)
    spool_file(spool, "held.json", message_new(1))
    await reader.scan()
    with read_only(spool / "new"):
        queue.releases[0]()
    assert not health.ok


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_an_unreadable_file_goes_to_bad_with_the_reason(spool: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool_file(spool, "locked.json", message_new(1)).chmod(0)
    lines = await scan_logged(SpoolReader(spool, Recorder()), caplog)
    assert bad(spool) == ["locked.json"]
    assert lines == [
        f"spool: moved locked.json to {spool / 'bad'}: unreadable (permission denied): the daemon must be able to read it"
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("12", "use at least 1k"), ("2G", "use at most 1G"), ("9" * 400, "use at most 1G"), ("lots", "invalid size")],
)
def test_spool_max_size_is_a_sane_size_or_one_config_error(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"spool_max_size = {value}\npush_notification dlog {{ }}\n", "/etc/pn.conf")
    assert str(caught.value).startswith("/etc/pn.conf:1: invalid size") and reason in str(caught.value)
    assert parse_config("spool_max_size = 64k\npush_notification dlog { }\n", "/etc/pn.conf").spool_max_size == 65536
