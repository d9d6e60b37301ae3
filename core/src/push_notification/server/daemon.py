"""The daemon: config → driver instances → dispatcher over a queue, behind the HTTP ingress.

Stateless apart from its queue (and the metadata store), so several daemons can serve many
Dovecot backends once the queue is a shared engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from push_notification.config import DEFAULT_SOURCE, DaemonConfig, InstanceConfig, load_config
from push_notification.devices.http import DeviceRoutes
from push_notification.devices.kinds import served_kinds
from push_notification.devices.service import DeviceService
from push_notification.devices.wiring import open_device_service
from push_notification.dispatch import Dispatcher
from push_notification.drivers import DriverContext, DriverInstance, Metadata, create_instance, find_driver
from push_notification.errors import PushNotificationError
from push_notification.queue import MemoryQueue, Queue
from push_notification.queue.redis import RedisQueue
from push_notification.queue.retry import RetryPolicy, describe_error
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import pending_summary
from push_notification.server.connections import IngressServer
from push_notification.server.import_paths import refresh_import_paths
from push_notification.server.ingress import Ingress, IngressLimits, listen_address
from push_notification.server.metadata import open_metadata
from push_notification.server.metrics import Metrics
from push_notification.server.spool import SpoolReader
from push_notification.server.spool_access import spool_access_problem
from push_notification.server.supervisor import Health, Supervisor
from push_notification.settings import Settings
from push_notification.storm import SqliteStormStore, StormQueue, StormSettings, read_storm_settings
from push_notification.storm.redis_store import RedisStormStore
from push_notification.storm.store import StormStore

log = logging.getLogger("push_notification.server.daemon")

T = TypeVar("T")

#: How long shutdown waits for queued work to be delivered.
SHUTDOWN_GRACE = 30.0
#: The same with a durable queue, which keeps undelivered work for the next start.
DURABLE_SHUTDOWN_GRACE = 2.0
#: Daemon settings a reload leaves alone: the socket, the queue and the logs are set up once.
RESTART_ONLY = (
    "listen",
    "queue",
    "queue_path",
    "queue_fsync",
    "state_dir",
    "ingress_token",
    "log_format",
    "event_loop",
    "ingress_max_body_size",
    "ingress_max_events",
    "ingress_header_timeout",
    "ingress_body_timeout",
    "ingress_max_connections",
    "devices_path",
)


def make_queue(config: DaemonConfig) -> Queue:
    """The queue backend named by the ``queue`` setting."""
    if config.queue == "memory":
        return MemoryQueue(config.max_pending)
    if config.queue == "sqlite":
        path = Path(config.queue_path)
        if path.parent == Path(config.state_dir):
            path.parent.mkdir(parents=True, exist_ok=True)
        queue = SqliteQueue(path, high_water=config.max_pending, fsync=config.queue_fsync)
        if config.source != DEFAULT_SOURCE:
            queue.config_source = config.source  # named in the dead-letter hint
        return queue
    if config.queue == "redis":
        assert config.queue_url, "checked when the config was read"
        return RedisQueue(
            config.queue_url,
            partitions=config.queue_partitions,
            visibility_timeout=config.queue_visibility_timeout,
            high_water=config.max_pending,
        )
    raise PushNotificationError(f"{config.source}: queue {config.queue!r} is not available (sqlite, redis, memory)")


def storm_store(config: DaemonConfig, queue: Queue) -> Callable[[], StormStore]:
    """Where storm-control windows keep what they hold: in Redis beside a shared queue (a dead
    daemon's windows go back into the queue for the next owner), else ``state_dir/storm.sqlite``."""
    if isinstance(queue, RedisQueue):
        redis = queue
        return lambda: RedisStormStore(redis.client, redis.store.prefix, redis.me, redis.partition)
    path = Path(config.state_dir) / "storm.sqlite"
    return lambda: SqliteStormStore(path)


def build_instances(
    config: DaemonConfig,
    metadata: Metadata | None,
    devices: DeviceService | None = None,
    storm: dict[str, StormSettings] | None = None,
) -> list[DriverInstance]:
    """Load the configured drivers through their entry points and create every instance.

    Every mistake (unknown driver, bad setting) is raised here, at start-up.
    """
    instances = []
    for inst in config.instances:
        instances.append(build_instance(inst, config, metadata, devices, storm))
    return instances


def retry_policy(inst: InstanceConfig, config: DaemonConfig) -> RetryPolicy:
    """The instance's retry policy: the daemon's ``queue_retry_*`` settings, with an
    instance block's ``queue_retry_deadline`` taking precedence (read here, so the driver
    never sees it as a setting of its own)."""
    deadline = inst.settings.get_time("queue_retry_deadline", config.queue_retry_deadline, minimum=0.001)
    return RetryPolicy(min_delay=config.queue_retry_delay, max_delay=config.queue_retry_max_delay, deadline=deadline)


def build_instance(
    inst: InstanceConfig,
    config: DaemonConfig,
    metadata: Metadata | None,
    devices: DeviceService | None = None,
    storm: dict[str, StormSettings] | None = None,
) -> DriverInstance:
    """One instance; its storm-control settings (read here, before the driver checks its own)
    go into ``storm``."""
    retry_policy(inst, config)
    factory = find_driver(inst.driver, inst.name, inst.where, inst.settings).load()
    storm_settings = read_storm_settings(inst.settings, factory)
    if storm is not None:
        storm[inst.name] = storm_settings
    state_dir = Path(config.state_dir) / "drivers" / inst.name
    context = DriverContext(
        instance=inst.name,
        driver=inst.driver,
        settings=inst.settings,
        plugin_env=MappingProxyType(dict(config.plugin_env)),
        metadata=metadata,
        state_dir=state_dir,
        devices=devices,
    )
    return create_instance(context, factory, timeout=inst.timeout)


class Daemon:
    """One running daemon. ``await run()`` serves until SIGTERM/SIGINT or :meth:`stop`."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.metadata = open_metadata(config)
        self.devices = open_device_service(config)
        storm: dict[str, StormSettings] = {}
        self.instances = build_instances(config, self.metadata, self.devices, storm)
        self.devices.kinds = served_kinds(i.plugin for i in self.instances)
        self.queue = make_queue(config)
        self._set_retry_policies(config)
        #: What ``/healthz`` reports beyond "alive": crashed tasks, an unusable spool.
        self.health_state = Health()
        self.supervisor = Supervisor(self.health_state, counted=self._count_crash, on_fatal=self.stop)
        #: Storm control in front of the queue, for the instances that use it.
        self.storm = StormQueue(self.queue, storm_store(config, self.queue), storm, spawn=self.supervisor.start)
        self.dispatcher = Dispatcher(
            self.storm, self.instances, spawn=self.supervisor.start, log_deliveries=config.log_deliveries
        )
        self.metrics = Metrics(
            lambda: self.queue,
            lambda: self.dispatcher.instances,
            lambda: {name: inst.plugin for name, inst in self.dispatcher.instances.items()},
        )
        self.metrics.registry.register(self.devices.metrics)
        self.metrics.registry.register(self.storm.metrics)
        self.queue.observer = self.metrics
        self.queue.supervise(self.supervisor.thread_crashed)
        self._stopping = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None
        #: A SIGHUP came while a reload ran: read the config once more when it is done.
        self._reload_again = False
        self.bound: list[str] = []

    def health(self) -> dict[str, object]:
        """``/healthz``: ``status`` is ``ok``, or ``degraded`` (HTTP 503) with the problems."""
        problems = self.health_state.reasons()
        queue_problem = self.queue.problem()  # a shared queue out of reach: clears by itself
        if queue_problem is not None:
            problems.append(queue_problem)
        details: dict[str, object] = {
            "status": "degraded" if problems else "ok",
            "instances": {name: inst.driver for name, inst in self.dispatcher.instances.items()},
            "queue_depth": self.queue.depth(),
        }
        if problems:
            details["problems"] = problems
        return details

    def stop(self) -> None:
        self._stopping.set()

    def _count_crash(self, task: str) -> None:
        self.metrics.task_crashed(task)

    def _set_retry_policies(self, config: DaemonConfig) -> None:
        """Each instance's retry policy, given to the queue (whichever backend it is)."""
        self.queue.retry_policies = MappingProxyType(
            {inst.name: retry_policy(inst, config) for inst in config.instances}
        )

    def reload(self) -> None:
        """SIGHUP: re-read the config file (see :meth:`apply`). One arriving during a reload
        is not lost: the file is read again once that reload is done."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self._reload(), name="pn-reload")
        else:
            self._reload_again = True

    async def _reload(self) -> None:
        again = True
        while again:
            self._reload_again = False
            source = self.config.source
            log.info("re-reading %s (SIGHUP)", source)
            try:
                refresh_import_paths()
                new = load_config(None if source == DEFAULT_SOURCE else source)
                await self.apply(new)
            except PushNotificationError as exc:
                log.error("reload: %s; still running the previous config", exc)
            except Exception as exc:  # noqa: BLE001 - a driver failing to start is one line, the daemon goes on
                log.error("reload: %s: %s; instances started so far keep running", type(exc).__name__, exc)
            again = self._reload_again

    async def apply(self, new: DaemonConfig) -> None:
        """Start added instances, stop removed ones, restart changed ones.

        Accepted work is never lost to a reload: a restarted instance's transactions, and
        those accepted while it restarts, go to its successor of the same name (see
        :meth:`Dispatcher.replace`); a removed instance's stay in a durable queue for when it
        comes back. Every new instance is built (its settings checked) before anything stops;
        one whose ``driver_init`` fails stays stopped, and the next reload tries it again.
        """
        old = {i.name: i for i in self.config.instances}
        wanted = {i.name: i for i in new.instances}
        changed = [n for n in wanted if n in old and _fingerprint(old[n]) != _fingerprint(wanted[n])]
        removed = [n for n in old if n not in wanted]
        added = [n for n in wanted if n not in old]
        storm: dict[str, StormSettings] = {}
        built = [build_instance(wanted[n], new, self.metadata, self.devices, storm) for n in added + changed]
        self._set_retry_policies(new)
        self.dispatcher.log_deliveries = new.log_deliveries
        self.storm.configure(storm)
        failed: list[str] = []
        try:
            await self.dispatcher.replace(removed + changed, built)
        except PushNotificationError as exc:
            failed = [n for n in added + changed if n not in self.dispatcher.instances]
            log.error("reload: %s; not running until a reload starts it: %s", exc, ", ".join(failed))
        self.instances = list(self.dispatcher.instances.values())
        self.devices.kinds = served_kinds(i.plugin for i in self.instances)
        self.devices.expiry = new.device_expiry
        for key in RESTART_ONLY:
            if key != "listen" and getattr(new, key) != getattr(self.config, key):  # --listen may override it
                log.warning("reload: %s changed; restart the daemon to apply it", key)
        self.config = replace(
            new,
            instances=tuple(i for i in new.instances if i.name not in failed),
            **{key: getattr(self.config, key) for key in RESTART_ONLY},
        )
        log.info(
            "reloaded %s: added %s; removed %s; restarted %s",
            new.source,
            ", ".join(n for n in added if n not in failed) or "none",
            ", ".join(removed) or "none",
            ", ".join(n for n in changed if n not in failed) or "none",
        )

    async def _start_ingress(self, ingress: IngressServer) -> None:
        try:
            await ingress.start(listen_address(self.config.listen))
        except OSError as exc:
            raise PushNotificationError(
                f"cannot listen on {self.config.listen}: {exc.strerror or exc};"
                " choose another address with --listen or the 'listen' setting"
            ) from None
        self.bound.extend(ingress.bound)

    async def run(self) -> None:
        """Serve until stopped; raises :class:`PushNotificationError` (non-zero exit) when a
        task kept crashing, after a clean shutdown."""
        # The first line: which config is in use (a bare `serve` as root reads the system one).
        log.info("push-notification %s starting; config: %s", version("push-notification"), self.config.source)
        loop = asyncio.get_running_loop()
        self.supervisor.bind()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        # A shared queue that cannot be used is one line at start-up, before anything runs.
        await self.queue.start()
        spool = None
        ingress = None
        try:
            problem = spool_access_problem(self.config.spool_dir) if self.config.spool_dir else None
            if problem is not None:  # who the daemon runs as and the fix, in one line, before anything starts
                raise PushNotificationError(problem)
            await self.dispatcher.start()
            self.supervisor.start("device expiry", self.devices.expire_forever)
            limits = IngressLimits.of(self.config)
            app = Ingress(
                self.queue,
                token=self.config.ingress_token,
                health=self.health,
                metrics=self.metrics.exposition,
                limits=limits,
                devices=DeviceRoutes(self.devices),
            )
            ingress = IngressServer(app, limits)
            if self.config.spool_dir:
                spool = SpoolReader(
                    self.config.spool_dir, self.queue, max_size=self.config.spool_max_size, health=self.health_state
                )
            await self._start_ingress(ingress)
            if self.queue.depth():
                log.info("queue: %d delivery(ies) pending from the last run", self.queue.depth())
            if spool is not None:
                await spool.start(self.supervisor.start)
                log.info(
                    "reading the Dovecot bridge spool %s; %d spooled transaction(s) waiting to be taken in",
                    spool.spool_dir,
                    spooled_files(spool.new_dir),
                )
            names = ", ".join(f"{i.name} ({i.driver})" for i in self.instances) or "none"
            log.info(
                "listening on %s; driver instances: %s; config: %s",
                ", ".join(self.bound) or self.config.listen,
                names,
                self.config.source,
            )
            tune_garbage_collector()
            await self._stopping.wait()
            log.info("shutting down: finishing in-flight work")
        finally:
            await self._shutdown(spool, ingress)
        if self.supervisor.fatal is not None:
            raise PushNotificationError(self.supervisor.fatal)

    async def _shutdown(self, spool: SpoolReader | None, ingress: IngressServer | None) -> None:
        """Stop taking work, deliver what is quick to deliver, close the queue: every step
        runs even if one before it fails (the queue is always closed)."""
        if spool is not None:
            await _step("stopping the spool reader", spool.stop())
        if ingress is not None:
            await _step("stopping the ingress", ingress.close())
        if self._reloading is not None and not self._reloading.done():
            # A reload midway would race the shutdown's own stopping of the instances.
            self._reload_again = False
            await _step("finishing a reload", asyncio.wait_for(self._reloading, SHUTDOWN_GRACE))
        # A durable queue keeps what is left for the next start: no need to wait long.
        grace = DURABLE_SHUTDOWN_GRACE if self.queue.durable else SHUTDOWN_GRACE
        left: int | None = None
        if self.supervisor.fatal is None and not await _step("finishing work", self.dispatcher.drain(grace), False):
            left = self.queue.depth()
            if not self.queue.durable:
                log.warning("shutdown: %s still queued after %gs; dropped", self._queued_summary(left), grace)
        await _step("stopping the driver instances", self.dispatcher.stop(timeout=0))
        await _step("stopping supervised tasks", self.supervisor.stop())
        await _step("closing the queue", self.storm.close())
        await _step("closing the device registry", self.devices.registry.close())
        if left is not None and self.queue.durable:
            log.info("shutdown: %s stay queued for the next start", self._queued_summary(left))
        try:
            self.metadata.close()
        except Exception as exc:  # noqa: BLE001 - one line, shutdown goes on
            log.error("shutdown: closing the metadata store failed: %s", describe_error(exc))
        log.info("stopped")

    def _queued_summary(self, deliveries: int) -> str:
        """``2 transaction(s) (6 delivery(ies) to driver instances)``: a transaction owed to
        three instances is three deliveries. The sqlite queue is counted in its (closed) file."""
        transactions: int | None = None
        if isinstance(self.queue, MemoryQueue):
            transactions = self.queue.pending_transactions()
        elif isinstance(self.queue, SqliteQueue):
            try:
                with contextlib.closing(sqlite3.connect(f"file:{self.queue.path}?mode=ro", uri=True)) as conn:
                    transactions, deliveries = pending_summary(conn)
            except sqlite3.Error as exc:
                log.debug("shutdown: cannot count the queue file: %s", exc)
        shown = f"{deliveries} delivery(ies) to driver instances"
        return shown if transactions is None else f"{transactions} transaction(s) ({shown})"


#: Collect the youngest generation after this many new container objects, not CPython's 700:
#: every notification makes a few dozen (transaction, events, hook arguments), so the default
#: ran a collection every few notifications and cost the dispatcher a quarter of its time
#: (benchmarks/dispatch.py). Cycles are still found, a little later; memory stays bounded.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_garbage_collector() -> None:
    """Leave what start-up built (modules, drivers, the app: most of the heap) out of every
    later garbage collection, which would otherwise walk all of it again and again while
    notifications come and go, and collect less often (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def spooled_files(new_dir: Path) -> int:
    """How many files wait in the spool's ``new/`` (for the start-up line)."""
    try:
        with os.scandir(new_dir) as entries:
            return sum(1 for entry in entries if not entry.name.startswith("."))
    except OSError:
        return 0


async def _step(what: str, step: Awaitable[T], failed: T | None = None) -> T | None:
    """Await one shutdown step; a failure is one log line, and the next step still runs."""
    try:
        return await step
    except Exception as exc:
        log.error("shutdown: %s failed: %s", what, describe_error(exc))
        log.debug("shutdown: %s traceback", what, exc_info=exc)
        return failed


def _fingerprint(instance: InstanceConfig) -> tuple[object, ...]:
    """What makes two configs of an instance the same (not where they were written)."""
    return instance.driver, instance.timeout, _settings_fingerprint(instance.settings)


def _settings_fingerprint(settings: Settings) -> tuple[object, ...]:
    sections = sorted((key, _settings_fingerprint(sub)) for key, sub in settings.sections.items())
    return tuple(sorted(settings.as_dict().items())), tuple(sections)
