"""The ``fcm`` driver: a wake-up to each of the user's Android devices when a transaction
passes the wake filter (by default: new mail in INBOX), all devices at once, through the
core's shared HTTP sender.

FCM's answers: 404 ``UNREGISTERED`` removes the device; 429 and 5xx are retried by the queue
after any ``Retry-After`` (skipping devices already reached); a 401 fetches a new access token
and sends again at once; anything else (``INVALID_ARGUMENT``...) is a one-line permanent error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from push_notification.devices import DeviceKind
from push_notification.devices.waking import DeviceGone, WakingDriver
from push_notification.drivers import PushDevice
from push_notification.http import HttpPermanentError, HttpRequest, HttpSender
from push_notification.settings import Settings
from push_notification.transaction import Transaction

from .config import read_config
from .credentials import AccessTokens
from .device import parse_token
from .message import encode
from .policy import POLICY

KIND = "fcm"


class FcmDriver(WakingDriver):
    """Firebase Cloud Messaging HTTP v1: see the README for settings and payloads."""

    name = "fcm"
    kind = KIND
    device_kinds: ClassVar[Mapping[str, DeviceKind]] = MappingProxyType({KIND: parse_token})

    def connect(self, settings: Settings) -> HttpSender:
        self.config = read_config(settings)
        self.sender = HttpSender(self.config.http, POLICY)
        self.tokens = AccessTokens(self.config.account, self.sender)
        return self.sender

    async def push(self, device: PushDevice, txn: Transaction, payload: Mapping[str, Any]) -> None:
        config = self.config
        body = encode(device.address, config.push_type, payload, config.ttl, txn.user.username, txn.mailbox,
                      collapse=config.collapse)  # fmt: skip
        label = f"push to device {device.id} (fcm)"
        for attempt in (1, 2):
            authorization = await self.tokens.authorization()
            headers = {"Authorization": authorization, "Content-Type": "application/json; charset=UTF-8"}
            try:
                await self.sender.send(HttpRequest("POST", config.send_url, body, headers, label))
                return
            except HttpPermanentError as exc:
                if exc.status == 401 and attempt == 1:
                    self.log.info("FCM refused the access token; sending again with a new one")
                    self.tokens.expired(authorization)
                    continue
                if exc.status == 404:
                    raise DeviceGone(str(exc)) from None
                raise
