"""Device registration over HTTP, on the ingress and behind its token.

``POST /v1/devices`` → 201 ``{"id": ...}``; ``GET /v1/devices?user=U`` → the user's devices
(never their addresses or keys); ``DELETE /v1/devices/ID`` → 204, or 404 if unknown. A bad
registration is a 400 with one line; the body is never logged (it holds the push token).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from aiohttp import web

from push_notification.devices.contract import DeviceError
from push_notification.devices.registration import parse_json_registration
from push_notification.devices.service import DeviceService

log = logging.getLogger("push_notification.devices.http")

DEVICES_PATH = "/v1/devices"
#: The ingress's token check: a 401 answer, or None (``server.ingress.Refuse``).
Refuse = Callable[[web.Request], web.Response | None]
#: Adds routes to the ingress application (``server.ingress.Extension``).
Extension = Callable[[web.Application, Refuse], None]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def device_routes(service: DeviceService) -> Extension:
    """The ingress extension serving the device registry."""

    def extend(app: web.Application, refused: Refuse) -> None:
        async def post(request: web.Request) -> web.Response:
            if (refusal := refused(request)) is not None:
                return refusal
            try:
                registration = parse_json_registration(await request.read(), service.kinds)
            except DeviceError as exc:
                log.warning("device registration from %s refused: %s", request.remote, exc)
                return _error(400, str(exc))
            device = await service.register(registration, "http")
            return web.json_response({"id": device.id}, status=201)

        async def list_devices(request: web.Request) -> web.Response:
            if (refusal := refused(request)) is not None:
                return refusal
            user = request.query.get("user", "")
            if not user:
                return _error(400, "give the user: GET /v1/devices?user=USER")
            devices = await service.registry.list(user)
            return web.json_response({"devices": [d.public() for d in devices]}, dumps=json.dumps)

        async def delete(request: web.Request) -> web.Response:
            if (refusal := refused(request)) is not None:
                return refusal
            if not await service.remove(request.match_info["device_id"]):
                return _error(404, "no such device (list them with GET /v1/devices?user=USER)")
            return web.Response(status=204)

        app.router.add_post(DEVICES_PATH, post)
        app.router.add_get(DEVICES_PATH, list_devices)
        app.router.add_delete(DEVICES_PATH + "/{device_id}", delete)

    return extend
