"""The HTTP ingress: one transaction per ``POST /v1/transactions``, plus ``GET /healthz``,
``GET /metrics`` and the device registry (``/v1/devices``).

Answers ``202`` once the queue accepted the transaction, ``400`` with a one-line reason for
malformed input (anything that could never be delivered: such a transaction is refused here,
never queued), ``401`` without the configured token, ``408`` when the body does not arrive
within ``ingress_body_timeout``, ``413`` for a body over ``ingress_max_body_size``, ``503``
with ``Retry-After`` when the queue is past its high-water mark (the Dovecot bridge then
spools and retries). The HTTP itself, and its limits, are in http11.py.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import orjson

from push_notification.config.daemon import parse_listen
from push_notification.config.ingress_address import TRANSACTIONS_PATH
from push_notification.devices.http import DEVICES_PATH, DeviceRoutes, Reply
from push_notification.errors import EventError
from push_notification.queue import Queue, QueueFull
from push_notification.server.http11 import Handler, IngressLimits, Later, Request, Response, error
from push_notification.transaction import Transaction, transaction_from_json

__all__ = ["HEALTH_PATH", "METRICS_PATH", "Ingress", "IngressLimits", "listen_address"]

log = logging.getLogger("push_notification.server.ingress")

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
_UNAUTHORISED = error(
    401, "missing or wrong ingress token (send Authorization: Bearer <token>)", ("WWW-Authenticate", "Bearer")
)


def listen_address(text: str) -> tuple[str, int] | str:
    """Where to bind: (host, port) for ``HOST:PORT``/``[v6]:PORT``, the path for ``unix:/path``.

    Raises ValueError with the accepted forms (the same check as the ``listen`` setting's).
    """
    text = parse_listen(text)
    if text.startswith("unix:"):
        return text[5:]
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Ingress:
    """The ingress's routes: a valid transaction goes straight into ``queue``.

    ``metrics`` renders ``GET /metrics`` (as ``(content type, body)``), behind the token: the
    figures name instances and volumes. ``health`` gives ``/healthz``'s details; a ``"status"``
    other than ``"ok"`` among them (``"degraded"``: a crashed task, an unusable spool) is
    answered with 503. Without the token (when one is set) only the status is shown: instance
    names and queue depth are for the operator.
    """

    def __init__(
        self,
        queue: Queue,
        *,
        token: str | None = None,
        health: Callable[[], dict[str, Any]] | None = None,
        metrics: Callable[[], tuple[bytes, bytes]] | None = None,
        limits: IngressLimits | None = None,
        devices: DeviceRoutes | None = None,
    ) -> None:
        self.queue = queue
        self.limits = limits or IngressLimits()
        self._expected = f"Bearer {token}".encode() if token else None
        self._health = health
        self._metrics = metrics
        self._devices = devices
        #: path -> method -> (handler, whether it needs the token)
        self._routes: dict[str, dict[str, tuple[Handler, bool]]] = {
            TRANSACTIONS_PATH: {"POST": (self._post_transaction, True)},
            HEALTH_PATH: {"GET": (self._healthz, False)},
        }
        if metrics is not None:
            self._routes[METRICS_PATH] = {"GET": (self._get_metrics, True)}
        if devices is not None:
            self._routes[DEVICES_PATH] = {"POST": (self._register_device, True), "GET": (self._list_devices, True)}

    def route(self, request: Request) -> Response | Handler:
        """The handler for the request head, or its refusal: 404, 405, 401."""
        methods = self._routes.get(request.path)
        if methods is None:
            if self._devices is None or not request.path.startswith(DEVICES_PATH + "/"):
                return error(404, f"no such path {request.path[:100]!r} (the ingress serves {TRANSACTIONS_PATH})")
            methods = {"DELETE": (self._remove_device, True)}
        found = methods.get("GET" if request.method == "HEAD" else request.method)
        if found is None:
            allowed = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
            return error(405, f"{request.method} is not served at {request.path} (use {allowed})", ("Allow", allowed))
        handler, guarded = found
        if guarded and not self._authorised(request):
            return _UNAUTHORISED
        return handler

    def _authorised(self, request: Request) -> bool:
        if self._expected is None:
            return True
        return hmac.compare_digest(request.headers.get(b"authorization", b""), self._expected)

    # -- POST /v1/transactions --------------------------------------------------------

    def _post_transaction(self, request: Request) -> Response | Later:
        try:
            txn = transaction_from_json(request.body, max_events=self.limits.max_events)
        except EventError as exc:
            log.warning("ingress: rejected transaction from %s: %s", request.remote, exc)
            return error(400, str(exc))
        answer = Later()
        self.queue.put_then(txn, partial(_queued, answer, txn))
        return answer

    # -- GET /healthz, GET /metrics ---------------------------------------------------

    def _healthz(self, request: Request) -> Response:
        """200 while ``status`` is ``ok``; 503 when degraded; the details only with the token."""
        details: dict[str, Any] = {"status": "ok", **(self._health() if self._health else {})}
        status = 200 if details["status"] == "ok" else 503
        if not self._authorised(request):
            details = {"status": details["status"]}
        return Response(status, json.dumps(details).encode())

    def _get_metrics(self, request: Request) -> Response:
        assert self._metrics is not None
        content_type, body = self._metrics()
        return Response(200, body, content_type=content_type)

    # -- /v1/devices ------------------------------------------------------------------

    async def _register_device(self, request: Request) -> Response:
        assert self._devices is not None
        return _reply(await self._devices.register(request.body, request.remote))

    async def _list_devices(self, request: Request) -> Response:
        assert self._devices is not None
        user = parse_qs(request.query).get("user", [""])[0]
        return _reply(await self._devices.list(user))

    async def _remove_device(self, request: Request) -> Response:
        assert self._devices is not None
        return _reply(await self._devices.remove(request.path[len(DEVICES_PATH) + 1 :]))


def _queued(answer: Later, txn: Transaction, refused: BaseException | None) -> None:
    """202 once the queue holds ``txn``; 503 with Retry-After when it is full; anything else
    as http11 answers a handler's failure (a 500; a cancelled put closes the connection)."""
    if refused is None:
        answer.give(Response(202, b'{"id":%s}' % _json_string(txn.id)))
    elif isinstance(refused, QueueFull):
        log.warning("ingress: busy, answering 503: %s", refused)
        retry_after = str(max(1, round(refused.retry_after)))
        answer.give(error(503, f"busy: {refused}; retry later", ("Retry-After", retry_after)))
    else:
        answer.give(refused)


def _json_string(text: str) -> bytes:
    """``text`` as a JSON string: orjson's, or Python's for what orjson refuses (a lone surrogate)."""
    try:
        return orjson.dumps(text)
    except TypeError:
        return json.dumps(text).encode()


def _reply(reply: Reply) -> Response:
    status, body = reply
    return Response(status, b"" if body is None else json.dumps(body).encode())
