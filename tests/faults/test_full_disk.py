"""The queue on a full file system: the ingress answers 503 with Retry-After (the bridge
keeps and resends), nothing accepted is lost, everything arrives once space is freed, and
the daemon never suggests moving the queue file aside (which would drop accepted work)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


@contextmanager
def small_filesystem(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where`` (needs root: mount)."""
    if os.geteuid() != 0:
        pytest.skip("a small file system to fill needs root (mount -t tmpfs)")
    where.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


async def post(daemon: Daemon, txn: dict[str, object]) -> tuple[int, str | None, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{daemon.url}/v1/transactions", json=txn) as response,
    ):
        return response.status, response.headers.get("Retry-After"), await response.text()


async def test_a_full_disk_is_503_with_retry_after_and_nothing_is_lost_after_space_is_freed(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small") as small:
        async with Sink() as sink:
            failing = True
            sink.answer = lambda name, count: 503 if failing else 200  # deliveries wait as queue rows
            daemon = Daemon(
                tmp_path,
                f"queue = sqlite\nqueue_path = {small / 'queue.sqlite'}\nqueue_retry_delay = 100ms\n"
                "queue_retry_max_delay = 500ms\n"
                f"push_notification hook {{\n driver = durable_test_http\n url = {sink.url('hook')}\n}}\n",
            )
            daemon.start()
            try:
                before = [transaction(f"user{i}", i) for i in range(20)]
                await Sender(daemon.url).send_all(before)
                filler = await asyncio.to_thread(fill, small)
                refused = None
                for i in range(200):
                    status, retry_after, body = await post(daemon, transaction("late", 1000 + i))
                    assert status in (202, 503), body
                    if status == 503:
                        refused = (retry_after, body)
                        break
                assert refused is not None, "a full disk must refuse new work"
                assert refused[0] is not None and int(refused[0]) >= 1
                assert "free space" in refused[1]
                during = [transaction("during", i) for i in range(20)]
                sender = Sender(daemon.url)
                sending = asyncio.create_task(sender.send_all(during))  # retries 503s, as the bridge does
                await asyncio.sleep(1)
                assert not sending.done() and sender.refused > 0
                filler.unlink()  # the admin frees space
                await asyncio.wait_for(sending, 30)
                failing = False
                accepted = {t["id"] for t in before} | set(sender.accepted)
                await eventually(lambda: sink.ids("hook") >= accepted, 30, "everything accepted")
            finally:
                exit_code = daemon.stop()
        log = daemon.log()
        assert "free space" in log and "aside" not in log and "Traceback" not in log
        assert exit_code == 0


async def test_starting_on_a_full_disk_says_to_free_space_not_to_move_the_queue(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", "1m") as small:
        daemon = Daemon(
            tmp_path, f"queue = sqlite\nqueue_path = {small / 'queue.sqlite'}\npush_notification dlog {{ }}\n"
        )
        daemon.start()
        await Sender(daemon.url).send_all([transaction("alice", 1)])
        daemon.stop()
        await asyncio.to_thread(fill, small)
        result = await asyncio.to_thread(
            subprocess.run,
            [*daemon.command, "serve", "-c", str(daemon.config)],
            capture_output=True,
            text=True,
            env=daemon.env,
            timeout=60,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "free space" in lines[0] and "aside" not in lines[0], lines
