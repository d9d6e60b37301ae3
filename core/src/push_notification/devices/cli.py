"""``push-notification devices``: register, list and remove devices, and make a VAPID key.

Works on the registry file directly (as ``queue`` does on the queue file), so it needs no
running daemon; the kinds it accepts are those the configured drivers serve.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from push_notification.config import DaemonConfig, load_config
from push_notification.devices.contract import DeviceError
from push_notification.devices.kinds import served_kinds
from push_notification.devices.registration import parse_registration
from push_notification.devices.service import DeviceService
from push_notification.devices.vapid import create_vapid_key
from push_notification.devices.wiring import open_registry
from push_notification.drivers import find_driver

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="PUSH_NOTIFICATION_CONFIG",
    help="Config file (its state_dir/devices_path and drivers). Env: PUSH_NOTIFICATION_CONFIG.",
)


def _service(config: DaemonConfig) -> DeviceService:
    factories = [find_driver(inst.driver, inst.name, inst.where).load() for inst in config.instances]
    registry = open_registry(config)
    return DeviceService(registry, served_kinds(factories), expiry=config.device_expiry)


def _run(config_path: str | None, work: Any) -> Any:
    async def go() -> Any:
        service = _service(load_config(config_path))
        try:
            return await work(service)
        finally:
            await service.registry.close()

    return asyncio.run(go())


def _subscription(text: str) -> Any:
    """JSON text, or ``@file`` holding it."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise DeviceError(f"cannot read the subscription from {text[1:]}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DeviceError(f"the subscription is not valid JSON: {exc}") from None


@click.group("devices")
def devices_group() -> None:
    """The devices drivers wake (Web Push subscriptions, APNs and FCM tokens)."""


@devices_group.command("add")
@config_option
@click.option("--user", "-u", required=True, help="The mail user.")
@click.option("--kind", "-k", default="webpush", show_default=True, help="webpush, apns, fcm...")
@click.option("--subscription", help="Web Push: the PushSubscription JSON, or @FILE.")
@click.option("--token", help="APNs/FCM: the device token.")
@click.option("--label", default="", help="A name for people (laptop, Jane's phone).")
def devices_add(
    config_path: str | None, user: str, kind: str, subscription: str | None, token: str | None, label: str
) -> None:
    """Register a device (the same address again updates it); prints its id."""
    body: dict[str, Any] = {"user": user, "kind": kind, "label": label}
    if subscription is not None:
        body["subscription"] = _subscription(subscription)
    if token is not None:
        body["token"] = token

    async def work(service: DeviceService) -> str:
        device = await service.register(parse_registration(body, service.kinds), "cli")
        return device.id

    click.echo(_run(config_path, work))


@devices_group.command("list")
@config_option
@click.option("--user", "-u", help="Only this user's devices.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per device.")
def devices_list(config_path: str | None, user: str | None, as_json: bool) -> None:
    """List devices (never their tokens or keys)."""

    async def work(service: DeviceService) -> list[dict[str, Any]]:
        return [d.public() for d in await service.registry.list(user)]

    for device in _run(config_path, work):
        if as_json:
            click.echo(json.dumps(device))
        else:
            success = "never" if device["last_success"] is None else f"{device['last_success']:.0f}"
            click.echo(
                f"{device['id']}  {device['kind']:<8} {device['user']}  label={device['label'] or '-'}"
                f"  last_success={success} failures={device['failures']}"
            )


@devices_group.command("remove")
@config_option
@click.argument("device_id")
def devices_remove(config_path: str | None, device_id: str) -> None:
    """Remove the device DEVICE_ID."""

    async def work(service: DeviceService) -> bool:
        return await service.remove(device_id)

    if not _run(config_path, work):
        raise click.ClickException(f"no device {device_id!r} (see push-notification devices list)")


@devices_group.command("vapid-key")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key (every subscription must then be renewed).")
def devices_vapid_key(path: str, force: bool) -> None:
    """Create a VAPID key file (PEM, mode 0600) for Web Push; prints the public key for the web app."""
    click.echo(create_vapid_key(Path(path), replace=force))
