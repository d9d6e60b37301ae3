"""The registry as the daemon runs it: registration from every channel, what drivers see
(:class:`push_notification.drivers.Devices`), removals counted, expiry on a timer.

Logs name a device by id, kind and user, never by its address or keys: a push token is a
credential that lets anyone wake the device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping

from prometheus_client import CollectorRegistry, Counter

from push_notification.devices.contract import DEFAULT_EXPIRY, Device, DeviceError, DeviceKind, DeviceRegistry
from push_notification.devices.registration import METADATA_KEYS, Registration, metadata_registration
from push_notification.drivers import PushDevice
from push_notification.transaction import Transaction

log = logging.getLogger("push_notification.devices")

#: A success is written at most this often per device (a push per mail must not be a write per mail).
SUCCESS_WRITE_INTERVAL = 300.0
#: A device METADATA carries is refreshed at most this often while the same value comes by.
METADATA_REFRESH_INTERVAL = 86400.0
#: How often devices past ``device_expiry`` are removed.
EXPIRY_INTERVAL = 3600.0


class DeviceService:
    """Registration, lookup and lifecycle over a :class:`DeviceRegistry`."""

    def __init__(
        self,
        registry: DeviceRegistry,
        kinds: Mapping[str, DeviceKind],
        *,
        expiry: float = DEFAULT_EXPIRY,
    ) -> None:
        self.registry = registry
        self.kinds = dict(kinds)
        self.expiry = expiry
        #: The registry's counters; the daemon adds them to its /metrics.
        self.metrics = CollectorRegistry(auto_describe=True)
        self._registered = Counter(
            "push_notification_devices_registered",
            "Device registrations (new or refreshed), by channel (http, cli, metadata).",
            ["channel"],
            registry=self.metrics,
        )
        self._removed = Counter(
            "push_notification_devices_removed",
            "Devices removed, by reason (gone: the push service said so; expired; deleted).",
            ["reason"],
            registry=self.metrics,
        )
        #: (user, key) → (value, when taken in), so a METADATA value passing by on every
        #: transaction is written once a day, not once per mail.
        self._seen: dict[tuple[str, str], tuple[str, float]] = {}

    async def register(self, registration: Registration, channel: str) -> Device:
        device = await self.registry.register(
            registration.user, registration.kind, registration.fields, label=registration.label
        )
        self._registered.labels(channel).inc()
        log.info("device %s (%s) of user %s registered through %s", device.id, device.kind, device.user, channel)
        return device

    async def remove(self, device_id: str) -> bool:
        removed = await self.registry.remove(device_id)
        if removed:
            self._removed.labels("deleted").inc()
        return removed

    # -- what drivers see (push_notification.drivers.Devices) ---------------------------

    async def for_transaction(self, txn: Transaction, kinds: Collection[str]) -> list[PushDevice]:
        if txn.metadata:
            await self._take_in_metadata(txn)
        return list(await self.registry.list(txn.user.username, kinds))

    async def succeeded(self, device: PushDevice) -> None:
        last = device.last_success if isinstance(device, Device) and device.failures == 0 else None
        if last is not None and time.time() - last < SUCCESS_WRITE_INTERVAL:
            return
        await self.registry.record(device.id, success=True)

    async def failed(self, device: PushDevice) -> None:
        await self.registry.record(device.id, success=False)

    async def gone(self, device: PushDevice, reason: str) -> None:
        if await self.registry.remove(device.id):
            self._removed.labels("gone").inc()
            log.info("device %s (%s) of user %s removed: %s", device.id, device.kind, device.user, reason)

    # -- METADATA and expiry -----------------------------------------------------------

    async def _take_in_metadata(self, txn: Transaction) -> None:
        user = txn.user.username
        now = time.time()
        for key in METADATA_KEYS:
            value = txn.metadata.get(key)
            if not value:
                continue
            seen = self._seen.get((user, key))
            if seen is not None and seen[0] == value and now - seen[1] < METADATA_REFRESH_INTERVAL:
                continue
            self._seen[user, key] = (value, now)
            try:
                registration = metadata_registration(user, key, value, self.kinds)
            except DeviceError as exc:
                log.warning("METADATA %s of user %s does not register a device: %s", key, user, exc)
                continue
            await self.register(registration, "metadata")

    async def expire(self, now: float | None = None) -> int:
        """Remove devices nobody refreshed within ``device_expiry``."""
        count = await self.registry.expire((time.time() if now is None else now) - self.expiry)
        if count:
            self._removed.labels("expired").inc(count)
            log.info("%d device(s) expired: not refreshed for %gs (device_expiry)", count, self.expiry)
        return count

    async def expire_forever(self, interval: float = EXPIRY_INTERVAL) -> None:
        """The daemon's expiry timer; a failing store is logged, and tried again next time."""
        while True:
            try:
                await self.expire()
            except Exception as exc:  # noqa: BLE001 - the timer must outlive a bad moment of the store
                log.error("device expiry failed: %s: %s; trying again in %gs", type(exc).__name__, exc, interval)
            await asyncio.sleep(interval)
