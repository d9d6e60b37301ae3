"""A testing kit for driver authors: build events and transactions, run them through real
driver instances in-process with the real dispatcher.

It is a pytest plugin (loaded automatically once ``push-notification`` is installed), with
fixtures ``make_event``, ``make_transaction`` and ``driver_harness``; the same helpers are
plain functions for other test runners::

    from push_notification.testing import DriverHarness, make_event, make_transaction

    async def test_my_driver_sees_new_mail():
        async with DriverHarness(MyDriver, {"url": "http://127.0.0.1:9/"}) as harness:
            await harness.send(make_transaction(make_event("MessageNew", uid=1)))
        assert harness.plugin.sent == [...]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

from push_notification.devices.kinds import served_kinds
from push_notification.devices.service import DeviceService
from push_notification.devices.sqlite import SqliteDeviceRegistry
from push_notification.dispatch import Dispatcher
from push_notification.drivers import DriverContext, DriverInstance, create_instance, find_driver
from push_notification.events import Event, MessageEvent, event_from_dict, event_type
from push_notification.queue import MemoryQueue
from push_notification.server.metadata import MetadataStore
from push_notification.settings import Settings
from push_notification.transaction import MailboxStatus, Transaction, User

__all__ = ["DriverHarness", "make_event", "make_transaction", "run_transactions"]

_UIDVALIDITY = 1700000000


def make_event(name: str, mailbox: str = "INBOX", **fields: Any) -> Event:
    """An event with sensible defaults (``uid=1``, a fixed UIDVALIDITY for message events).

    Pass ``from_="..."`` or ``**{"from": "..."}`` for the From header.
    """
    data: dict[str, Any] = {"name": name, "mailbox": mailbox}
    if "from_" in fields:
        fields["from"] = fields.pop("from_")
    if issubclass(event_type(name), MessageEvent):
        data.update(uid=1, uid_validity=_UIDVALIDITY)
    data.update(fields)
    return event_from_dict(data)


def make_transaction(
    *events: Event,
    user: str | User = "alice",
    mailbox: str | None = None,
    success: bool = True,
    metadata: Mapping[str, str] | None = None,
    status: MailboxStatus | Mapping[str, int] | None = None,
    id: str | None = None,
) -> Transaction:
    """A transaction of ``events`` (its mailbox is the first event's unless given)."""
    if mailbox is None:
        mailbox = events[0].mailbox if events else "INBOX"
    if isinstance(user, str):
        user = User(username=user, service="lmtp")
    if isinstance(status, Mapping):
        status = MailboxStatus(**status)
    extra: dict[str, Any] = {}
    if id is not None:
        extra["id"] = id
    return Transaction(
        user=user,
        mailbox=mailbox,
        events=tuple(events),
        success=success,
        metadata=MappingProxyType(dict(metadata or {})),
        status=status,
        **extra,
    )


class DriverHarness:
    """One driver instance behind a real dispatcher, for the duration of an ``async with``.

    ``factory`` is the driver class, or a driver name to load through its entry point (the
    path the daemon takes). ``settings`` are the instance block's keys. A driver that declares
    ``device_kinds`` gets an in-memory device registry, ``harness.devices``, to register the
    devices it should wake (``await harness.devices.register(...)``).
    """

    def __init__(
        self,
        factory: Callable[[DriverContext], object] | str,
        settings: Mapping[str, Any] | None = None,
        *,
        instance: str = "test",
        plugin_env: Mapping[str, str] | None = None,
        metadata: MetadataStore | None = None,
        state_dir: Path | None = None,
        timeout: float = 30.0,
        devices: DeviceService | None = None,
    ) -> None:
        if isinstance(factory, str):
            driver = find_driver(factory, instance)
            factory, driver_name = driver.load(), driver.name
        else:
            driver_name = getattr(factory, "name", getattr(factory, "__name__", "driver"))
        self.metadata = metadata if metadata is not None else MetadataStore()
        kinds = served_kinds([factory])
        self.devices = devices if devices is not None else DeviceService(SqliteDeviceRegistry(), kinds)
        self.context = DriverContext(
            instance=instance,
            driver=str(driver_name),
            settings=Settings.from_dict(instance, settings or {}),
            plugin_env=MappingProxyType(dict(plugin_env or {})),
            metadata=self.metadata,
            state_dir=state_dir,
            devices=self.devices if kinds or devices is not None else None,
        )
        self.instance: DriverInstance = create_instance(self.context, factory, timeout=timeout)
        self.plugin: Any = self.instance.plugin
        self.dispatcher = Dispatcher(MemoryQueue(), [self.instance])

    async def __aenter__(self) -> DriverHarness:
        await self.dispatcher.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.dispatcher.stop()

    async def send(self, *transactions: Transaction, wait: bool = True) -> None:
        """Put transactions into the queue; with ``wait`` (the default) return once they were
        delivered."""
        queue = self.dispatcher.queue
        for txn in transactions:
            await queue.put(txn)
        if wait:
            await self.dispatcher.drain()


def run_transactions(
    factory: Callable[[DriverContext], object] | str,
    transactions: Iterable[Transaction],
    settings: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Synchronous helper: run ``transactions`` through a fresh instance; returns the plugin."""

    async def run() -> Any:
        async with DriverHarness(factory, settings, **options) as harness:
            await harness.send(*transactions)
        return harness.plugin

    return asyncio.run(run())
