"""Device registration over HTTP, on the ingress and behind its token.

``POST /v1/devices`` → 201 ``{"id": ...}``; ``GET /v1/devices?user=U`` → the user's devices
(never their addresses or keys); ``DELETE /v1/devices/ID`` → 204, or 404 if unknown. A bad
registration is a 400 with one line; the body is never logged (it holds the push token).

Each call gives ``(status, JSON body or None)``; the ingress mounts them at
:data:`DEVICES_PATH` and speaks the HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

from push_notification.devices.contract import DeviceError
from push_notification.devices.registration import parse_json_registration
from push_notification.devices.service import DeviceService

log = logging.getLogger("push_notification.devices.http")

DEVICES_PATH = "/v1/devices"
#: An answer: the HTTP status and the JSON body (None: no body).
Reply = tuple[int, dict[str, Any] | None]


class DeviceRoutes:
    """What the ingress serves under :data:`DEVICES_PATH`, for ``service``."""

    def __init__(self, service: DeviceService) -> None:
        self.service = service

    async def register(self, body: bytes, remote: str) -> Reply:
        """``POST /v1/devices``."""
        try:
            registration = parse_json_registration(body, self.service.kinds)
        except DeviceError as exc:
            log.warning("device registration from %s refused: %s", remote, exc)
            return 400, {"error": str(exc)}
        device = await self.service.register(registration, "http")
        return 201, {"id": device.id}

    async def list(self, user: str) -> Reply:
        """``GET /v1/devices?user=USER``."""
        if not user:
            return 400, {"error": "give the user: GET /v1/devices?user=USER"}
        devices = await self.service.registry.list(user)
        return 200, {"devices": [d.public() for d in devices]}

    async def remove(self, device_id: str) -> Reply:
        """``DELETE /v1/devices/ID``."""
        if not await self.service.remove(device_id):
            return 404, {"error": "no such device (list them with GET /v1/devices?user=USER)"}
        return 204, None
