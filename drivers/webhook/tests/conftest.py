"""A real HTTP endpoint on 127.0.0.1 that records every request it gets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from push_notification.testing.loopback import loopback_server


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self):
        import json

        return json.loads(self.body)


Handler = Callable[[web.Request, Received], Awaitable[web.StreamResponse]]


async def _ok(request: web.Request, received: Received) -> web.StreamResponse:
    return web.Response(text="ok")


class Endpoint:
    """Answers with ``handler`` (200 "ok" by default); ``responses`` (status, headers) are
    used first, one per request, to script failures."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.handler: Handler = _ok
        self.responses: list[tuple[int, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.read(),
        )
        self.received.append(received)
        if self.responses:
            status, headers = self.responses.pop(0)
            return web.Response(status=status, headers=headers, text=f"status {status}")
        return await self.handler(request, received)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    async with loopback_server(ep.handle) as ep.url:
        yield ep
