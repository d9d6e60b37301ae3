"""Real Dovecot → bridge → daemon → apns and fcm → a loopback APNs (HTTP/2, TLS, ES256 provider
token checked) and a loopback FCM (OAuth2 assertion and bearer token checked): an LMTP delivery
wakes one registered iPhone and one registered Android phone; a gone token is removed; an
expired token is renewed without losing the push."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from e2e_support import BridgedDovecot, e2e_daemon, require_dovecot, require_driver, wait_until
from push_notification.testing.daemon import DaemonProcess
from threaded import Threaded

require_dovecot()
require_driver("apns")
require_driver("fcm")

from push_notification_apns.testing import LoopbackApns  # noqa: E402
from push_notification_fcm.testing import LoopbackFcm  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
TOKEN = "e2e-native-token"
TOPIC, KEY_ID, TEAM_ID = "com.example.mail", "KEY1234567", "TEAM123456"
MAIL = (
    "From: Carol <carol@example.org>\r\nTo: alice@example.com, bob@example.com\r\nSubject: Lunch?\r\n"
    "Date: Tue, 01 Oct 2024 10:00:00 +0200\r\n\r\nShall we?\r\n"
)


@dataclass
class Stack:
    dovecot: BridgedDovecot
    daemon: DaemonProcess
    apns: LoopbackApns
    fcm: LoopbackFcm

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.daemon.url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read() or b"null")

    def register(self, user: str, kind: str, token: str) -> str:
        return str(self.call("POST", "/v1/devices", {"user": user, "kind": kind, "token": token})["id"])

    def devices(self, user: str) -> list[str]:
        return [d["id"] for d in self.call("GET", f"/v1/devices?user={user}")["devices"]]

    def deliver(self) -> None:
        assert [code for code, _ in self.dovecot.deliver(MAIL, [ALICE, BOB])] == [250, 250]

    def pushed(self, count: int) -> bool:
        return len(self.apns.received) >= count and len(self.fcm.received) >= count


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / f"AuthKey_{KEY_ID}.p8"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    apns = LoopbackApns(tmp_path, topic=TOPIC, key=key.public_key(), key_id=KEY_ID, team_id=TEAM_ID)
    with Threaded(apns, LoopbackFcm()) as (apns, fcm), BridgedDovecot() as dovecot:
        account = fcm.service_account(tmp_path / "service-account.json")
        config = (
            f"spool_dir = {dovecot.spool}\n"
            f"push_notification apns {{\n  topic = {TOPIC}\n  key_file = {key_file}\n  key_id = {KEY_ID}\n"
            f"  team_id = {TEAM_ID}\n  production_url = {apns.url}\n  ssl_client_ca_file = {apns.ca_file}\n}}\n"
            f"push_notification fcm {{\n  service_account = {account}\n  url = {fcm.url}\n}}\n"
        )
        with e2e_daemon(tmp_path, config, token=TOKEN) as daemon:
            yield Stack(dovecot, daemon, apns, fcm)


def test_an_lmtp_delivery_wakes_the_registered_iphone_and_android_phone(stack: Stack) -> None:
    iphone, android = stack.apns.device(), stack.fcm.device()
    stack.register(ALICE, "apns", iphone.token)
    stack.register(BOB, "fcm", android.token)
    stack.deliver()
    assert wait_until(lambda: stack.pushed(1), 15), stack.daemon.log()
    [apns], [fcm] = stack.apns.received, stack.fcm.received
    assert apns.token == iphone.token and fcm.token == android.token
    assert apns.payload == {"aps": {"content-available": 1}, "account": ALICE, "mailbox": "INBOX",
                            "event": "MessageNew", "count": 1, "unseen": 1}  # fmt: skip
    assert fcm.message["data"] == {"account": BOB, "mailbox": "INBOX", "event": "MessageNew", "count": "1",
                                   "unseen": "1"}  # fmt: skip
    assert stack.apns.rejected == [] and stack.fcm.rejected == []
    log = stack.daemon.log()
    assert iphone.token not in log and android.token not in log and "ya29." not in log


def test_tokens_apple_and_google_call_gone_are_removed(stack: Stack) -> None:
    iphone, android = stack.apns.device(), stack.fcm.device()
    iphone.answers.append((410, "Unregistered"))
    android.answers.append((404, "UNREGISTERED", {}))
    stack.register(ALICE, "apns", iphone.token)
    stack.register(BOB, "fcm", android.token)
    stack.deliver()
    assert wait_until(lambda: not stack.devices(ALICE) and not stack.devices(BOB), 15), stack.daemon.log()
    assert stack.apns.received == [] and stack.fcm.received == []
    assert "removed: push to device" in stack.daemon.log()


def test_expired_tokens_are_renewed_without_losing_the_push(stack: Stack) -> None:
    stack.register(ALICE, "apns", stack.apns.device().token)
    stack.register(BOB, "fcm", stack.fcm.device().token)
    stack.deliver()
    assert wait_until(lambda: stack.pushed(1), 15), stack.daemon.log()
    stack.apns.expire_tokens()
    stack.fcm.expire_tokens()
    stack.deliver()
    assert wait_until(lambda: stack.pushed(2), 15), stack.daemon.log()
    first, second = stack.apns.received
    assert first.headers["authorization"] != second.headers["authorization"]
    assert stack.fcm.received[0].authorization != stack.fcm.received[1].authorization
    assert "sending again with a new one" in stack.daemon.log()
