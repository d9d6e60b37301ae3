"""The ingress's deadlines (server/connections.py): one timer wheel for every connection.

A connection asks to be woken at a loop time; it is woken at that time or within a tick
after it, never before; asking for an earlier time moves it, a later one waits for the
wake-up in hand (the connection asks again then); a closed connection is never woken.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from push_notification.server.connections import Connections, wheel_tick
from push_notification.server.http11 import IngressLimits

TICK = 0.01


class Sleeper:
    """Stands for an Http11 connection: what the wheel needs of one."""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self.wheel_slot = 0
        self.reusable = False
        self.woken: list[float] = []
        self.done = asyncio.Event()

    def expired(self) -> None:
        self.woken.append(asyncio.get_running_loop().time())
        self.done.set()

    def close(self) -> None:
        self.connections.closed(self)  # type: ignore[arg-type]


def test_the_tick_is_a_quarter_of_the_shortest_timeout_within_bounds() -> None:
    assert wheel_tick(IngressLimits()) == 0.25  # the 1 s linger after a refusal
    assert wheel_tick(IngressLimits(header_timeout=0.2)) == 0.05
    assert wheel_tick(IngressLimits(header_timeout=0.001, body_timeout=0.001)) == 0.01


@settings(max_examples=25, deadline=None)
@given(delays=st.lists(st.lists(st.floats(0, 0.05), min_size=1, max_size=3), min_size=1, max_size=4))
def test_each_connection_is_woken_not_before_the_earliest_time_it_asked_for(delays: list[list[float]]) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        connections = Connections(10, tick=TICK)
        sleepers = [Sleeper(connections) for _ in delays]
        start = loop.time()
        for sleeper, asked in zip(sleepers, delays, strict=True):
            for delay in asked:
                connections.wake(sleeper, start + delay)  # type: ignore[arg-type]
        for sleeper, asked in zip(sleepers, delays, strict=True):
            await asyncio.wait_for(sleeper.done.wait(), 5)
            assert len(sleeper.woken) == 1
            assert sleeper.woken[0] >= start + min(asked) - 0.001  # uvloop's clock has 1 ms steps

    asyncio.run(run())


async def test_a_closed_connection_is_not_woken_and_the_wheel_stops_when_none_waits() -> None:
    connections = Connections(10, tick=TICK)
    gone, staying = Sleeper(connections), Sleeper(connections)
    now = asyncio.get_running_loop().time()
    connections.wake(gone, now + 0.02)  # type: ignore[arg-type]
    connections.wake(staying, now + 0.03)  # type: ignore[arg-type]
    gone.close()
    await asyncio.wait_for(staying.done.wait(), 5)
    await asyncio.sleep(3 * TICK)
    assert gone.woken == [] and len(staying.woken) == 1
    assert connections._turning is None  # nothing left to wake: no timer runs


async def test_a_later_time_waits_for_the_wake_up_in_hand() -> None:
    connections = Connections(10, tick=TICK)
    sleeper = Sleeper(connections)
    now = asyncio.get_running_loop().time()
    connections.wake(sleeper, now + 0.02)  # type: ignore[arg-type]
    connections.wake(sleeper, now + 10)  # type: ignore[arg-type]
    await asyncio.wait_for(sleeper.done.wait(), 5)
    assert len(sleeper.woken) == 1 and sleeper.woken[0] < now + 10


async def test_the_timer_is_set_for_the_first_deadline_only_not_every_tick() -> None:
    connections = Connections(10, tick=TICK)
    idle, busy = Sleeper(connections), Sleeper(connections)
    now = asyncio.get_running_loop().time()
    connections.wake(idle, now + 60)  # type: ignore[arg-type]
    assert connections._turning is not None and connections._turning.when() >= now + 60
    connections.wake(busy, now + 0.02)  # type: ignore[arg-type]
    assert connections._turning.when() < now + 1  # moved to the sooner deadline
    await asyncio.wait_for(busy.done.wait(), 5)
    assert connections._turning is not None and connections._turning.when() >= now + 60
    idle.close()
