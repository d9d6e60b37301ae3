"""The ``webpush`` driver: a content-free wake-up to each of the user's Web Push subscriptions
when a transaction passes the wake filter (by default: new mail in INBOX).

Each subscription gets its own encrypted message (RFC 8291) with a VAPID signature (RFC 8292),
all of a user's devices at once. A gone subscription (404/410) is removed from the registry;
a push service asking to wait (429/5xx) makes the queue retry the transaction later, without
pushing again to the devices that already got it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import aiohttp
from push_notification import DriverContext, hookimpl
from push_notification.devices import DeviceKind
from push_notification.devices.payload import PayloadBuilder
from push_notification.devices.wake import read_wake_filter
from push_notification.drivers import Devices, PushDevice
from push_notification.errors import ConfigError, PermanentError, RetryableError
from push_notification.templates import TemplateError
from push_notification.transaction import Transaction

from .config import read_config
from .message import encrypt, topic
from .send import Answer, post
from .subscription import parse_subscription

KIND = "webpush"
#: Transactions whose delivery got part-way, remembered so a retry skips the devices reached.
PARTLY_DELIVERED_MAX = 10_000


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
        self._session: aiohttp.ClientSession | None = None
        self._reached: OrderedDict[str, set[str]] = OrderedDict()
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
        http = self.config.http
        ssl_option: ssl.SSLContext | bool = http.ssl_context or True
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=http.max_parallel_connections, ssl=ssl_option),
            timeout=aiohttp.ClientTimeout(total=http.request_timeout),
            skip_auto_headers=("User-Agent",),
        )

    @hookimpl
    async def driver_deinit(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @hookimpl
    async def end_txn(self, txn: Transaction, success: bool) -> None:
        events = self.wake.wakes(txn)
        if not events:
            return
        reached = self._reached.pop(txn.id, set())
        devices = [d for d in await self.devices.for_transaction(txn, (KIND,)) if d.id not in reached]
        if not devices:
            return
        try:
            payload = json.dumps(self.payloads.build(txn, events), separators=(",", ":")).encode()
        except TemplateError as exc:
            raise PermanentError(f"title_template/body_template: {exc.describe()}") from None
        headers = self._headers
        if self.config.topic:
            headers = {**headers, "Topic": topic(txn.user.username, txn.mailbox)}
        answers = await asyncio.gather(*(self._push(device, payload, headers) for device in devices))
        await self._settle(txn, devices, answers, reached)

    async def _push(self, device: PushDevice, payload: bytes, headers: dict[str, str]) -> Answer:
        if self._session is None:
            await self.driver_init()
        assert self._session is not None
        body = encrypt(payload, device)
        signed = {**headers, "Authorization": self.config.signer.authorization(device.address)}
        return await post(self._session, device.address, body, signed)

    async def _settle(
        self, txn: Transaction, devices: list[PushDevice], answers: list[Answer], reached: set[str]
    ) -> None:
        """Record each device's outcome; raise what the transaction's outcome is."""
        retry: list[Answer] = []
        permanent: list[Answer] = []
        for device, answer in zip(devices, answers, strict=True):
            if answer.verdict == "delivered":
                reached.add(device.id)
                self.pushed += 1
                await self.devices.succeeded(device)
            elif answer.verdict == "gone":
                await self.devices.gone(device, answer.reason)
            else:
                await self.devices.failed(device)
                (retry if answer.verdict == "retry" else permanent).append(answer)
        if retry:
            self._reached[txn.id] = reached
            while len(self._reached) > PARTLY_DELIVERED_MAX:
                self._reached.popitem(last=False)
            waits = [a.retry_after for a in retry if a.retry_after is not None]
            raise RetryableError(_summary(retry, len(devices)), retry_after=max(waits) if waits else None)
        if permanent:
            raise PermanentError(_summary(permanent, len(devices)))


def _summary(answers: list[Answer], total: int) -> str:
    more = f" (and {len(answers) - 1} more)" if len(answers) > 1 else ""
    return f"{len(answers)} of {total} device(s) not reached: {answers[0].reason}{more}"
