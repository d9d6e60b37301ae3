"""The apns driver in a real daemon, against a loopback APNs that speaks HTTP/2 over TLS,
verifies the provider token's ES256 signature and checks Apple's headers."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import NO_STORM, TEAM_ID, Start


async def test_new_mail_is_a_silent_content_free_wake_up(start: Start) -> None:
    running = await start()
    device = running.apns.device()
    await running.register(device)
    await running.daemon.send(subject="Quarterly figures", **{"from": "boss@example.com"})
    [push] = await running.apns.wait_for(1)
    assert push.token == device.token
    assert push.payload == {"aps": {"content-available": 1}, "account": "jane@example.com", "mailbox": "INBOX",
                            "event": "MessageNew", "count": 1, "unseen": 2}  # fmt: skip
    assert "Quarterly" not in str(push.payload) and "boss" not in str(push.payload)
    headers = push.headers
    assert headers["apns-topic"] == "com.example.mail" and headers["apns-push-type"] == "background"
    assert headers["apns-priority"] == "5" and len(headers["apns-collapse-id"]) == 32
    assert abs(int(headers["apns-expiration"]) - (time.time() + 86400)) < 60
    assert push.claims is not None and push.claims["iss"] == TEAM_ID
    assert running.apns.rejected == []


async def test_an_alert_shows_the_templated_title_with_priority_10(start: Start) -> None:
    running = await start(f"{NO_STORM}\n  push_type = alert\n  title_template = Mail from {{{{ event.from_address }}}}")
    device = running.apns.device()
    await running.register(device)
    await running.daemon.send(from_address="carol@example.org")
    [push] = await running.apns.wait_for(1)
    assert push.payload["aps"] == {"alert": {"title": "Mail from carol@example.org"}, "sound": "default", "badge": 2}
    assert push.headers["apns-push-type"] == "alert" and push.headers["apns-priority"] == "10"


async def test_one_pending_push_per_user_and_mailbox(start: Start) -> None:
    running = await start(f"{NO_STORM}\n  wake_mailboxes = *")
    await running.register(running.apns.device())
    for uid, mailbox in enumerate(["INBOX", "INBOX", "Lists"]):
        await running.daemon.send(mailbox=mailbox, uid=uid)
    received = await running.apns.wait_for(3)
    collapse = {p.payload["mailbox"]: p.headers["apns-collapse-id"] for p in received}
    assert [p.headers["apns-collapse-id"] for p in received].count(collapse["INBOX"]) == 2
    assert collapse["INBOX"] != collapse["Lists"] and "INBOX" not in collapse["INBOX"]


async def test_many_pushes_share_one_http2_connection_and_one_token(start: Start) -> None:
    running = await start()
    devices = [running.apns.device() for _ in range(20)]
    for number, device in enumerate(devices):
        await running.register(device, user=f"user{number}@example.com")
    for number in range(20):
        await running.daemon.send(user=f"user{number}@example.com")
    received = await running.apns.wait_for(20)
    assert sorted(p.token for p in received) == sorted(d.token for d in devices)
    assert running.apns.connections == 1 and {p.connection for p in received} == {1}
    assert len({p.headers["authorization"] for p in received}) == 1


@pytest.mark.parametrize(("status", "reason"), [(410, "Unregistered"), (400, "BadDeviceToken")])
async def test_a_token_apple_says_is_gone_is_removed(start: Start, status: int, reason: str) -> None:
    running = await start()
    gone, kept = running.apns.device(), running.apns.device()
    gone.answers.append((status, reason))
    gone_id = await running.register(gone)
    await running.register(kept)
    await running.daemon.send()
    await running.apns.wait_for(1)
    await running.daemon.drain(5)
    assert gone_id not in await running.daemon.devices() and len(await running.daemon.devices()) == 1
    assert 'push_notification_devices_removed_total{reason="gone"} 1.0' in await running.daemon.metrics()


async def test_an_expired_provider_token_is_renewed_at_once_without_losing_the_push(start: Start) -> None:
    running = await start()
    device = running.apns.device()
    await running.register(device)
    await running.daemon.send(uid=1)
    [first] = await running.apns.wait_for(1)
    running.apns.expire_tokens()
    await running.daemon.send(uid=2)
    _, second = await running.apns.wait_for(2)
    assert first.headers["authorization"] != second.headers["authorization"]
    await running.daemon.drain(5)
    metrics = await running.daemon.metrics()
    assert 'push_notification_deliveries_total{instance="apns",outcome="retry"}' not in metrics
    assert 'push_notification_deliveries_total{instance="apns",outcome="delivered"} 2.0' in metrics


@pytest.mark.parametrize(("status", "reason"), [(429, "TooManyRequests"), (503, "ServiceUnavailable")])
async def test_throttling_and_outages_are_retried_through_the_queue(start: Start, status: int, reason: str) -> None:
    running = await start()
    busy, fine = running.apns.device(), running.apns.device()
    busy.answers.append((status, reason))
    await running.register(busy)
    await running.register(fine)
    await running.daemon.send()
    received = await running.apns.wait_for(2)
    assert sorted(p.token for p in received) == sorted([busy.token, fine.token])
    await running.daemon.drain(5)
    assert len(running.apns.received) == 2  # the retry skipped the device already reached
    assert 'push_notification_deliveries_total{instance="apns",outcome="retry"} 1.0' in await running.daemon.metrics()


async def test_another_refusal_is_a_one_line_permanent_error_naming_apples_reason(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    running = await start()
    device = running.apns.device()
    device.answers.append((400, "DeviceTokenNotForTopic"))
    device_id = await running.register(device)
    await running.daemon.send()
    await running.daemon.dead_letter("apns")
    line = next(r.getMessage() for r in caplog.records if "dead letter" in r.getMessage())
    assert (f"push to device {device_id} (apns production): 400 Bad Request: DeviceTokenNotForTopic"
            " (the device belongs to another app than topic)") in line  # fmt: skip
    assert device.token not in "\n".join(r.getMessage() for r in caplog.records)
    assert await running.daemon.devices() == [device_id]


async def test_a_sandbox_device_goes_to_the_sandbox_endpoint(start: Start) -> None:
    running = await start(f"{NO_STORM}\n  environment = production\n  production_url = https://127.0.0.1:1")
    device = running.apns.device()
    await running.register(device, environment="sandbox")
    await running.daemon.send()
    [push] = await running.apns.wait_for(1)
    assert push.token == device.token


async def test_a_bad_token_is_a_one_line_400(start: Start) -> None:
    running = await start()
    status, body = await running.daemon.call("POST", "/v1/devices", {"user": "u", "kind": "apns", "token": "xyz"})
    assert (status, body) == (400, {"error": "the apns token must be hex (the deviceToken bytes, two digits each)"})
    status, body = await running.daemon.call("POST", "/v1/devices", {"user": "u", "kind": "apns", "token": "ab" * 32,
                                                              "environment": "staging"})  # fmt: skip
    assert (status, body) == (400, {"error": "the apns environment must be production or sandbox"})
