"""The fcm driver in a real daemon, against a loopback FCM that checks the service account's
assertion, the access token and every message."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import NO_STORM, Start, instance_config
from push_notification.testing.inprocess import running_daemon
from push_notification_fcm.testing import LoopbackFcm


async def test_new_mail_is_a_data_only_content_free_message(start: Start) -> None:
    running = await start()
    device = running.fcm.device()
    await running.register(device)
    await running.daemon.send(subject="Quarterly figures", **{"from": "boss@example.com"})
    [received] = await running.fcm.wait_for(1)
    message = received.message
    assert message["token"] == device.token and "notification" not in message
    assert message["data"] == {"account": "jane@example.com", "mailbox": "INBOX", "event": "MessageNew",
                               "count": "1", "unseen": "2"}  # fmt: skip
    assert "Quarterly" not in str(message) and "boss" not in str(message)
    assert message["android"]["priority"] == "normal" and message["android"]["ttl"] == "86400s"
    assert len(message["android"]["collapse_key"]) == 32
    assert running.fcm.rejected == []


async def test_an_alert_carries_a_notification_with_high_priority(start: Start) -> None:
    running = await start(
        f"{NO_STORM}\n  push_type = alert\n  body_template = {{{{ count }}}} new in {{{{ mailbox }}}}"
    )
    device = running.fcm.device()
    await running.register(device)
    await running.daemon.send()
    [received] = await running.fcm.wait_for(1)
    assert received.message["notification"] == {"title": "New mail", "body": "1 new in INBOX"}
    assert received.message["android"]["priority"] == "high"


async def test_one_access_token_serves_many_pushes(start: Start) -> None:
    running = await start()
    for number in range(10):
        await running.register(running.fcm.device(), user=f"user{number}@example.com")
        await running.daemon.send(user=f"user{number}@example.com")
    received = await running.fcm.wait_for(10)
    assert len({r.authorization for r in received}) == 1 and len(running.fcm.access_tokens) == 1


async def test_an_unregistered_token_is_removed(start: Start) -> None:
    running = await start()
    gone, kept = running.fcm.device(), running.fcm.device()
    gone.answers.append((404, "UNREGISTERED", {}))
    gone_id = await running.register(gone)
    await running.register(kept)
    await running.daemon.send()
    await running.fcm.wait_for(1)
    await running.daemon.drain()
    assert gone_id not in await running.daemon.devices() and len(await running.daemon.devices()) == 1
    assert 'push_notification_devices_removed_total{reason="gone"} 1.0' in await running.daemon.metrics()


async def test_an_expired_access_token_is_renewed_at_once_without_losing_the_push(start: Start) -> None:
    running = await start()
    await running.register(running.fcm.device())
    await running.daemon.send(uid=1)
    [first] = await running.fcm.wait_for(1)
    running.fcm.expire_tokens()
    await running.daemon.send(uid=2)
    _, second = await running.fcm.wait_for(2)
    assert first.authorization != second.authorization and len(running.fcm.access_tokens) == 2
    await running.daemon.drain()
    metrics = await running.daemon.metrics()
    assert 'push_notification_deliveries_total{instance="fcm",outcome="retry"}' not in metrics
    assert 'push_notification_deliveries_total{instance="fcm",outcome="delivered"} 2.0' in metrics


@pytest.mark.parametrize(
    "answer", [(429, "QUOTA_EXCEEDED", {"Retry-After": "1"}), (503, "UNAVAILABLE", {"Retry-After": "1"})]
)
async def test_throttling_waits_for_retry_after_in_the_queue(
    start: Start, answer: tuple[int, str, dict[str, str]]
) -> None:
    running = await start()
    busy, fine = running.fcm.device(), running.fcm.device()
    busy.answers.append(answer)
    await running.register(busy)
    await running.register(fine)
    await running.daemon.send()
    received = await running.fcm.wait_for(2)
    assert sorted(r.token for r in received) == sorted([busy.token, fine.token])
    await running.daemon.drain()
    assert len(running.fcm.received) == 2  # the retry skipped the device already reached
    assert 'push_notification_deliveries_total{instance="fcm",outcome="retry"} 1.0' in await running.daemon.metrics()


async def test_invalid_argument_is_a_one_line_permanent_error(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    running = await start()
    device = running.fcm.device()
    device.answers.append((400, "INVALID_ARGUMENT", {}))
    device_id = await running.register(device)
    await running.daemon.send()
    await running.daemon.dead_letter("fcm")
    line = next(r.getMessage() for r in caplog.records if "dead letter" in r.getMessage())
    assert f"push to device {device_id} (fcm): 400 Bad Request: INVALID_ARGUMENT: Request contains an invalid" in line
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert device.token not in text and "ya29." not in text
    assert await running.daemon.devices() == [device_id]


async def test_a_bad_token_is_a_one_line_400(start: Start) -> None:
    running = await start()
    status, body = await running.daemon.call("POST", "/v1/devices", {"user": "u", "kind": "fcm", "token": "short"})
    assert status == 400 and body["error"].startswith("the fcm token must be 20 to 4096 letters")


async def test_an_access_token_is_renewed_five_minutes_before_it_expires(tmp_path: Path) -> None:
    async with LoopbackFcm(token_lifetime=300) as fcm:  # always within five minutes of its end
        config = instance_config(fcm, fcm.service_account(tmp_path / "sa.json"), NO_STORM)
        async with running_daemon(tmp_path, config) as daemon:
            await daemon.register("fcm", token=fcm.device().token)
            await daemon.send(uid=1)
            await fcm.wait_for(1)
            await daemon.send(uid=2)
            first, second = await fcm.wait_for(2)
    assert first.authorization != second.authorization and len(fcm.access_tokens) == 2
