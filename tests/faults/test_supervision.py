"""Supervision inside the real daemon (in-process, so a fault can be injected into its
queue): a crashed worker shows in /healthz (503 with the reason) and /metrics, restarts and
delivers; a worker that keeps crashing stops the daemon with an error after a clean shutdown
that closes the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from durable_kit import transaction
from push_notification.config import load_config
from push_notification.errors import PushNotificationError
from push_notification.queue.sqlite import SqliteQueue
from push_notification.server.daemon import Daemon
from push_notification.testing.net import free_port
from push_notification.transaction import Transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


def daemon(tmp_path: Path) -> Daemon:
    config = tmp_path / "pn.conf"
    config.write_text(
        f"listen = 127.0.0.1:{free_port()}\nstate_dir = {tmp_path / 'state'}\nqueue = sqlite\n"
        "push_notification dlog { }\n"
    )
    return Daemon(load_config(str(config)))


def fail_done(running: Daemon, times: int) -> list[str]:
    """Make the queue's ``done`` raise ``times`` times (a bug in recording an outcome)."""
    real = running.queue.done
    failures: list[str] = []

    async def done(instance: str, txn: Transaction, error: BaseException | None) -> None:
        if len(failures) < times:
            failures.append(txn.id)
            raise RuntimeError("recording the outcome failed")
        await real(instance, txn, error)

    running.queue.done = done  # type: ignore[method-assign]
    return failures


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def post(url: str, body: dict[str, object]) -> int:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/transactions", json=body) as response:
        return response.status


async def test_a_crashed_worker_degrades_health_is_counted_restarts_and_delivers(tmp_path: Path) -> None:
    running = daemon(tmp_path)
    running.supervisor.stable_after = 0.5
    failures = fail_done(running, 1)
    serving = asyncio.create_task(running.run())
    url = f"http://{running.config.listen}"
    try:
        while not running.bound:
            await asyncio.sleep(0.02)
        assert await post(url, transaction("alice", 1)) == 202
        while not failures:
            await asyncio.sleep(0.02)
        status, body = await get(f"{url}/healthz")
        assert status == 503 and "worker dlog crashed: RuntimeError: recording the outcome failed" in body
        status, metrics = await get(f"{url}/metrics")
        assert 'push_notification_task_crashes_total{task="worker dlog"} 1.0' in metrics
        assert await running.dispatcher.drain(10), "the restarted worker delivers what it had taken"
        while (await get(f"{url}/healthz"))[0] != 200:
            await asyncio.sleep(0.1)
    finally:
        running.stop()
        await asyncio.wait_for(serving, 30)


async def test_a_worker_that_keeps_crashing_stops_the_daemon_with_an_error_and_the_queue_closed(
    tmp_path: Path,
) -> None:
    running = daemon(tmp_path)
    running.supervisor.min_backoff = 0.01
    fail_done(running, 1_000)
    serving = asyncio.create_task(running.run())
    while not running.bound:
        await asyncio.sleep(0.02)
    assert await post(f"http://{running.config.listen}", transaction("alice", 1)) == 202
    with pytest.raises(PushNotificationError, match=r"worker dlog crashed 6 times within 60s .*service manager"):
        await asyncio.wait_for(serving, 30)
    reopened = SqliteQueue(running.config.queue_path)  # the lock is free: the queue was closed
    reopened.attach(["dlog"])
    assert reopened.depth("dlog") == 1, "the transaction waits for the next start"
    await reopened.close()
