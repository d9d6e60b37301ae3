"""The pytest plugin of the testing kit (entry point ``pytest11``): fixtures over ``kit.py``.

Only pytest loads this module; the daemon and the kit never import pytest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from push_notification.events import Event
from push_notification.testing.kit import DriverHarness, make_event, make_transaction
from push_notification.testing.redis import RedisServer, RedisUnavailable
from push_notification.transaction import Transaction


@pytest.fixture(name="make_event")
def _make_event() -> Callable[..., Event]:
    """Build an event: ``make_event("MessageNew", uid=3, subject="Hi")``."""
    return make_event


@pytest.fixture(name="make_transaction")
def _make_transaction() -> Callable[..., Transaction]:
    """Build a transaction: ``make_transaction(event1, event2, user="bob")``."""
    return make_transaction


@pytest.fixture(name="driver_harness")
def _driver_harness() -> Callable[..., DriverHarness]:
    """Create a :class:`DriverHarness`: ``async with driver_harness(MyDriver, {...}) as h``."""
    return DriverHarness


def started_redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, stopped when the generator ends. Without
    Debian's redis-server the test skips, except under ``CI=true``, where that is a failure
    (``scripts/install-redis`` installs it). Fixtures of another scope ``yield from`` this."""
    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture(name="redis_server")
def _redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (see :func:`started_redis_server`)."""
    yield from started_redis_server()
