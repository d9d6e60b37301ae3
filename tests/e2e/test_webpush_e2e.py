"""Real Dovecot → bridge → daemon → webpush → a loopback push service that checks VAPID and
decrypts: a registered browser subscription receives the wake-up of an LMTP delivery."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import BridgedDovecot, e2e_daemon, require_dovecot, require_driver, wait_until
from push_notification.devices.vapid import create_vapid_key
from push_notification.testing.daemon import DaemonProcess

require_dovecot()
require_driver("webpush")

from push_notification_webpush.testing import LoopbackPushService, Subscriber  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
TOKEN = "e2e-webpush-token"
MAIL = (
    "From: Carol <carol@example.org>\r\nTo: alice@example.com, bob@example.com\r\nSubject: Lunch?\r\n"
    "Date: Tue, 01 Oct 2024 10:00:00 +0200\r\n\r\nShall we?\r\n"
)


class ThreadedPushService:
    """The loopback push service on an event loop of its own, for a synchronous test."""

    def __init__(self, public_key: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.service = LoopbackPushService(application_server_key=public_key)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopbackPushService:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.__aenter__(), self.loop).result(10)
        return self.service

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.service.__aexit__(None, None, None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[BridgedDovecot, DaemonProcess, LoopbackPushService]]:
    key = tmp_path / "vapid.pem"
    public = create_vapid_key(key)
    with ThreadedPushService(public) as service, BridgedDovecot() as dovecot:
        config = (f"spool_dir = {dovecot.spool}\npush_notification webpush {{\n  vapid_key = {key}\n"
                  "  vapid_subject = mailto:postmaster@example.com\n}\n")  # fmt: skip
        with e2e_daemon(tmp_path, config, token=TOKEN) as daemon:
            yield dovecot, daemon, service


def register(daemon: DaemonProcess, user: str, subscriber: Subscriber) -> None:
    body = json.dumps({"user": user, "kind": "webpush", "subscription": subscriber.subscription()}).encode()
    request = urllib.request.Request(f"{daemon.url}/v1/devices", data=body, method="POST")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201


def test_an_lmtp_delivery_wakes_the_registered_browser(stack) -> None:
    dovecot, daemon, service = stack
    subscriber = service.subscribe()
    register(daemon, ALICE, subscriber)
    assert dovecot.deliver(MAIL, [ALICE])[0][0] == 250
    assert wait_until(lambda: service.received, 15), daemon.log()
    [message] = service.received
    assert message.subscriber == subscriber.id
    assert message.json() == {"account": ALICE, "mailbox": "INBOX", "event": "MessageNew", "count": 1, "unseen": 1}
    assert service.rejected == []
    assert subscriber.endpoint.rsplit("/", 1)[1] not in daemon.log()


def chatmail_token(subscriber: Subscriber) -> str:
    """A UnifiedPush subscription as a chatmail client writes it: webpush:ENDPOINT|P256DH|AUTH."""
    keys = subscriber.subscription()["keys"]
    return f"webpush:{subscriber.endpoint}|{keys['p256dh']}|{keys['auth']}"


@pytest.mark.parametrize("mailbox", ["INBOX", '""'], ids=["on-INBOX-as-chatmail-clients-do", "on-the-server"])
def test_a_chatmail_device_token_set_over_imap_registers_the_device_and_wakes_it(stack, mailbox: str) -> None:
    dovecot, daemon, service = stack
    phone = service.subscribe(unifiedpush=True)
    imap = dovecot.imap(ALICE)
    typ, data = imap.xatom("SETMETADATA", f'{mailbox} (/private/devicetoken "{chatmail_token(phone)}")')
    assert typ == "OK", data
    imap.logout()
    assert dovecot.deliver(MAIL, [ALICE])[0][0] == 250
    assert wait_until(lambda: service.received, 15), daemon.log()
    [message] = service.received
    assert message.subscriber == phone.id and message.json()["account"] == ALICE
    assert "registered through metadata" in daemon.log()


def test_our_json_registration_in_server_metadata_registers_the_device(stack) -> None:
    dovecot, daemon, service = stack
    browser = service.subscribe()
    registration = {"kind": "webpush", "subscription": browser.subscription(), "label": "phone"}
    dovecot.set_metadata(BOB, "/private/vendor/vendor.dovecot/push-device", json.dumps(registration))
    assert dovecot.deliver(MAIL, [BOB])[0][0] == 250
    assert wait_until(lambda: service.received, 15), daemon.log()
    assert [(m.subscriber, m.json()["account"]) for m in service.received] == [(browser.id, BOB)]
