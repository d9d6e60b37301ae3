"""``GET /metrics``: what the daemon accepted and delivered, in Prometheus format.

The queue reports every acceptance and every delivery outcome to :class:`Metrics` (it is
the queue's :class:`~push_notification.queue.QueueObserver`), so the figures are the same
whichever queue backend runs. Depth and dead letters are read from the queue at scrape
time. Each daemon has its own registry, so tests and reloads never share counters.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from push_notification.queue import Outcome, Queue
from push_notification.transaction import Transaction

#: What Prometheus is told it reads (the text format's version with it).
_CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
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


class _Tallies(Collector):
    """What the queue reports for every transaction, kept as plain numbers (an increment
    under no lock: the event loop is the only writer) and turned into Prometheus families
    only when scraped. prometheus_client's own counters take a lock per increment, which
    cost more than the rest of the bookkeeping on the hot path."""

    def __init__(self) -> None:
        self.transactions = 0
        self.events: dict[str, int] = {}
        self.deliveries: dict[tuple[str, str], int] = {}
        self.retries: dict[str, int] = {}
        #: Per instance: a count per bucket of :data:`LATENCY_BUCKETS` (+Inf last), and the sum.
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, instance: str, seconds: float) -> None:
        tally = self.latency.get(instance)
        if tally is None:
            tally = self.latency[instance] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        tally[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        tally[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        transactions = CounterMetricFamily(
            "push_notification_transactions_received", "Transactions accepted by the ingress."
        )
        transactions.add_metric([], self.transactions)
        yield transactions
        yield _counters(
            "push_notification_events_received",
            "Events accepted by the ingress, by RFC 5423 event type.",
            ["event"],
            (((name,), count) for name, count in self.events.items()),
        )
        yield _counters(
            "push_notification_deliveries",
            "Delivery attempts by driver instance and outcome (delivered, retry, dead, dropped).",
            ["instance", "outcome"],
            self.deliveries.items(),
        )
        yield _counters(
            "push_notification_retries",
            "Failed deliveries scheduled for another attempt.",
            ["instance"],
            (((name,), count) for name, count in self.retries.items()),
        )
        latency = HistogramMetricFamily(
            "push_notification_delivery_latency_seconds",
            "Time from acceptance to successful delivery, per driver instance.",
            labels=["instance"],
        )
        bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
        for instance, (counts, total) in self.latency.items():
            latency.add_metric([instance], list(zip(bounds, accumulate(counts), strict=True)), total[0])
        yield latency


def _counters(name: str, documentation: str, labels: list[str], values: Iterable[tuple[Sequence[str], int]]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in values:
        family.add_metric(list(key), value)
    return family


class _DriverSkips(Collector):
    """Transactions a driver instance chose not to send, by reason (e.g. the OX driver's
    ``no_metadata``): a driver object's ``skipped`` mapping, read when Prometheus scrapes."""

    def __init__(self, plugins: Callable[[], Mapping[str, object]]) -> None:
        self.plugins = plugins

    def collect(self) -> Iterator[Metric]:
        skipped = CounterMetricFamily(
            "push_notification_skipped_transactions",
            "Transactions a driver instance skipped, by reason (no_metadata: OX push not turned on).",
            labels=["instance", "reason"],
        )
        for name, plugin in self.plugins().items():
            counts = getattr(plugin, "skipped", None)
            if isinstance(counts, Mapping):
                for reason, count in counts.items():
                    skipped.add_metric([name, str(reason)], float(count))
        yield skipped


class Metrics:
    """The daemon's Prometheus registry; also the queue's observer."""

    def __init__(
        self,
        queue: Callable[[], Queue],
        instances: Callable[[], Iterable[str]],
        plugins: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tallies = _Tallies()
        self.registry.register(self.tallies)
        self.task_crashes = Counter(
            "push_notification_task_crashes",
            "Crashes of the daemon's long-running tasks (spool reader, workers, queue threads), each restarted.",
            ["task"],
            registry=self.registry,
        )
        self.registry.register(_QueueState(queue, instances))
        if plugins is not None:
            self.registry.register(_DriverSkips(plugins))

    # -- QueueObserver: runs for every transaction ------------------------------------

    def accepted(self, txn: Transaction) -> None:
        tallies = self.tallies
        tallies.transactions += 1
        events = tallies.events
        for event in txn.events:
            events[event.name] = events.get(event.name, 0) + 1

    def finished(self, instance: str, outcome: Outcome, latency: float) -> None:
        tallies = self.tallies
        key = (instance, outcome)
        tallies.deliveries[key] = tallies.deliveries.get(key, 0) + 1
        if outcome == "delivered":
            tallies.observe(instance, latency)
        elif outcome == "retry":
            tallies.retries[instance] = tallies.retries.get(instance, 0) + 1

    def task_crashed(self, task: str) -> None:
        """The supervisor saw ``task`` crash."""
        self.task_crashes.labels(task).inc()

    # -- exposition ----------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def exposition(self) -> tuple[bytes, bytes]:
        """``GET /metrics``: the content type and the body."""
        return _CONTENT_TYPE, self.render()
