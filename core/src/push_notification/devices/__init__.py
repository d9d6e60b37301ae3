"""Devices to wake: the registry (contract, SQLite store), registration (HTTP, CLI, METADATA),
what a push may say (content-free payloads, wake filters) and its lifecycle (gone, expiry).

The core proper never imports this package: drivers see the registry through the small
:class:`push_notification.drivers.Devices` protocol on their context.
"""

from push_notification.devices.contract import Device, DeviceError, DeviceFields, DeviceKind, DeviceRegistry

__all__ = ["Device", "DeviceError", "DeviceFields", "DeviceKind", "DeviceRegistry"]
