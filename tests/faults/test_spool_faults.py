"""The real daemon and a spool full of what should not be there: every odd entry goes to
bad/ with one log line, good files are delivered, the reader never dies, and a spool the
daemon cannot write degrades /healthz until it is fixed, with nothing delivered twice."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


def spool_config(sink: Sink, spool: Path) -> str:
    return (
        f"spool_dir = {spool}\nspool_max_size = 64k\nqueue = sqlite\n"
        f"push_notification hook {{\n driver = durable_test_http\n url = {sink.url('hook')}\n}}\n"
    )


def drop(spool: Path, name: str, data: dict[str, object] | bytes) -> None:
    """Leave a file as the bridge does: write into tmp/, rename into new/."""
    tmp = spool / "tmp" / name
    tmp.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    os.rename(tmp, spool / "new" / name)


async def health(daemon: Daemon) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.url}/healthz") as response:
        return response.status, await response.json()


async def degraded(daemon: Daemon) -> bool:
    status, details = await health(daemon)
    return status == 503 and details["status"] == "degraded"


def error_lines(daemon: Daemon, what: str) -> list[str]:
    return [line for line in daemon.log().splitlines() if what in line]


async def test_odd_spool_entries_go_to_bad_with_one_line_each_and_good_files_still_arrive(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for sub in ("tmp", "new", "bad"):
        (spool / sub).mkdir(parents=True)
    new = spool / "new"
    secret = tmp_path / "outside.json"
    secret.write_text(json.dumps(transaction("root", 99)))
    async with Sink() as sink:
        daemon = Daemon(tmp_path, spool_config(sink, spool))
        # Present at start-up, and arriving while it runs: both paths of the reader.
        (new / "a-directory").mkdir()
        os.mkfifo(new / "a-fifo")
        (new / "zero").symlink_to("/dev/zero")
        daemon.start()
        try:
            good = [transaction("alice", uid) for uid in range(3)]
            drop(spool, "good-0", good[0])
            (new / "outside").symlink_to(secret)
            (new / "dangling").symlink_to(tmp_path / "nowhere")
            drop(spool, "huge", b"{" + b" " * 70_000 + b"}")
            drop(spool, "not-json", b"\xff\xfe garbage")
            drop(spool, "evil\nERROR forged line", {"user": {"username": "u", "uid": "s3cret"}, "mailbox": "INBOX"})
            drop(spool, "good-1", good[1])
            drop(spool, "good-2", good[2])
            await eventually(lambda: sink.ids("hook") == {t["id"] for t in good}, 15, "the good files")
            await eventually(lambda: len(list((spool / "bad").iterdir())) == 8, 10, "every odd entry in bad/")
            assert list(new.iterdir()) == []
            assert (await health(daemon))[0] == 200, "a bad file is the sender's problem, not the daemon's"
            # The reader is alive after all that.
            late = transaction("bob", 7)
            drop(spool, "late", late)
            await eventually(lambda: late["id"] in sink.ids("hook"), 10, "a file after the odd ones")
        finally:
            exit_code = daemon.stop()
    assert exit_code == 0
    moved = error_lines(daemon, "spool: moved ")
    assert len(moved) == 8, moved
    assert any("evil\\nERROR forged line" in line for line in moved)
    assert not error_lines(daemon, "s3cret") and "root" not in sink.received.get("hook", []), "nothing from outside"
    assert "Traceback" not in daemon.log()


@contextmanager
def read_only_view(spool: Path, view: Path) -> Iterator[Path]:
    """``view``: the spool as a daemon under ProtectSystem=strict sees it (a read-only bind
    mount), while the bridge still writes through ``spool``."""
    if os.geteuid() != 0:
        pytest.skip("a read-only view of the spool needs a bind mount, which needs root")
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(spool), str(view)], capture_output=True).returncode:
        pytest.skip("bind mounts are not permitted here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True, capture_output=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], capture_output=True)


def make_writable(view: Path) -> None:
    subprocess.run(["mount", "-o", "remount,rw,bind", str(view)], check=True, capture_output=True)


async def test_a_read_only_spool_degrades_health_delivery_goes_on_and_it_recovers_without_duplicates(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    for sub in ("tmp", "new", "bad"):
        (spool / sub).mkdir(parents=True)
    async with Sink() as sink:
        with read_only_view(spool, tmp_path / "spool-view") as view:
            daemon = Daemon(tmp_path, spool_config(sink, view))
            daemon.start()
            try:
                files = [transaction("alice", uid) for uid in range(4)]
                for number, txn in enumerate(files):
                    drop(spool, f"file-{number}", txn)
                await eventually(lambda: sink.ids("hook") == {t["id"] for t in files}, 15, "spool delivery")
                # Delivered files are deleted in a batch at the next scan: that is where it shows.
                await eventually(lambda: degraded(daemon), 5, "/healthz degraded")
                status, details = await health(daemon)
                assert status == 503 and details["status"] == "degraded"
                assert any("is not writable" in str(p) for p in details["problems"])  # type: ignore[union-attr]
                fix = error_lines(daemon, "cannot remove files from")
                assert len(fix) == 1 and "ReadWritePaths=" in fix[0]
                over_http = transaction("bob", 9)
                await Sender(daemon.url).send_all([over_http])
                await eventually(lambda: over_http["id"] in sink.ids("hook"), 10, "HTTP delivery meanwhile")
                await asyncio.to_thread(make_writable, view)  # the admin's fix
                await eventually(lambda: not list((spool / "new").iterdir()), 10, "the delivered files removed")
                status, details = await health(daemon)
                assert (status, details["status"]) == (200, "ok")
                assert sorted(sink.received["hook"]) == sorted([t["id"] for t in files] + [over_http["id"]]), (
                    "each delivered exactly once"
                )
            finally:
                exit_code = daemon.stop()
    assert exit_code == 0
    assert "Traceback" not in daemon.log()
