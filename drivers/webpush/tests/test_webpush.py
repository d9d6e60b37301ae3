"""The webpush driver in a real daemon, against a push service that checks VAPID and decrypts."""

from __future__ import annotations

import logging

import pytest
from conftest import Start
from push_notification.testing.inprocess import INGRESS_TOKEN


async def test_new_mail_wakes_the_subscription_with_a_content_free_message(start: Start) -> None:
    running = await start()
    subscriber = running.service.subscribe()
    await running.register(subscriber)
    await running.daemon.send(subject="Quarterly figures", **{"from": "boss@example.com"})
    [message] = await running.service.wait_for(1)
    assert message.json() == {"account": "jane@example.com", "mailbox": "INBOX", "event": "MessageNew", "count": 1,
                              "unseen": 2}  # fmt: skip
    assert b"Quarterly" not in message.plaintext and b"boss" not in message.plaintext
    assert message.claims["sub"] == "mailto:postmaster@example.com"
    assert message.headers["TTL"] == "86400" and message.headers["Urgency"] == "normal"
    assert len(message.headers["Topic"]) == 32
    assert running.service.rejected == []


async def test_a_unifiedpush_endpoint_is_a_web_push_endpoint(start: Start) -> None:
    running = await start()
    subscriber = running.service.subscribe(unifiedpush=True)
    assert subscriber.endpoint.endswith("?up=1")
    await running.register(subscriber, user="bob")
    await running.daemon.send(user="bob")
    [message] = await running.service.wait_for(1)
    assert message.json()["account"] == "bob"


async def test_registering_the_same_subscription_again_updates_it(start: Start) -> None:
    running = await start()
    subscriber = running.service.subscribe()
    first = await running.register(subscriber, label="laptop")
    second = await running.register(subscriber, user="jane@example.com", label="work laptop")
    assert first == second
    status, body = await running.daemon.call("GET", "/v1/devices?user=jane@example.com")
    assert status == 200 and [d["label"] for d in body["devices"]] == ["work laptop"]
    assert "endpoint" not in str(body) and subscriber.endpoint not in str(body)


@pytest.mark.parametrize(
    ("subscription", "error"),
    [
        ("not an object", "a webpush registration needs 'subscription'"),
        ({"endpoint": "ftp://x/1", "keys": {}}, "subscription.endpoint must be an https:// URL"),
        ({"endpoint": "https://push.example/1"}, "subscription.keys is missing"),
        ({"endpoint": "https://push.example/1", "keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}},
         "subscription keys.p256dh must be an uncompressed P-256 point (got 3 bytes)"),
    ],
)  # fmt: skip
async def test_a_bad_subscription_is_a_one_line_400(start: Start, subscription: object, error: str) -> None:
    running = await start()
    status, body = await running.daemon.call(
        "POST", "/v1/devices", {"user": "u", "kind": "webpush", "subscription": subscription}
    )
    assert status == 400 and body["error"].startswith(error) and "\n" not in body["error"]


async def test_unknown_kind_and_invalid_json_are_one_line_400s(start: Start) -> None:
    running = await start()
    status, body = await running.daemon.call("POST", "/v1/devices", {"user": "u", "kind": "pager", "token": "x"})
    assert (status, body) == (400, {"error": "kind 'pager' is not served by any configured driver (served: webpush)"})
    headers = {"Authorization": f"Bearer {INGRESS_TOKEN}"}
    async with running.daemon.session.post(
        running.daemon.url + "/v1/devices", data=b"{nope", headers=headers
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"].startswith("the registration is not valid JSON: ")


async def test_registration_needs_the_ingress_token(start: Start) -> None:
    running = await start()
    async with running.daemon.session.get(running.daemon.url + "/v1/devices?user=u") as response:
        assert response.status == 401


async def test_a_gone_subscription_is_removed_and_counted(start: Start) -> None:
    running = await start()
    gone, kept = running.service.subscribe(), running.service.subscribe()
    gone.answers.append((410, {}))
    gone_id = await running.register(gone)
    await running.register(kept)
    await running.daemon.send()
    await running.service.wait_for(1)
    await running.daemon.drain(5)
    assert gone_id not in await running.daemon.devices() and len(await running.daemon.devices()) == 1
    assert 'push_notification_devices_removed_total{reason="gone"} 1.0' in await running.daemon.metrics()


async def test_429_is_retried_through_the_queue_without_pushing_twice_to_the_others(start: Start) -> None:
    running = await start()
    busy, fine = running.service.subscribe(), running.service.subscribe()
    busy.answers.append((429, {"Retry-After": "1"}))
    await running.register(busy)
    await running.register(fine)
    await running.daemon.send()
    received = await running.service.wait_for(2)
    assert sorted(r.subscriber for r in received) == sorted([busy.id, fine.id])
    await running.daemon.drain(5)
    assert len(running.service.received) == 2
    assert (
        'push_notification_deliveries_total{instance="webpush",outcome="retry"} 1.0' in await running.daemon.metrics()
    )


async def test_413_is_a_one_line_permanent_failure(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    running = await start()
    big = running.service.subscribe()
    big.answers.append((413, {}))
    await running.register(big)
    await running.daemon.send()
    await running.daemon.dead_letter("webpush")
    assert running.daemon.daemon.queue.dead_letters("webpush") == 1
    line = next(r.getMessage() for r in caplog.records if "dead letter" in r.getMessage())
    # The reason phrase is Python's own ("Request Entity Too Large", "Content Too Large" from 3.13).
    assert "413 " in line and "(the encrypted payload is too large for this push service)" in line


async def test_mail_that_should_not_wake_does_not(start: Start) -> None:
    running = await start()
    subscriber = running.service.subscribe()
    await running.register(subscriber)
    await running.daemon.send(mailbox="Junk")
    await running.daemon.send(mailbox="Archive")
    await running.daemon.send(**{"from": "jane@example.com", "from_address": "jane@example.com"})
    await running.daemon.send(name="FlagsSet", flags=["\\Seen"])
    await running.daemon.send(uid=9)
    [message] = await running.service.wait_for(1)
    await running.daemon.drain(5)
    assert len(running.service.received) == 1 and message.json()["mailbox"] == "INBOX"


async def test_no_log_line_shows_a_token_or_key(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    running = await start()
    subscriber = running.service.subscribe()
    subscriber.answers.extend([(503, {}), (503, {})])  # both attempts in place fail: the queue retries
    await running.register(subscriber)
    await running.daemon.send()
    await running.service.wait_for(1)
    secrets = [subscriber.endpoint.rsplit("/", 1)[1], *subscriber.subscription()["keys"].values()]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "503" in text
    assert not [s for s in secrets if s in text]


async def test_a_device_deleted_over_http_is_no_longer_woken(start: Start) -> None:
    running = await start()
    subscriber = running.service.subscribe()
    device_id = await running.register(subscriber)
    assert await running.daemon.call("DELETE", f"/v1/devices/{device_id}") == (204, None)
    status, body = await running.daemon.call("DELETE", f"/v1/devices/{device_id}")
    assert status == 404 and body["error"].startswith("no such device")
    await running.daemon.send()
    await running.daemon.drain(5)
    assert running.service.received == []
    assert 'push_notification_devices_removed_total{reason="deleted"} 1.0' in await running.daemon.metrics()
