"""The Redis queue's pipelined connection (queue/redis_wire.py) against a real redis-server:
replies go to their commands in order, an error reply is an error of its command only, and a
connection whose oldest command gets no answer in time is given up (one timer watches them all)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from push_notification.config.redis_client import redis_client
from push_notification.queue.redis_wire import Wire, WireError


@asynccontextmanager
async def wire_to(redis_url: str, **settings: float) -> AsyncIterator[Wire]:
    """A wire over a client of its own, both closed after."""
    client = redis_client(redis_url)
    wire = Wire(client, **settings)
    try:
        yield wire
    finally:
        await wire.close()
        await client.aclose()


async def test_pipelined_commands_each_get_their_own_reply(redis_url: str) -> None:
    async with wire_to(redis_url) as wire:
        replies = await asyncio.gather(*(wire.call("ECHO", f"reply {i}") for i in range(200)))
        assert replies == [f"reply {i}" for i in range(200)]


async def test_an_error_reply_fails_its_command_and_not_the_ones_around_it(redis_url: str) -> None:
    async with wire_to(redis_url) as wire:
        before = wire.call("ECHO", "before")
        wrong = wire.call("NO-SUCH-COMMAND")
        after = wire.call("ECHO", "after")
        results = await asyncio.gather(before, wrong, after, return_exceptions=True)
        assert results[0] == "before" and results[2] == "after"
        assert isinstance(results[1], WireError) and "unknown command" in str(results[1]).lower()


async def test_a_command_without_an_answer_in_time_fails_every_command_waiting_behind_it(redis_url: str) -> None:
    async with wire_to(redis_url, reply_timeout=0.2) as wire:
        stuck = asyncio.ensure_future(wire.call("BLPOP", "pn-test:never-filled", 0))  # blocks in Redis for good
        behind = asyncio.ensure_future(wire.call("ECHO", "behind"))
        for command in (stuck, behind):
            with pytest.raises(WireError, match=r"no reply from Redis within 0\.2s"):
                await command
        assert await wire.call("ECHO", "again") == "again"  # the next command connects anew


async def test_a_blocking_command_may_wait_as_long_as_it_says(redis_url: str) -> None:
    async with wire_to(redis_url, reply_timeout=0.2) as wire:
        # BLPOP's own timeout (0.5 s) is longer than the reply timeout: given as the call's timeout, no error.
        assert await wire.call("BLPOP", "pn-test:empty", 0.5, timeout=0.5) is None
        assert await wire.call("ECHO", "still here") == "still here"
