"""Past the high-water mark the ingress answers 503 with Retry-After, and memory stays bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def post_once(session: aiohttp.ClientSession, url: str, txn: dict[str, object]) -> tuple[int, str | None]:
    async with session.post(f"{url}/v1/transactions", json=txn) as response:
        await response.read()
        return response.status, response.headers.get("Retry-After")


async def test_past_the_high_water_mark_the_ingress_answers_503_and_memory_stays_bounded(tmp_path: Path) -> None:
    down = True
    async with Sink() as sink:
        sink.answer = lambda name, count: 503 if down else 200
        daemon = Daemon(
            tmp_path,
            "max_pending = 300\nlog_level = error\nqueue_retry_delay = 5s\n"
            f"push_notification ox {{\n driver = durable_test_http\n url = {sink.url('ox')}\n}}\n",
        )
        daemon.start()
        try:
            assert daemon.proc is not None
            async with aiohttp.ClientSession() as session:
                answers = [await post_once(session, daemon.url, transaction(f"u{i}", i)) for i in range(400)]
                statuses = [status for status, _ in answers]
                assert statuses[:300] == [202] * 300
                assert set(statuses[300:]) == {503}
                assert all(retry_after and int(retry_after) >= 1 for status, retry_after in answers[300:])
                before = rss_kib(daemon.proc.pid)

                async def pound(worker: int) -> list[int]:
                    return [(await post_once(session, daemon.url, transaction(f"w{worker}", i)))[0] for i in range(500)]

                pounded = await asyncio.gather(*(pound(w) for w in range(16)))
                after = rss_kib(daemon.proc.pid)
            assert {status for statuses in pounded for status in statuses} == {503}
            assert after - before < 20_000, f"RSS grew from {before} KiB to {after} KiB under refused load"

            down = False  # the endpoint recovers: the backlog drains and the ingress accepts again
            await eventually(lambda: len(sink.ids("ox")) == 300, 60, "the 300 accepted transactions delivered")
            sender = Sender(daemon.url, concurrency=4)
            await sender.send_all(transaction("late", i) for i in range(10))
            assert sender.refused == 0
        finally:
            daemon.stop()
