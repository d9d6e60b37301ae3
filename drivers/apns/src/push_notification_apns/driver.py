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

from push_notification import DriverContext
from push_notification.devices import DeviceKind
from push_notification.devices.waking import DeviceGone, WakingDriver
from push_notification.drivers import PushDevice
from push_notification.errors import DriverError, PermanentError, RetryableError
from push_notification.transaction import Transaction

from .client import ApnsAnswer, ApnsClient
from .config import read_config
from .device import parse_token
from .message import MAX_PAYLOAD, encode, headers

KIND = "apns"
#: Apple's reasons meaning the token will never work again.
GONE = frozenset({(410, "Unregistered"), (400, "BadDeviceToken")})
#: What to fix, for the reasons an admin can fix.
HINTS = MappingProxyType(
    {
        "InvalidProviderToken": "check key_file, key_id and team_id",
        "MissingProviderToken": "set key_file, key_id and team_id, or certificate_file",
        "BadCertificate": "certificate_file is not an APNs certificate",
        "BadCertificateEnvironment": "the certificate is for the other environment",
        "TopicDisallowed": "the key or certificate may not push to this topic",
        "BadTopic": "topic must be the app's bundle id",
        "MissingTopic": "set topic to the app's bundle id",
        "DeviceTokenNotForTopic": "the device belongs to another app than topic",
        "PayloadTooLarge": "shorten title_template/body_template",
        "TooManyProviderTokenUpdates": "another process renews tokens of this key too often",
    }
)


class ApnsDriver(WakingDriver):
    """Apple Push Notification service: see the README for settings and payloads."""

    name = "apns"
    kind = KIND
    #: The device kinds this driver serves, with the parser that checks a registration.
    device_kinds: ClassVar[Mapping[str, DeviceKind]] = MappingProxyType({KIND: parse_token})

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.config = read_config(ctx.settings)
        ctx.settings.check_unknown()
        self.client = self.connection = ApnsClient(
            self.config.ssl_context, self.config.request_timeout, self.config.max_connections
        )

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
            answer = await self.client.post(url, request, body, label)
            if answer.status == 200:
                return
            if answer.reason == "ExpiredProviderToken" and config.token is not None and attempt == 1:
                self.log.info("APNs says the provider token expired; sending again with a new one")
                config.token.expired(authorization)
                continue
            raise self._error(label, answer)

    @staticmethod
    def _error(label: str, answer: ApnsAnswer) -> DriverError:
        what = f"{label}: APNs answered {answer.status} {answer.reason or '(no reason)'}"
        if (answer.status, answer.reason) in GONE:
            return DeviceGone(what)
        if answer.status == 429 or answer.status >= 500:
            return RetryableError(what, retry_after=answer.retry_after)
        hint = HINTS.get(answer.reason)
        return PermanentError(f"{what} ({hint})" if hint else what)
