"""A value put into the URL template stays one path segment or query value: a user name
such as ``../../admin?x=1`` can never change where the request goes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
from aiohttp import web
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_webhook import WebhookDriver


@pytest.fixture
def raw_paths(endpoint: Any) -> list[str]:
    """The request targets the endpoint saw, exactly as sent (before any decoding)."""
    seen: list[str] = []

    async def record(request: web.Request, received: Any) -> web.StreamResponse:
        seen.append(request.raw_path)
        return web.Response(text="ok")

    endpoint.handler = record
    return seen


async def send_as(user: str, url: str) -> DriverHarness:
    async with DriverHarness(WebhookDriver, {"url": url, "events": "MessageNew"}) as harness:
        await harness.send(make_transaction(make_event("MessageNew", uid=7), user=user))
    return harness


def segments(raw_path: str) -> list[str]:
    """The decoded segments of a request target's path (a %2F inside one stays inside it)."""
    path, _, _ = raw_path.partition("?")
    return [unquote(segment) for segment in path.split("/")]


@pytest.mark.parametrize("user", ["../../admin?x=1", "alice@example.com", "a b#c&d/e", "%2e%2e"])
async def test_a_raw_value_in_the_url_path_is_escaped(endpoint: Any, raw_paths: list[str], user: str) -> None:
    harness = await send_as(user, endpoint.url.rstrip("/") + "/users/{{ user }}/mail/{{ event.uid }}")
    assert harness.plugin.delivered == 1
    (sent,) = raw_paths
    assert "?" not in sent
    assert segments(sent) == ["", "users", user, "mail", "7"]


async def test_urlencode_escapes_slashes_too_and_is_not_escaped_twice(endpoint: Any, raw_paths: list[str]) -> None:
    await send_as("../x@y", endpoint.url.rstrip("/") + "/u/{{ user | urlencode }}?q={{ {'a': 'b&c'} | urlencode }}")
    (sent,) = raw_paths
    assert segments(sent) == ["", "u", "../x@y"]
    assert parse_qs(sent.partition("?")[2]) == {"q": ["a=b&c"]}


async def test_a_value_that_is_a_dot_segment_is_refused_not_resolved(
    endpoint: Any, raw_paths: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    harness = await send_as("..", endpoint.url.rstrip("/") + "/users/{{ user }}/mail")
    assert harness.plugin.delivered == 0 and raw_paths == []
    assert "rendered a '.' or '..' path segment" in caplog.text
