"""The daemon's device registry, kept to one call at start-up."""

from __future__ import annotations

from push_notification.config import DaemonConfig
from push_notification.devices.contract import DeviceRegistry
from push_notification.devices.service import DeviceService
from push_notification.devices.sqlite import SqliteDeviceRegistry


def open_registry(config: DaemonConfig) -> DeviceRegistry:
    """In Redis beside a shared queue (every daemon wakes any user's devices), else the SQLite
    file at ``devices_path``."""
    if config.queue == "redis" and config.queue_url:
        from push_notification.devices.redis import RedisDeviceRegistry

        return RedisDeviceRegistry(config.queue_url)
    return SqliteDeviceRegistry(config.devices_path)


def open_device_service(config: DaemonConfig) -> DeviceService:
    """The registry; the kinds are filled in once the drivers are loaded."""
    return DeviceService(open_registry(config), {}, expiry=config.device_expiry)
