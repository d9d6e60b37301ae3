"""The ``coalesce`` and ``defer_non_new`` instance settings, read by the daemon (not the driver)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from push_notification.settings import Settings, parse_time


@dataclass(frozen=True)
class StormSettings:
    #: Seconds within which a user's transactions are delivered as one (0 = off).
    coalesce: float = 0.0
    #: Seconds non-MessageNew transactions may wait to merge; new mail flushes them (0 = off).
    defer_non_new: float = 0.0

    @property
    def active(self) -> bool:
        return self.coalesce > 0 or self.defer_non_new > 0


def read_storm_settings(settings: Settings, driver: Any) -> StormSettings:
    """The instance's storm settings; the driver class's ``storm_defaults`` (device drivers
    turn it on) apply where the block says nothing. ``0`` turns either off."""
    defaults: Mapping[str, str] = getattr(driver, "storm_defaults", None) or {}
    values = {}
    for key in ("coalesce", "defer_non_new"):
        default = parse_time(str(defaults.get(key, "0")))
        values[key] = settings.get_time(key, default)
    return StormSettings(**values)
