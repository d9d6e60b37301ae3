"""The HTTP ingress: one transaction per ``POST /v1/transactions``, plus ``GET /healthz``.

Answers ``202`` once the queue accepted the transaction, ``400`` with a one-line reason for
malformed input (anything that could never be delivered: such a transaction is refused here,
never queued), ``401`` without the configured token, ``408`` when the body does not arrive
within ``ingress_body_timeout``, ``413`` for a body over ``ingress_max_body_size``, ``503``
with ``Retry-After`` when the queue is past its high-water mark (the Dovecot bridge then
spools and retries). HTTP protocol errors are aiohttp's ``400`` and one log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from push_notification.config.daemon import parse_listen
from push_notification.config.ingress_address import TRANSACTIONS_PATH
from push_notification.errors import EventError
from push_notification.queue import Queue, QueueFull
from push_notification.transaction import transaction_from_json

if TYPE_CHECKING:
    from push_notification.config.daemon import DaemonConfig

log = logging.getLogger("push_notification.server.ingress")

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
#: How long aiohttp keeps reading a refused request's body so the client sees the answer.
_LINGER = 1.0


@dataclass(frozen=True)
class IngressLimits:
    """What one client may ask of the ingress (the ``ingress_*`` settings; defaults as there)."""

    max_body: int = 1 << 20
    max_events: int = 1000
    body_timeout: float = 10.0
    header_timeout: float = 10.0
    max_connections: int = 4096

    @classmethod
    def of(cls, config: DaemonConfig) -> IngressLimits:
        return cls(
            max_body=config.ingress_max_body_size,
            max_events=config.ingress_max_events,
            body_timeout=config.ingress_body_timeout,
            header_timeout=config.ingress_header_timeout,
            max_connections=config.ingress_max_connections,
        )


#: 401 for a request without the ingress token, else None.
Refuse = Callable[[web.Request], web.Response | None]
#: Adds the routes of a feature (device registration) behind the same token.
Extension = Callable[[web.Application, Refuse], None]

_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _closing(response: web.Response) -> web.Response:
    """``response``, after which the connection closes (its unread body is not waited for)."""
    response.force_close()
    return response


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, one line per failure: a malformed request (duplicate
    Content-Length, obs-fold, too many headers...) is the client's mistake, not a traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300] if exc is not None else "no reason given"
        text = (str(msg) % args) if args else str(msg)
        if isinstance(exc, HttpProcessingError):  # a malformed request: the client's mistake
            self.warning("ingress: %s: %s", text, reason)
        elif isinstance(exc, ConnectionError):  # the client went away mid-request
            self.info("ingress: %s: %s", text, reason)
        else:
            self.error("ingress: %s: %s", text, reason)


def runner_options(limits: IngressLimits) -> dict[str, Any]:
    """``web.AppRunner`` keyword arguments for the ingress: no access log, one-line protocol errors."""
    return {
        "handle_signals": False,
        "access_log": None,
        "logger": ProtocolLog(logging.getLogger("push_notification.server.http"), {}),
        "lingering_time": min(_LINGER, limits.body_timeout),
    }


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
    limits: IngressLimits = IngressLimits(),
    extensions: Iterable[Extension] = (),
) -> web.Application:
    """The ingress application: a valid transaction goes straight into ``queue``. ``metrics``
    serves ``GET /metrics``, behind the same token: the figures name instances and volumes.

    ``health`` gives ``/healthz``'s details; a ``"status"`` other than ``"ok"`` among them
    (``"degraded"``: a crashed task, an unusable spool) is answered with 503. Without the token
    (when one is set) only the status is shown: instance names and queue depth are for the operator.
    """
    expected = f"Bearer {token}".encode() if token else None
    max_body, max_events, body_timeout = limits.max_body, limits.max_events, limits.body_timeout

    def authorised(request: web.Request) -> bool:
        if expected is None:
            return True
        # aiohttp decodes header bytes as UTF-8 with surrogateescape: this gives the bytes back.
        sent = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(sent, expected)

    def refused(request: web.Request) -> web.Response | None:
        """401 unless the request carries the token (when one is configured)."""
        if authorised(request):
            return None
        return _error(
            401, "missing or wrong ingress token (send Authorization: Bearer <token>)", **{"WWW-Authenticate": "Bearer"}
        )

    async def read_body(request: web.Request) -> bytes | web.Response:
        """The body, or the 413/408 answer (the connection is closed after either)."""
        length = request.content_length
        if length is not None and length > max_body:
            return _closing(_error(413, f"transaction of {length} bytes is larger than the {max_body} allowed"
                                        " (ingress_max_body_size)"))  # fmt: skip
        try:
            if request.content.is_eof():  # the usual case: the body came with the head
                return await request.read()
            async with asyncio.timeout(body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _closing(_error(413, f"transaction larger than the {max_body} allowed (ingress_max_body_size)"))
        except TimeoutError:
            log.warning("ingress: %s sent no complete body within %gs; closing", request.remote, body_timeout)
            return _closing(_error(408, f"body not received within {body_timeout:g}s (ingress_body_timeout)"))

    async def post_transaction(request: web.Request) -> web.Response:
        if (refusal := refused(request)) is not None:
            return refusal
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            txn = transaction_from_json(body, max_events=max_events)
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
        """200 while ``status`` is ``ok``; 503 when degraded; the details only with the token."""
        details: dict[str, Any] = {"status": "ok", **(health() if health else {})}
        status = 200 if details["status"] == "ok" else 503
        if not authorised(request):
            details = {"status": details["status"]}
        return web.json_response(details, status=status)

    async def get_metrics(request: web.Request) -> web.StreamResponse:
        assert metrics is not None
        if (refusal := refused(request)) is not None:
            return refusal
        return await metrics(request)

    app = web.Application(client_max_size=max_body)
    app.router.add_post(TRANSACTIONS_PATH, post_transaction)
    app.router.add_get(HEALTH_PATH, healthz)
    if metrics is not None:
        app.router.add_get(METRICS_PATH, get_metrics)
    for extend in extensions:
        extend(app, refused)
    return app
