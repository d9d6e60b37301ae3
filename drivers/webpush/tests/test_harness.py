"""The driver author's kit runs webpush too: the harness brings an in-memory device registry."""

from __future__ import annotations

from pathlib import Path

from push_notification.devices.registration import parse_registration
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_webpush import WebPushDriver
from push_notification_webpush.testing import LoopbackPushService


async def test_the_driver_harness_wakes_a_registered_device(vapid_key: tuple[Path, str]) -> None:
    key, public = vapid_key
    async with LoopbackPushService(application_server_key=public) as service:
        subscriber = service.subscribe()
        settings = {"vapid_key": str(key), "vapid_subject": "https://mail.example.com/contact"}
        async with DriverHarness(WebPushDriver, settings) as harness:
            body = {"user": "alice", "kind": "webpush", "subscription": subscriber.subscription()}
            await harness.devices.register(parse_registration(body, harness.devices.kinds), "test")
            await harness.send(make_transaction(make_event("MessageNew", uid=5), user="alice"))
        [message] = await service.wait_for(1)
    assert message.json() == {"account": "alice", "mailbox": "INBOX", "event": "MessageNew", "count": 1}
    assert message.claims["sub"] == "https://mail.example.com/contact"
