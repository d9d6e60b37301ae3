"""Storm control with a device driver: a burst becomes a few pushes, and nothing is lost."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from conftest import Start, instance_config
from push_notification.queue.dead_letters import SqliteDeadLetters
from push_notification.queue.sqlite_store import Filter
from push_notification.testing.inprocess import USER, RunningDaemon, running_daemon
from push_notification_webpush.testing import LoopbackPushService

# Flag changes wake too here, so without storm control each would be a push.
WAKE_ON_FLAGS = "wake_events = MessageNew FlagsSet"


def figure(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


async def flag(daemon: RunningDaemon, uid: int) -> None:
    await daemon.send(name="FlagsSet", uid=uid, flags=["\\Seen"])


async def test_fifty_flag_changes_and_three_deliveries_are_at_most_three_pushes(start: Start) -> None:
    running = await start(WAKE_ON_FLAGS)
    subscriber = running.service.subscribe()
    await running.register(subscriber)
    for second in range(4):  # 2 s: 12-13 flag changes per half second, new mail at 0.5, 1.0 and 2.0
        for uid in range(second * 13, min(50, second * 13 + 13)):
            await flag(running.daemon, uid)
        if second != 2:
            await running.daemon.send(uid=100 + second)
        await asyncio.sleep(0.5)
    messages = []
    while sum(m.json()["count"] for m in messages) < 53:
        messages = await running.service.wait_for(len(messages) + 1, timeout=5)
    await running.daemon.drain(5)
    assert len(running.service.received) <= 3
    assert sum(m.json()["count"] for m in running.service.received) == 53
    metrics = await running.daemon.metrics()
    assert figure(metrics, "push_notification_events_received_total", event="FlagsSet") == 50
    assert figure(metrics, "push_notification_events_received_total", event="MessageNew") == 3
    assert figure(metrics, "push_notification_storm_held_total", instance="webpush") == 53
    assert figure(metrics, "push_notification_storm_flushed_total", instance="webpush", unit="events") == 53
    merged = sum(figure(metrics, "push_notification_storm_merged_total", instance="webpush", reason=r)
                 for r in ("coalesce", "defer"))  # fmt: skip
    pushes = figure(metrics, "push_notification_storm_flushed_total", instance="webpush", unit="transactions")
    assert merged + pushes == 53 and pushes == len(running.service.received)


async def test_a_restart_during_a_deferred_window_loses_nothing(tmp_path: Path, vapid_key: tuple[Path, str]) -> None:
    key, public = vapid_key
    async with LoopbackPushService(application_server_key=public) as service:
        subscriber = service.subscribe()
        async with running_daemon(tmp_path, instance_config(key, WAKE_ON_FLAGS)) as first:
            await first.register("webpush", subscription=subscriber.subscription())
            for uid in range(5):
                await flag(first, uid)
            while figure(await first.metrics(), "push_notification_storm_held_total", instance="webpush") < 5:
                await asyncio.sleep(0.02)
        assert service.received == []
        async with running_daemon(tmp_path, instance_config(key, WAKE_ON_FLAGS)) as second:
            await second.send(uid=99)
            [message] = await service.wait_for(1)
    assert message.json()["count"] == 6 and message.json()["event"] == "MessageNew"


async def test_a_merged_push_refused_for_good_leaves_each_transaction_a_dead_letter(
    start: Start, tmp_path: Path
) -> None:
    running = await start(WAKE_ON_FLAGS)
    subscriber = running.service.subscribe()
    subscriber.answers.append((413, {}))
    await running.register(subscriber)
    for uid in range(3):
        await flag(running.daemon, uid)
    await running.daemon.send(uid=9)  # new mail flushes the deferred flag changes: one merged push
    await running.daemon.dead_letter("webpush")
    book = SqliteDeadLetters(str(tmp_path / "state" / "queue.sqlite"))
    letters = list(book.dead_letters(Filter(instance="webpush")))
    book.close()
    assert len(letters) == 4 and {letter.username for letter in letters} == {USER}
    assert all("(the encrypted payload is too large for this push service)" in (x.last_error or "") for x in letters)
