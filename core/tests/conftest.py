"""Fixtures shared by the core's tests: a real redis-server for the Redis backends."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from push_notification.testing.redis import RedisServer, RedisUnavailable


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    """A clean database for each test."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    yield redis_server.url
