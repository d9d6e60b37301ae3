"""The ``webpush`` driver: a content-free wake-up to each of the user's Web Push subscriptions
when a transaction passes the wake filter (by default: new mail in INBOX).

Each subscription gets its own encrypted message (RFC 8291) with a VAPID signature (RFC 8292),
all of a user's devices at once. A gone subscription (404/410) is removed from the registry;
a push service asking to wait (429/5xx) makes the queue retry the transaction later, without
pushing again to the devices that already got it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import ClassVar

from push_notification import DriverContext, hookimpl
from push_notification.devices import DeviceKind
from push_notification.devices.payload import PayloadBuilder
from push_notification.devices.wake import read_wake_filter
from push_notification.drivers import Devices, PushDevice
from push_notification.errors import ConfigError, PermanentError
from push_notification.http import (
    HttpPermanentError,
    HttpRequest,
    HttpRetryableError,
    HttpSender,
    PartialDeliveries,
    RetryPolicy,
    safe_url,
)
from push_notification.templates import TemplateError
from push_notification.transaction import Transaction
from py_vapid import VapidException

from .config import read_config
from .message import encrypt, topic
from .subscription import parse_subscription

KIND = "webpush"
#: Statuses meaning the subscription no longer exists (expired, unsubscribed).
GONE = (404, 410)
#: A push service's Retry-After is waited for by the queue, never by a worker; the statuses
#: that no retry can fix say why.
PUSH_SERVICE_POLICY = RetryPolicy(
    max_wait_in_place=0.0,
    status_hints=MappingProxyType(
        {
            413: "the encrypted payload is too large for this push service",
            401: "the push service refused the VAPID signature: check vapid_key and vapid_subject",
            403: "the push service refused the VAPID signature: check vapid_key and vapid_subject",
            404: "the subscription expired or was unsubscribed",
            410: "the subscription expired or was unsubscribed",
        }
    ),
)


class WebPushDriver:
    """Web Push and UnifiedPush: see the README for settings and the service worker."""

    name = "webpush"
    #: The device kinds this driver serves, with the parser that checks a registration.
    device_kinds: ClassVar[Mapping[str, DeviceKind]] = MappingProxyType({KIND: parse_subscription})
    #: Storm control is on by default for drivers that wake devices.
    storm_defaults: ClassVar[Mapping[str, str]] = MappingProxyType({"coalesce": "1s", "defer_non_new": "30s"})

    def __init__(self, ctx: DriverContext) -> None:
        if ctx.devices is None:
            raise ConfigError(f"push_notification {ctx.instance}: webpush needs the daemon's device registry")
        self.devices: Devices = ctx.devices
        self.log = ctx.log
        self.config = read_config(ctx.settings)
        self.wake = read_wake_filter(ctx.settings)
        try:
            self.payloads = PayloadBuilder(ctx.settings, ctx.state_dir)
        except TemplateError as exc:
            raise ConfigError(f"push_notification {ctx.instance}: {exc}") from None
        ctx.settings.check_unknown()
        self.sender = HttpSender(self.config.http, PUSH_SERVICE_POLICY)
        #: Devices already reached of transactions that failed part-way, skipped on their retry.
        self.partial = PartialDeliveries()
        self._headers = {
            "TTL": str(self.config.ttl),
            "Urgency": self.config.urgency,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        #: Pushes accepted by push services since start.
        self.pushed = 0

    @hookimpl
    async def driver_init(self) -> None:
        await self.sender.start()

    @hookimpl
    async def driver_deinit(self) -> None:
        await self.sender.close()

    @hookimpl
    async def end_txn(self, txn: Transaction, success: bool) -> None:
        events = self.wake.wakes(txn)
        if not events:
            return
        devices = await self.devices.for_transaction(txn, (KIND,))
        if not devices:
            return
        try:
            payload = json.dumps(self.payloads.build(txn, events), separators=(",", ":")).encode()
        except TemplateError as exc:
            raise PermanentError(f"title_template/body_template: {exc.describe()}") from None
        headers = self._headers
        if self.config.topic:
            headers = {**headers, "Topic": topic(txn.user.username, txn.mailbox)}
        parts = [(device.id, "", partial(self._push, device, payload, headers)) for device in devices]
        await self.partial.send(txn.id, parts, ordered=False)

    async def _push(self, device: PushDevice, payload: bytes, headers: dict[str, str]) -> None:
        """One encrypted, signed message to one subscription; a gone one is removed."""
        label = f"push to device {device.id} ({safe_url(device.address)})"
        try:
            signed = {**headers, "Authorization": self.config.signer.authorization(device.address)}
            body = encrypt(payload, device)
        except (VapidException, ValueError, KeyError) as exc:
            await self.devices.failed(device)
            raise PermanentError(f"{label}: cannot sign or encrypt for this subscription: {exc}") from None
        try:
            await self.sender.send(HttpRequest("POST", device.address, body, signed, label))
        except HttpPermanentError as exc:
            if exc.status in GONE:
                await self.devices.gone(device, str(exc))
                return
            await self.devices.failed(device)
            raise
        except HttpRetryableError:
            await self.devices.failed(device)
            raise
        self.pushed += 1
        await self.devices.succeeded(device)
