"""The device registry: one device per address, METADATA registrations, expiry, removals counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from prometheus_client import generate_latest
from push_notification.devices import DeviceError, DeviceFields
from push_notification.devices.contract import DeviceRegistry
from push_notification.devices.redis import RedisDeviceRegistry
from push_notification.devices.registration import (
    CHATMAIL_METADATA_KEY,
    DEVICE_METADATA_KEY,
    chatmail_registration,
    parse_registration,
)
from push_notification.devices.service import DeviceService
from push_notification.devices.sqlite import SqliteDeviceRegistry
from push_notification.transaction import Transaction, User


def token_kind(registration: Mapping[str, Any]) -> DeviceFields:
    token = registration.get("token")
    if not isinstance(token, str) or not token:
        raise DeviceError("'token' is missing")
    return DeviceFields(token, {})


KINDS = {"apns": token_kind}


@pytest.fixture(params=["sqlite", "redis"])
async def service(request: pytest.FixtureRequest) -> AsyncIterator[DeviceService]:
    """The same behaviour from the daemon's own SQLite registry and from the shared one in Redis."""
    registry: DeviceRegistry
    if request.param == "sqlite":
        registry = SqliteDeviceRegistry()
    else:
        registry = RedisDeviceRegistry(request.getfixturevalue("redis_server").url)
        await registry.client.flushall()
    yield DeviceService(registry, KINDS, expiry=100.0)
    await registry.close()


def counted(service: DeviceService, reason: str) -> bool:
    return (
        f'push_notification_devices_removed_total{{reason="{reason}"}} 1.0' in generate_latest(service.metrics).decode()
    )


async def test_the_same_address_registered_again_is_one_device(service: DeviceService) -> None:
    first = await service.register(parse_registration({"user": "a", "kind": "apns", "token": "t1"}, KINDS), "http")
    again = await service.register(parse_registration({"user": "b", "kind": "apns", "token": "t1"}, KINDS), "cli")
    assert again.id == first.id and again.user == "b"
    assert [d.id for d in await service.registry.list()] == [first.id]


async def test_a_device_nobody_refreshed_expires(service: DeviceService) -> None:
    registration = parse_registration({"user": "a", "kind": "apns", "token": "old"}, KINDS)
    device = await service.registry.register(registration.user, registration.kind, registration.fields, now=1000.0)
    await service.registry.register("a", "apns", DeviceFields("fresh", {}), now=1150.0)
    assert await service.expire(now=1160.0) == 1
    assert [d.address for d in await service.registry.list("a")] == ["fresh"]
    assert await service.registry.get(device.id) is None and counted(service, "expired")


async def test_a_gone_device_is_removed_and_counted(service: DeviceService) -> None:
    device = await service.register(parse_registration({"user": "a", "kind": "apns", "token": "t"}, KINDS), "http")
    await service.gone(device, "410 Unregistered")
    assert await service.registry.list("a") == [] and counted(service, "gone")


async def test_failures_count_until_a_success(service: DeviceService) -> None:
    device = await service.register(parse_registration({"user": "a", "kind": "apns", "token": "t"}, KINDS), "http")
    await service.failed(device)
    await service.failed(device)
    assert (await service.registry.get(device.id)).failures == 2  # type: ignore[union-attr]
    await service.succeeded(device)
    stored = await service.registry.get(device.id)
    assert stored is not None and stored.failures == 0 and stored.last_success is not None


async def test_a_transaction_carrying_a_device_in_metadata_registers_it_once(service: DeviceService) -> None:
    txn = Transaction(user=User(username="jane"), mailbox="INBOX",
                      metadata={CHATMAIL_METADATA_KEY: "sandbox:abc123", DEVICE_METADATA_KEY: "{not json"})  # fmt: skip
    for _ in range(3):
        devices = await service.for_transaction(txn, ["apns"])
    assert [(d.user, d.kind, d.address) for d in devices] == [("jane", "apns", "abc123")]
    assert (
        'push_notification_devices_registered_total{channel="metadata"} 1.0'
        in generate_latest(service.metrics).decode()
    )


def test_chatmail_tokens_name_their_kind() -> None:
    assert chatmail_registration("fcm-chat.delta:tok") == {"kind": "fcm", "token": "tok", "package": "chat.delta"}
    assert chatmail_registration("sandbox:tok") == {"kind": "apns", "token": "tok", "environment": "sandbox"}
    assert chatmail_registration("tok") == {"kind": "apns", "token": "tok"}
    assert chatmail_registration("webpush:https://p.example/x|KEY|AUTH")["subscription"] == {
        "endpoint": "https://p.example/x", "keys": {"p256dh": "KEY", "auth": "AUTH"}}  # fmt: skip


def test_a_token_encrypted_for_delta_chats_gateway_is_refused_in_one_line_saying_why() -> None:
    with pytest.raises(DeviceError) as caught:
        chatmail_registration("openpgp:wcBMA0u2dmMmP5AVAQf+...")
    assert str(caught.value).startswith("an openpgp: device token is encrypted for Delta Chat's own notification")
    assert "\n" not in str(caught.value) and "wcBMA" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "a registration is a JSON object"),
        ({"kind": "apns", "token": "t"}, "'user' must be a non-empty string"),
        (
            {"user": "a", "kind": "fcm", "token": "t"},
            "kind 'fcm' is not served by any configured driver (served: apns)",
        ),
        ({"user": "a", "kind": "apns"}, "'token' is missing"),
        ({"user": "a", "kind": "apns", "token": "t", "label": "x" * 101}, "'label' is longer than 100 characters"),
    ],
)
def test_a_bad_registration_is_one_line(body: Any, error: str) -> None:
    with pytest.raises(DeviceError) as caught:
        parse_registration(body, KINDS)
    assert str(caught.value).startswith(error)


async def test_a_device_the_cli_adds_is_seen_by_the_running_daemon(tmp_path) -> None:
    daemon = SqliteDeviceRegistry(tmp_path / "devices.sqlite")
    cli = SqliteDeviceRegistry(tmp_path / "devices.sqlite")
    assert await daemon.list("jane") == []  # now cached
    await cli.register("jane", "apns", DeviceFields("t", {}))
    assert [d.address for d in await daemon.list("jane")] == ["t"]
    device = (await daemon.list("jane"))[0]
    await cli.remove(device.id)
    assert await daemon.list("jane") == []
