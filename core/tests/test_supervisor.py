"""Supervision: a crash is logged once, counted, degrades health and restarts the task; a
crash loop stops the daemon; a crashed worker gets back what it had taken."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest
from push_notification.dispatch import Dispatcher
from push_notification.queue import MemoryQueue, Queue
from push_notification.queue.sqlite import SqliteQueue
from push_notification.server.supervisor import Health, Supervisor
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction

from .queue_helpers import recorder, wait_for


def fast(health: Health, **kwargs: object) -> Supervisor:
    return Supervisor(health, min_backoff=0.01, stable_after=0.2, **kwargs)  # type: ignore[arg-type]


async def test_a_crash_is_logged_once_counted_degrades_health_and_the_task_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health()
    counted: list[str] = []
    supervisor = fast(health, counted=counted.append)
    runs = 0
    running = asyncio.Event()

    async def task() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise OSError("inotify went away")
        running.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.INFO, logger="push_notification.server.supervisor"):
        supervisor.start("spool reader", task)
        await asyncio.wait_for(running.wait(), 5)
    assert counted == ["spool reader"]
    assert [r.getMessage() for r in caplog.records] == [
        "spool reader crashed: OSError: inotify went away; restarting it in 0.0s"
    ]
    assert health.reasons() == ["spool reader crashed: OSError: inotify went away"]
    await wait_for(lambda: health.ok, 5)  # healthy once it ran stable_after without crashing
    await supervisor.stop()


async def test_a_task_that_keeps_crashing_stops_the_daemon_with_its_reason() -> None:
    health = Health()
    stopped = asyncio.Event()
    supervisor = fast(health, max_crashes=3, on_fatal=stopped.set)

    async def task() -> None:
        raise KeyError("bug")

    supervisor.start("worker ox", task)
    await asyncio.wait_for(stopped.wait(), 5)
    assert supervisor.fatal is not None and supervisor.fatal.startswith("worker ox crashed 4 times within 60s")
    assert "KeyError: 'bug'" in supervisor.fatal and not health.ok
    await supervisor.stop()


async def test_a_thread_crash_is_counted_from_the_thread() -> None:
    health = Health()
    counted: list[str] = []
    supervisor = fast(health, counted=counted.append)
    supervisor.bind()
    thread = threading.Thread(target=supervisor.thread_crashed, args=("queue writer", RuntimeError("x")))
    thread.start()
    thread.join()
    await wait_for(lambda: counted == ["queue writer"], 5)
    assert not health.ok


class DoneFailsOnce:
    """Wraps a real queue: the first ``done`` raises, as a bug in recording an outcome would."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.failed = False

    async def done(self, instance: str, txn: Transaction, error: BaseException | None) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("recording the outcome failed")
        await type(self.queue).done(self.queue, instance, txn, error)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_crashed_worker_restarts_and_delivers_what_it_had_taken(tmp_path: Path, kind: str) -> None:
    queue: Queue = MemoryQueue() if kind == "memory" else SqliteQueue(tmp_path / "queue.db")
    wrapper = DoneFailsOnce(queue)
    queue.done = wrapper.done  # type: ignore[method-assign]
    health = Health()
    counted: list[str] = []
    supervisor = fast(health, counted=counted.append)
    ox = recorder("ox")
    dispatcher = Dispatcher(queue, [ox], spawn=supervisor.start)
    await dispatcher.start()
    sent = [make_transaction(make_event("MessageNew", uid=uid), user="alice") for uid in range(3)]
    for txn in sent:
        await queue.put(txn)
    await wait_for(lambda: len({t.id for t in ox.plugin.delivered}) == 3, 10)
    assert counted == ["worker ox"]
    assert [t.id for t in ox.plugin.delivered][-2:] == [t.id for t in sent[1:]], "order kept after the restart"
    await dispatcher.stop(timeout=1)
    await supervisor.stop()
    await queue.close()
