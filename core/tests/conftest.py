"""Fixtures shared by the core's tests: a real redis-server for the Redis backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from push_notification.testing.pytest_plugin import started_redis_server
from push_notification.testing.redis import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server per test module (each test gets a flushed database from ``redis_url``)."""
    yield from started_redis_server()


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    """A clean database for each test."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    yield redis_server.url
