"""The daemon: config → driver instances → dispatcher over a queue, behind the HTTP ingress.

Stateless apart from its queue (and the metadata store), so several daemons can serve many
Dovecot backends once the queue is a shared engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

from .config import DaemonConfig, InstanceConfig
from .dispatch import Dispatcher
from .drivers import DriverContext, DriverInstance, create_instance, find_driver
from .errors import PushNotificationError
from .ingress import create_app, parse_listen
from .metadata import MetadataStore
from .queue import MemoryQueue, Queue

log = logging.getLogger("push_notification.daemon")

#: How long shutdown waits for queued work to be delivered.
SHUTDOWN_GRACE = 30.0


def make_queue(config: DaemonConfig) -> Queue:
    """The queue backend named by the ``queue`` setting."""
    if config.queue == "memory":
        return MemoryQueue(config.max_pending)
    raise PushNotificationError(f"{config.source}: queue {config.queue!r} is not available (use: memory)")


def build_instances(config: DaemonConfig, metadata: MetadataStore | None) -> list[DriverInstance]:
    """Load the configured drivers through their entry points and create every instance.

    Every mistake (unknown driver, bad setting) is raised here, at start-up.
    """
    instances = []
    for inst in config.instances:
        instances.append(build_instance(inst, config, metadata))
    return instances


def build_instance(inst: InstanceConfig, config: DaemonConfig, metadata: MetadataStore | None) -> DriverInstance:
    factory = find_driver(inst.driver, inst.name, inst.where).load()
    state_dir = Path(config.state_dir) / "drivers" / inst.name
    context = DriverContext(
        instance=inst.name,
        driver=inst.driver,
        settings=inst.settings,
        plugin_env=MappingProxyType(dict(config.plugin_env)),
        metadata=metadata,
        state_dir=state_dir,
    )
    return create_instance(context, factory, timeout=inst.timeout)


class Daemon:
    """One running daemon. ``await run()`` serves until SIGTERM/SIGINT or :meth:`stop`."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.metadata = MetadataStore(config.metadata_path)
        self.instances = build_instances(config, self.metadata)
        self.queue = make_queue(config)
        self.dispatcher = Dispatcher(self.queue, self.instances)
        self._stopping = asyncio.Event()
        self.bound: list[str] = []

    def health(self) -> dict[str, object]:
        return {
            "instances": {name: inst.driver for name, inst in self.dispatcher.instances.items()},
            "queue_depth": self.queue.depth(),
        }

    def stop(self) -> None:
        self._stopping.set()

    async def _start_site(self, runner: web.AppRunner) -> web.BaseSite:
        where = parse_listen(self.config.listen)
        site: web.BaseSite
        if isinstance(where, str):
            site = web.UnixSite(runner, where)
        else:
            site = web.TCPSite(runner, where[0], where[1])
        try:
            await site.start()
        except OSError as exc:
            raise PushNotificationError(
                f"cannot listen on {self.config.listen}: {exc.strerror or exc};"
                " choose another address with --listen or the 'listen' setting"
            ) from None
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or []:
            name = sock.getsockname()
            self.bound.append(name if isinstance(name, str) else f"{name[0]}:{name[1]}")
        return site

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        await self.dispatcher.start()
        app = create_app(self.dispatcher.submit, token=self.config.ingress_token, health=self.health)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await self._start_site(runner)
            names = ", ".join(f"{i.name} ({i.driver})" for i in self.instances) or "none"
            log.info(
                "listening on %s; driver instances: %s; config: %s",
                ", ".join(self.bound) or self.config.listen,
                names,
                self.config.source,
            )
            await self._stopping.wait()
            log.info("shutting down: finishing in-flight work")
        finally:
            await runner.shutdown()
            await runner.cleanup()
            if not await self.dispatcher.drain(SHUTDOWN_GRACE):
                log.warning("shutdown: %d transaction(s) still queued after %gs", self.queue.depth(), SHUTDOWN_GRACE)
            await self.dispatcher.stop(timeout=0)
            await self.queue.close()
            self.metadata.close()
            log.info("stopped")
