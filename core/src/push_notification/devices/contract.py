"""The device registry's contract: what a device is, and the few calls a store must offer.

SQLite (beside the queue) implements it for one daemon; a shared engine (Redis) can hold it
for many. A device is unique by kind and address: registering the same endpoint or token
again updates it instead of adding a second one (reinstalled apps re-register).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from push_notification.errors import PushNotificationError

#: chatmail's figure: a device nobody refreshed for 90 days is gone.
DEFAULT_EXPIRY = 90 * 86400.0


class DeviceError(PushNotificationError, ValueError):
    """A registration that cannot be taken (one line naming the field and the fix)."""


class DeviceFields(NamedTuple):
    """What a kind's parser makes of a registration: where to push, and with which keys."""

    address: str
    keys: Mapping[str, str]


#: A kind's parser: the registration (``subscription``/``token``...) → its fields, or DeviceError.
DeviceKind = Callable[[Mapping[str, Any]], DeviceFields]


@dataclass(frozen=True, slots=True)
class Device:
    """One registered device (implements :class:`push_notification.drivers.PushDevice`)."""

    id: str
    user: str
    kind: str
    address: str
    keys: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    label: str = ""
    #: Epoch seconds: registered, last registered again, last successful push.
    created: float = 0.0
    refreshed: float = 0.0
    last_success: float | None = None
    #: Failed pushes since the last success.
    failures: int = 0

    def public(self) -> dict[str, Any]:
        """What listings show: never the address or the keys (a token is a credential)."""
        return {
            "id": self.id,
            "user": self.user,
            "kind": self.kind,
            "label": self.label,
            "created": self.created,
            "refreshed": self.refreshed,
            "last_success": self.last_success,
            "failures": self.failures,
        }


class DeviceRegistry(ABC):
    """Where devices live. Methods are async so a networked store fits the same contract."""

    @abstractmethod
    async def register(
        self, user: str, kind: str, fields: DeviceFields, *, label: str = "", now: float | None = None
    ) -> Device:
        """Add the device, or update the one with the same kind and address (new user, keys,
        label; refreshed now; failures forgotten)."""

    @abstractmethod
    async def get(self, device_id: str) -> Device | None: ...

    @abstractmethod
    async def list(self, user: str | None = None, kinds: Collection[str] = ()) -> list[Device]:
        """The devices of ``user`` (every user's with ``None``), of ``kinds`` (any if empty),
        oldest first."""

    @abstractmethod
    async def remove(self, device_id: str) -> bool:
        """Forget a device; False if there was none."""

    @abstractmethod
    async def record(self, device_id: str, *, success: bool, now: float | None = None) -> None:
        """A push outcome: a success sets ``last_success`` and clears ``failures``; a failure
        counts one more."""

    @abstractmethod
    async def expire(self, older_than: float) -> int:
        """Remove devices not refreshed since the epoch second ``older_than``; how many."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""
