"""Which device kinds the configured drivers serve (their ``device_kinds`` class attribute)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from push_notification.devices.contract import DeviceKind


def declared_kinds(driver: Any) -> Mapping[str, DeviceKind]:
    """A driver class's (or plugin's) ``device_kinds``: kind name → parser of its fields."""
    kinds = getattr(driver, "device_kinds", None)
    return kinds if isinstance(kinds, Mapping) else {}


def served_kinds(drivers: Iterable[Any]) -> dict[str, DeviceKind]:
    """Every kind some driver serves; instances of one driver share its parser."""
    served: dict[str, DeviceKind] = {}
    for driver in drivers:
        for kind, parser in declared_kinds(driver).items():
            served.setdefault(kind.lower(), parser)
    return served
