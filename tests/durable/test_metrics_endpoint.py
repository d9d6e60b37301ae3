"""``GET /metrics`` on the running daemon after a known workload."""

from __future__ import annotations

from pathlib import Path

import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def test_metrics_after_a_known_workload(tmp_path: Path) -> None:
    async with Sink() as sink:
        sink.answer = lambda name, count: 400 if name == "broken" else 503 if count <= 5 else 200
        daemon = Daemon(
            tmp_path,
            "queue_retry_delay = 50ms\nqueue_retry_max_delay = 100ms\nlog_level = error\n"
            f"push_notification ok {{\n driver = durable_test_http\n url = {sink.url('ok')}\n}}\n"
            f"push_notification broken {{\n driver = durable_test_http\n url = {sink.url('broken')}\n}}\n",
        )
        daemon.start()
        try:
            workload = []
            for i in range(30):
                txn = transaction(f"user{i % 4}", i)
                txn["events"].append({"name": "FlagsSet", "uid": i, "uid_validity": 1700000000, "flags": ["\\Seen"]})
                workload.append(txn)
            sender = Sender(daemon.url, concurrency=1)
            await sender.send_all(workload)
            await eventually(lambda: len(sink.ids("ok")) == 30, 30, "30 deliveries to ok")

            async def settled() -> bool:
                m = await daemon.metrics()
                return m[("push_notification_dead_letters", (("instance", "broken"),))] == 30

            await eventually(settled, 30, "30 dead letters for broken")
            m = await daemon.metrics()
        finally:
            daemon.stop()

    def value(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    assert value("push_notification_transactions_received_total") == 30
    assert value("push_notification_events_received_total", event="MessageNew") == 30
    assert value("push_notification_events_received_total", event="FlagsSet") == 30
    assert value("push_notification_deliveries_total", instance="ok", outcome="delivered") == 30
    assert value("push_notification_deliveries_total", instance="ok", outcome="retry") == 5
    assert value("push_notification_retries_total", instance="ok") == 5
    assert value("push_notification_deliveries_total", instance="broken", outcome="dead") == 30
    assert value("push_notification_queue_depth", instance="ok") == 0
    assert value("push_notification_queue_depth", instance="broken") == 0
    assert value("push_notification_dead_letters", instance="broken") == 30
    assert value("push_notification_delivery_latency_seconds_count", instance="ok") == 30
    assert value("push_notification_delivery_latency_seconds_bucket", instance="ok", le="+Inf") == 30
