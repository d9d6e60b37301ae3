"""The OX test kit: a real OX App Suite push endpoint on 127.0.0.1 (plain or TLS), a clock the
test moves by hand, METADATA activation, and the driver behind the real dispatcher."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy
from push_notification.server.metadata import MetadataStore
from push_notification.testing import DriverHarness
from push_notification.transaction import OX_METADATA_KEY as OX_METADATA_KEY
from push_notification_ox import OxDriver

LOGIN = "login"
PASSWORD = "s3cr3t-Pa55"
PATH = "/preliminary/http-notify/v1/notify"


@dataclass
class Reply:
    """How the endpoint answers one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (longer than the driver's timeout = no answer).
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    #: The client's (address, port): equal for requests sent over one kept-alive connection.
    peer: tuple[str, int]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class OxEndpoint:
    """OX's ``http-notify`` endpoint: checks method, path, Basic auth, headers and JSON, records
    each request, and answers from ``replies`` (then 200)."""

    def __init__(self, *, require_auth: bool = True) -> None:
        self.require_auth = require_auth
        self.replies: list[Reply] = []
        self.received: list[Received] = []
        self.rejected: list[str] = []
        #: Requests being answered right now, and the most there ever were at once.
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self.scheme = "http"
        self._stop = asyncio.Event()

    def url(self, *, login: str | None = LOGIN, password: str | None = PASSWORD, path: str = PATH) -> str:
        userinfo = f"{login}:{password}@" if login is not None and password is not None else ""
        return f"{self.scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    @property
    def bodies(self) -> list[Any]:
        return [r.json for r in self.received]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        self.received.append(Received(request.method, request.path, request.headers, body, tuple(peer)))
        problem = self._check(request, body)
        if problem is not None:
            self.rejected.append(problem)
            return web.Response(status=401 if problem == "authorization" else 400, text=problem)
        reply = self.replies.pop(0) if self.replies else Reply()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if reply.delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), reply.delay)
        finally:
            self.in_flight -= 1
        return web.Response(status=reply.status, headers=reply.headers)

    def _check(self, request: web.Request, body: bytes) -> str | None:
        if request.method != "PUT":
            return f"method {request.method}"
        if request.headers.get("Content-Type") != "application/json; charset=utf-8":
            return f"content-type {request.headers.get('Content-Type')!r}"
        expected = "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
        if self.require_auth and request.headers.get("Authorization") != expected:
            return "authorization"
        try:
            data = json.loads(body)
        except ValueError:
            return "invalid JSON"
        if not isinstance(data, dict) or data.get("event") != "messageNew" or "user" not in data:
            return "not an OX notification"
        return None

    def stop(self) -> None:
        self._stop.set()


async def start_endpoint(endpoint: OxEndpoint, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", PATH, endpoint.handle)
    app.router.add_route("*", PATH + "/second", endpoint.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert server is not None
    endpoint.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    endpoint.scheme = "https" if ssl_context is not None else "http"
    return runner


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
