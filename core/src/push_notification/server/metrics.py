"""``GET /metrics``: what the daemon accepted and delivered, in Prometheus format.

The queue reports every acceptance and every delivery outcome to :class:`Metrics` (it is
the queue's :class:`~push_notification.queue.QueueObserver`), so the figures are the same
whichever queue backend runs. Depth and dead letters are read from the queue at scrape
time. Each daemon has its own registry, so tests and reloads never share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from push_notification.queue import Outcome, Queue
from push_notification.transaction import Transaction

#: Acceptance → delivery, from "instant" to "after an hour of retries".
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class _QueueState(Collector):
    """Queue depth and dead letters per instance, read when Prometheus scrapes."""

    def __init__(self, queue: Callable[[], Queue], instances: Callable[[], Iterable[str]]) -> None:
        self.queue = queue
        self.instances = instances

    def collect(self) -> Iterator[Metric]:
        queue = self.queue()
        depth = GaugeMetricFamily(
            "push_notification_queue_depth",
            "Transactions waiting for delivery, per driver instance.",
            labels=["instance"],
        )
        dead = GaugeMetricFamily(
            "push_notification_dead_letters",
            "Transactions given up on (see push-notification queue list), per driver instance.",
            labels=["instance"],
        )
        for name in self.instances():
            depth.add_metric([name], queue.depth(name))
            dead.add_metric([name], queue.dead_letters(name))
        yield depth
        yield dead


class Metrics:
    """The daemon's Prometheus registry; also the queue's observer."""

    def __init__(self, queue: Callable[[], Queue], instances: Callable[[], Iterable[str]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.transactions = Counter(
            "push_notification_transactions_received",
            "Transactions accepted by the ingress.",
            registry=self.registry,
        )
        self.events = Counter(
            "push_notification_events_received",
            "Events accepted by the ingress, by RFC 5423 event type.",
            ["event"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "push_notification_deliveries",
            "Delivery attempts by driver instance and outcome (delivered, retry, dead, dropped).",
            ["instance", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "push_notification_retries",
            "Failed deliveries scheduled for another attempt.",
            ["instance"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "push_notification_delivery_latency_seconds",
            "Time from acceptance to successful delivery, per driver instance.",
            ["instance"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.task_crashes = Counter(
            "push_notification_task_crashes",
            "Crashes of the daemon's long-running tasks (spool reader, workers, queue threads), each restarted.",
            ["task"],
            registry=self.registry,
        )
        self.registry.register(_QueueState(queue, instances))
        self._event_counters: dict[str, Counter] = {}
        self._delivery_counters: dict[tuple[str, str], Counter] = {}
        self._latency_histograms: dict[str, Histogram] = {}

    # -- QueueObserver -------------------------------------------------------------

    # Labelled children are cached: ``labels()`` costs more than the increment itself, and
    # these run for every transaction.

    def accepted(self, txn: Transaction) -> None:
        self.transactions.inc()
        for event in txn.events:
            counter = self._event_counters.get(event.name)
            if counter is None:
                counter = self._event_counters[event.name] = self.events.labels(event.name)
            counter.inc()

    def finished(self, instance: str, outcome: Outcome, latency: float) -> None:
        counter = self._delivery_counters.get((instance, outcome))
        if counter is None:
            counter = self._delivery_counters[instance, outcome] = self.deliveries.labels(instance, outcome)
        counter.inc()
        if outcome == "retry":
            self.retries.labels(instance).inc()
        elif outcome == "delivered":
            histogram = self._latency_histograms.get(instance)
            if histogram is None:
                histogram = self._latency_histograms[instance] = self.latency.labels(instance)
            histogram.observe(latency)

    def task_crashed(self, task: str) -> None:
        """The supervisor saw ``task`` crash."""
        self.task_crashes.labels(task).inc()

    # -- exposition ----------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``."""
        response = web.Response(body=self.render())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response
