"""Shared test helpers: the OX metadata key, a driver run over the real dispatcher, a clock."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from push_notification.metadata import MetadataStore
from push_notification.testing import DriverHarness
from push_notification.transaction import OX_METADATA_KEY
from push_notification_ox import OxDriver

__all__ = ["OX_METADATA_KEY", "FakeClock", "activated", "harness"]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def activated(*users: str, value: str = "user=11@3") -> MetadataStore:
    """A metadata store where ``users`` enabled OX push, as ``doveadm mailbox metadata set`` does."""
    store = MetadataStore()
    for user in users:
        store.set(user, OX_METADATA_KEY, value)
    return store


def harness(
    settings: dict[str, Any],
    *,
    metadata: MetadataStore | None = None,
    clock: Callable[[], float] | None = None,
    instance: str = "ox",
) -> DriverHarness:
    """The OX driver behind the real dispatcher."""
    factory: Callable[..., object] = OxDriver
    if clock is not None:
        factory = functools.partial(OxDriver, clock=clock)
    return DriverHarness(factory, settings, metadata=metadata or MetadataStore(), instance=instance)
