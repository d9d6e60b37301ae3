"""The driver author's kit runs webpush too: the harness brings an in-memory device registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from push_notification.devices.registration import parse_registration
from push_notification.errors import ConfigError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_webpush import WebPushDriver
from push_notification_webpush.testing import LoopbackPushService


async def test_the_driver_harness_wakes_a_registered_device(vapid_key: tuple[Path, str]) -> None:
    key, public = vapid_key
    async with LoopbackPushService(application_server_key=public) as service:
        subscriber = service.subscribe()
        settings = {"vapid_key": str(key), "vapid_subject": "https://mail.example.com"}
        async with DriverHarness(WebPushDriver, settings) as harness:
            body = {"user": "alice", "kind": "webpush", "subscription": subscriber.subscription()}
            await harness.devices.register(parse_registration(body, harness.devices.kinds), "test")
            await harness.send(make_transaction(make_event("MessageNew", uid=5), user="alice"))
        [message] = await service.wait_for(1)
    assert message.json() == {"account": "alice", "mailbox": "INBOX", "event": "MessageNew", "count": 1}
    assert message.claims["sub"] == "https://mail.example.com"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"vapid_subject": "mailto:a@example.com"}, "setting 'vapid_key': is required"),
        ({"vapid_key": "/nonexistent/vapid.pem", "vapid_subject": "mailto:a@example.com"},
         "setting 'vapid_key': cannot read the VAPID key /nonexistent/vapid.pem: No such file or directory"),
        ({"vapid_subject": "https://mail.example.com/contact"},
         "setting 'vapid_subject': must be mailto:ADDRESS or https://HOST (no path)"),
        ({"vapid_subject": "mailto:a@example.com", "urgency": "asap"}, "setting 'urgency': use one of very-low"),
        ({"vapid_subject": "mailto:a@example.com", "wake_events": "MessageNew Logout"}, "setting 'wake_events': event"),
        ({"vapid_subject": "mailto:a@example.com", "urgancy": "high"},
         "setting 'urgancy': unknown setting (this driver knows: "),
    ],
)  # fmt: skip
def test_a_config_mistake_is_one_line_naming_the_setting(
    vapid_key: tuple[Path, str], settings: dict[str, str], error: str
) -> None:
    settings = {"vapid_key": str(vapid_key[0]), **settings} if "vapid_key" not in settings else settings
    if error.startswith("setting 'vapid_key': is required"):
        settings.pop("vapid_key")
    with pytest.raises(ConfigError) as caught:
        DriverHarness(WebPushDriver, settings)
    assert error in str(caught.value) and "\n" not in str(caught.value)
