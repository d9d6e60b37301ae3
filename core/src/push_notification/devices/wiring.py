"""The daemon's device registry, kept to one call at start-up."""

from __future__ import annotations

from push_notification.config import DaemonConfig
from push_notification.devices.service import DeviceService
from push_notification.devices.sqlite import SqliteDeviceRegistry


def open_device_service(config: DaemonConfig) -> DeviceService:
    """The registry at ``devices_path``; the kinds are filled in once the drivers are loaded."""
    return DeviceService(SqliteDeviceRegistry(config.devices_path), {}, expiry=config.device_expiry)
