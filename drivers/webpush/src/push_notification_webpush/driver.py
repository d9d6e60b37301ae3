"""The ``webpush`` driver: a content-free wake-up to each of the user's Web Push subscriptions
when a transaction passes the wake filter (by default: new mail in INBOX).

Each subscription gets its own encrypted message (RFC 8291) with a VAPID signature (RFC 8292),
all of a user's devices at once (the core's :class:`WakingDriver` does the filter, the payload,
the fan-out and the registry's bookkeeping). A gone subscription (404/410) is removed from the
registry; a push service asking to wait (429/5xx) makes the queue retry the transaction later,
without pushing again to the devices that already got it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from push_notification.devices import DeviceKind
from push_notification.devices.waking import DeviceGone, WakingDriver, collapse_key
from push_notification.drivers import PushDevice
from push_notification.errors import PermanentError
from push_notification.http import HttpPermanentError, HttpRequest, HttpSender, RetryPolicy, safe_url
from push_notification.settings import Settings
from push_notification.transaction import Transaction
from py_vapid import VapidException

from .config import read_config
from .message import encrypt
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


class WebPushDriver(WakingDriver):
    """Web Push and UnifiedPush: see the README for settings and the service worker."""

    name = "webpush"
    kind = KIND
    device_kinds: ClassVar[Mapping[str, DeviceKind]] = MappingProxyType({KIND: parse_subscription})

    def connect(self, settings: Settings) -> HttpSender:
        config = self.config = read_config(settings)
        #: RFC 8030 headers every message carries (``Topic`` and ``Authorization`` are per message).
        self.headers = {"TTL": str(config.ttl), "Urgency": config.urgency, "Content-Encoding": "aes128gcm",
                        "Content-Type": "application/octet-stream"}  # fmt: skip
        self.sender = HttpSender(config.http, PUSH_SERVICE_POLICY)
        return self.sender

    async def push(self, device: PushDevice, txn: Transaction, payload: Mapping[str, Any]) -> None:
        """One encrypted, signed message to one subscription."""
        label = f"push to device {device.id} ({safe_url(device.address)})"
        headers = self.headers
        if self.config.topic:
            headers = {**headers, "Topic": collapse_key(txn.user.username, txn.mailbox)}
        try:
            headers = {**headers, "Authorization": self.config.signer.authorization(device.address)}
            body = encrypt(json.dumps(payload, separators=(",", ":")).encode(), device)
        except (VapidException, ValueError, KeyError) as exc:
            raise PermanentError(f"{label}: cannot sign or encrypt for this subscription: {exc}") from None
        try:
            await self.sender.send(HttpRequest("POST", device.address, body, headers, label))
        except HttpPermanentError as exc:
            if exc.status in GONE:
                raise DeviceGone(str(exc)) from None
            raise
