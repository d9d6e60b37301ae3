"""``/metrics`` after a known workload: counts, outcomes, depth and dead letters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from push_notification.errors import PermanentError, RetryableError
from push_notification.queue import MemoryQueue, Queue
from push_notification.queue.retry import RetryPolicy
from push_notification.queue.sqlite import SqliteQueue
from push_notification.server.metrics import Metrics
from push_notification.testing import make_event, make_transaction

from .queue_helpers import Running, recorder, wait_for


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, keyed by name and sorted labels."""
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def observed(queue: Queue, names: list[str]) -> Metrics:
    metrics = Metrics(lambda: queue, lambda: names)
    queue.observer = metrics
    return metrics


async def test_counts_events_outcomes_retries_and_dead_letters(tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db", policy=RetryPolicy(min_delay=0.01, max_delay=0.02))
    metrics = observed(queue, ["ox", "web"])
    flaky = {"left": 2}

    def ox_script(t, attempt):
        if t.user.username == "mallory":
            return PermanentError("400 Bad Request")
        if flaky["left"]:
            flaky["left"] -= 1
            return RetryableError("503")
        return None

    ox, web = recorder("ox", ox_script), recorder("web")
    async with Running(queue, ox, web) as dispatcher:
        for uid in range(3):
            await dispatcher.queue.put(
                make_transaction(make_event("MessageNew", uid=uid), make_event("FlagsSet", uid=uid, flags=["\\Seen"]))
            )
        await dispatcher.queue.put(make_transaction(make_event("MailboxCreate", mailbox="Lists"), user="mallory"))
        await wait_for(lambda: len(ox.plugin.delivered) == 3 and len(web.plugin.delivered) == 4)
        got = samples(metrics)
    assert got[("push_notification_transactions_received_total", ())] == 4
    assert got[("push_notification_events_received_total", (("event", "MessageNew"),))] == 3
    assert got[("push_notification_events_received_total", (("event", "FlagsSet"),))] == 3
    assert got[("push_notification_events_received_total", (("event", "MailboxCreate"),))] == 1
    assert got[("push_notification_deliveries_total", (("instance", "ox"), ("outcome", "delivered")))] == 3
    assert got[("push_notification_deliveries_total", (("instance", "ox"), ("outcome", "retry")))] == 2
    assert got[("push_notification_deliveries_total", (("instance", "ox"), ("outcome", "dead")))] == 1
    assert got[("push_notification_deliveries_total", (("instance", "web"), ("outcome", "delivered")))] == 4
    assert got[("push_notification_retries_total", (("instance", "ox"),))] == 2
    assert got[("push_notification_dead_letters", (("instance", "ox"),))] == 1
    assert got[("push_notification_dead_letters", (("instance", "web"),))] == 0
    assert got[("push_notification_queue_depth", (("instance", "ox"),))] == 0
    assert got[("push_notification_delivery_latency_seconds_count", (("instance", "web"),))] == 4


async def test_depth_counts_what_waits(tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db")
    metrics = observed(queue, ["ox"])
    queue.attach(["ox"])
    for uid in range(7):
        await queue.put(make_transaction(make_event("MessageNew", uid=uid)))
    assert samples(metrics)[("push_notification_queue_depth", (("instance", "ox"),))] == 7
    await queue.close()


async def test_memory_mode_counts_failures_as_dropped():
    queue = MemoryQueue()
    metrics = observed(queue, ["ox"])
    ox = recorder("ox", lambda t, a: RetryableError("503"))
    async with Running(queue, ox) as dispatcher:
        await dispatcher.queue.put(make_transaction(make_event("MessageNew")))
        assert await dispatcher.drain(5)
    got = samples(metrics)
    assert got[("push_notification_deliveries_total", (("instance", "ox"), ("outcome", "dropped")))] == 1
    assert got[("push_notification_dead_letters", (("instance", "ox"),))] == 0
