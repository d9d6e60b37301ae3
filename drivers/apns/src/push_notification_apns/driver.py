"""The ``apns`` driver: a wake-up to each of the user's Apple devices when a transaction passes
the wake filter (by default: new mail in INBOX), all devices at once over one HTTP/2 connection.

Apple's answers: 410 ``Unregistered`` and 400 ``BadDeviceToken`` remove the device; 429 and 5xx
are retried by the queue (skipping devices already reached); ``403 ExpiredProviderToken`` makes
a new token and sends again at once; any other refusal is a one-line permanent error naming
Apple's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from push_notification.devices import DeviceKind
from push_notification.devices.waking import DeviceGone, WakingDriver
from push_notification.drivers import PushDevice
from push_notification.errors import PermanentError
from push_notification.http import HttpPermanentError, HttpRequest, HttpSender
from push_notification.settings import Settings
from push_notification.transaction import Transaction

from .client import POLICY, Http2Transport, apple_reason
from .config import read_config
from .device import parse_token
from .message import MAX_PAYLOAD, encode, headers

KIND = "apns"
#: Apple's reasons meaning the token will never work again.
GONE = frozenset({(410, "Unregistered"), (400, "BadDeviceToken")})


class ApnsDriver(WakingDriver):
    """Apple Push Notification service: see the README for settings and payloads."""

    name = "apns"
    kind = KIND
    device_kinds: ClassVar[Mapping[str, DeviceKind]] = MappingProxyType({KIND: parse_token})

    def connect(self, settings: Settings) -> HttpSender:
        self.config = read_config(settings)
        self.sender = HttpSender(self.config.http, POLICY, transport=Http2Transport(self.config.http))
        return self.sender

    async def push(self, device: PushDevice, txn: Transaction, payload: Mapping[str, Any]) -> None:
        config = self.config
        body = encode(config.push_type, payload)
        environment = device.keys.get("environment", config.environment)
        label = f"push to device {device.id} (apns {environment})"
        if len(body) > MAX_PAYLOAD:
            raise PermanentError(f"{label}: the payload is {len(body)} bytes, more than APNs takes ({MAX_PAYLOAD}):"
                                 " shorten title_template/body_template")  # fmt: skip
        url = f"{config.endpoints[environment]}/3/device/{device.address}"
        request = headers(config.topic, config.push_type, config.ttl, txn.user.username, txn.mailbox,
                          collapse=config.collapse)  # fmt: skip
        for attempt in (1, 2):
            authorization = config.token.authorization() if config.token is not None else ""
            if authorization:
                request["authorization"] = authorization
            try:
                await self.sender.send(HttpRequest("POST", url, body, request, label))
                return
            except HttpPermanentError as exc:
                reason = apple_reason(exc.response)
                if (exc.status, reason) in GONE:
                    raise DeviceGone(str(exc)) from None
                if reason != "ExpiredProviderToken" or config.token is None or attempt == 2:
                    raise
                self.log.info("APNs says the provider token expired; sending again with a new one")
                config.token.expired(authorization)
