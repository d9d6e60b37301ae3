"""The HTTP ingress: one transaction per ``POST /v1/transactions``, plus ``GET /healthz``.

Answers ``202`` once the queue accepted the transaction, ``400`` with a one-line reason for
malformed input, ``401`` without the configured token, ``503`` with ``Retry-After`` when the
queue is past its high-water mark (the Dovecot bridge then spools and retries).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from push_notification.config.daemon import parse_listen
from push_notification.errors import EventError
from push_notification.queue import Queue, QueueFull
from push_notification.transaction import transaction_from_json

log = logging.getLogger("push_notification.server.ingress")

TRANSACTIONS_PATH = "/v1/transactions"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
#: A transaction is small; anything bigger than this is a mistake, not mail.
MAX_BODY = 1 << 20

#: 401 for a request without the ingress token, else None.
Refuse = Callable[[web.Request], web.Response | None]
#: Adds the routes of a feature (device registration) behind the same token.
Extension = Callable[[web.Application, Refuse], None]

_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def listen_address(text: str) -> tuple[str, int] | str:
    """Where to bind: (host, port) for ``HOST:PORT``/``[v6]:PORT``, the path for ``unix:/path``.

    Raises ValueError with the accepted forms (the same check as the ``listen`` setting's).
    """
    text = parse_listen(text)
    if text.startswith("unix:"):
        return text[5:]
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def create_app(
    queue: Queue,
    *,
    token: str | None = None,
    health: Callable[[], dict[str, Any]] | None = None,
    metrics: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
    extensions: Iterable[Extension] = (),
) -> web.Application:
    """The ingress application: a valid transaction goes straight into ``queue``. ``metrics``
    serves ``GET /metrics``, behind the same token: the figures name instances and volumes."""
    expected = f"Bearer {token}".encode() if token else None

    def refused(request: web.Request) -> web.Response | None:
        """401 unless the request carries the token (when one is configured)."""
        if expected is None or hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return None
        return _error(
            401, "missing or wrong ingress token (send Authorization: Bearer <token>)", **{"WWW-Authenticate": "Bearer"}
        )

    async def post_transaction(request: web.Request) -> web.Response:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"transaction larger than {MAX_BODY} bytes")
        try:
            txn = transaction_from_json(body)
        except EventError as exc:
            log.warning("ingress: rejected transaction from %s: %s", request.remote, exc)
            return _error(400, str(exc))
        try:
            await queue.put(txn)
        except QueueFull as exc:
            log.warning("ingress: busy, answering 503: %s", exc)
            return _error(503, f"busy: {exc}; retry later", **{"Retry-After": str(max(1, round(exc.retry_after)))})
        # Built by hand: json_response's content-type handling costs more than the rest.
        body = b'{"id":' + json.dumps(txn.id).encode() + b"}"
        return web.Response(body=body, status=202, headers=_JSON_HEADERS)

    async def healthz(request: web.Request) -> web.Response:
        """200 while ``status`` is ``ok``; 503 when degraded (a crashed task, an unusable spool)."""
        details = {"status": "ok", **(health() if health else {})}
        return web.json_response(details, status=200 if details["status"] == "ok" else 503)

    async def get_metrics(request: web.Request) -> web.StreamResponse:
        assert metrics is not None
        if (refusal := refused(request)) is not None:
            return refusal
        return await metrics(request)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(TRANSACTIONS_PATH, post_transaction)
    app.router.add_get(HEALTH_PATH, healthz)
    if metrics is not None:
        app.router.add_get(METRICS_PATH, get_metrics)
    for extend in extensions:
        extend(app, refused)
    return app
