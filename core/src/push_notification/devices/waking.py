"""What every driver that wakes devices does around its one push: filter, look up, build the
content-free payload, push to each device at once, and keep the registry's view of each device.

A driver subclasses :class:`WakingDriver`, names its ``kind`` and ``device_kinds``, reads its
own settings in :meth:`WakingDriver.connect` (which returns its client to the push service;
unknown settings are refused after it) and implements :meth:`WakingDriver.push` for one
device, raising :class:`DeviceGone` when the push service says the device no longer exists
(Web Push 404/410, APNs 410, FCM UNREGISTERED), ``RetryableError`` for what may pass and
``PermanentError`` for the rest. A retried transaction skips the devices it already reached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from push_notification import DriverContext, hookimpl
from push_notification.devices.contract import DeviceKind
from push_notification.devices.payload import PayloadBuilder
from push_notification.devices.vapid import b64url
from push_notification.devices.wake import read_wake_filter
from push_notification.drivers import Devices, PushDevice
from push_notification.errors import ConfigError, DriverError, PermanentError
from push_notification.http import PartialDeliveries
from push_notification.settings import Settings
from push_notification.templates import TemplateError
from push_notification.transaction import Transaction


class DeviceGone(PermanentError):
    """The push service says the device no longer exists: it is removed from the registry."""


def collapse_key(user: str, mailbox: str, length: int = 32) -> str:
    """An opaque id per user and mailbox (base64url of a hash, ``length`` characters): a newer
    wake-up replaces a pending one at the push service, which learns neither name."""
    return b64url(hashlib.sha256(f"{user}\0{mailbox}".encode()).digest())[:length]


class Connection(Protocol):
    """The driver's client to its push service, opened and closed with the instance."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class WakingDriver:
    """Base of the device drivers; see the module docstring."""

    #: The device kind this driver pushes to (``webpush``, ``apns``, ``fcm``).
    kind: ClassVar[str]
    #: The device kinds this driver serves, with the parser that checks a registration.
    device_kinds: ClassVar[Mapping[str, DeviceKind]]
    #: Storm control is on by default for drivers that wake devices.
    storm_defaults: ClassVar[Mapping[str, str]] = MappingProxyType({"coalesce": "1s", "defer_non_new": "30s"})

    def __init__(self, ctx: DriverContext) -> None:
        if ctx.devices is None:
            raise ConfigError(f"push_notification {ctx.instance}: {ctx.driver} needs the daemon's device registry")
        self.devices: Devices = ctx.devices
        self.log = ctx.log
        self.wake = read_wake_filter(ctx.settings)
        try:
            self.payloads = PayloadBuilder(ctx.settings, ctx.state_dir)
        except TemplateError as exc:
            raise ConfigError(f"push_notification {ctx.instance}: {exc}") from None
        #: Devices already reached of transactions that failed part-way, skipped on their retry.
        self.partial = PartialDeliveries()
        #: Pushes the push service accepted since start.
        self.pushed = 0
        #: Started at ``driver_init``, closed at ``driver_deinit``.
        self.connection: Connection = self.connect(ctx.settings)
        ctx.settings.check_unknown()

    def connect(self, settings: Settings) -> Connection:
        """Read the driver's own settings (one line per mistake); its client to the push service."""
        raise NotImplementedError

    @hookimpl
    async def driver_init(self) -> None:
        await self.connection.start()

    @hookimpl
    async def driver_deinit(self) -> None:
        await self.connection.close()

    async def push(self, device: PushDevice, txn: Transaction, payload: Mapping[str, Any]) -> None:
        """Push ``payload`` (content-free, plus any templated title/body) to one device."""
        raise NotImplementedError

    @hookimpl
    async def end_txn(self, txn: Transaction, success: bool) -> None:
        events = self.wake.wakes(txn)
        if not events:
            return
        devices = await self.devices.for_transaction(txn, (self.kind,))
        if not devices:
            return
        try:
            payload = self.payloads.build(txn, events)
        except TemplateError as exc:
            raise PermanentError(f"title_template/body_template: {exc.describe()}") from None
        parts = [(device.id, "", partial(self._deliver, device, txn, payload)) for device in devices]
        await self.partial.send(txn.id, parts, ordered=False)

    async def _deliver(self, device: PushDevice, txn: Transaction, payload: Mapping[str, Any]) -> None:
        try:
            await self.push(device, txn, payload)
        except DeviceGone as exc:
            await self.devices.gone(device, str(exc))
            return
        except DriverError:
            await self.devices.failed(device)
            raise
        self.pushed += 1
        await self.devices.succeeded(device)
