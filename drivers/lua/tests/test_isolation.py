"""Each instance owns its Lua state and its thread: state is not shared, and a script blocked
on a slow HTTP call holds back neither the daemon's event loop nor the other instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from push_notification.dispatch import Dispatcher
from push_notification.drivers import DriverContext, create_instance
from push_notification.queue import MemoryQueue
from push_notification.settings import Settings
from push_notification.testing import make_event, make_transaction
from push_notification_lua import LuaDriver

COUNTER = """
count = (count or 0)
function dovecot_lua_notify_begin_txn(user) return {} end
function dovecot_lua_notify_event_message_new(ctx, e) count = count + 1 end
function dovecot_lua_notify_end_txn(ctx, success) dovecot.i_info("CALL count " .. count) end
"""

SLOW_POST = """
function dovecot_lua_notify_begin_txn(user) return {} end
function dovecot_lua_notify_event_message_new(ctx, e) end
function dovecot_lua_notify_end_txn(ctx, success)
  local rq = dovecot.http.client({request_timeout_msecs = 10000}):request({url = "%s", method = "POST"})
  rq:set_payload("x")
  dovecot.i_info("CALL slow " .. rq:submit():status())
end
"""


@asynccontextmanager
async def dispatcher(*instances: tuple[str, dict[str, Any]]) -> AsyncIterator[Dispatcher]:
    """A real dispatcher over several Lua instances, as the daemon runs them."""
    built = [
        create_instance(DriverContext(name, "lua", Settings.from_dict(name, settings)), LuaDriver)
        for name, settings in instances
    ]
    d = Dispatcher(MemoryQueue(), built)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def test_each_instance_has_its_own_lua_state(write_script, lua_calls) -> None:
    script = write_script(COUNTER)
    async with dispatcher(("one", {"file": script}), ("two", {"file": script})) as d:
        await d.queue.put(make_transaction(make_event("MessageNew")))
        await d.queue.put(make_transaction(make_event("MessageNew")))
        await d.drain()
    # Globals persist within an instance, never across instances.
    assert sorted(lua_calls()) == ["count 1", "count 1", "count 2", "count 2"]


async def test_slow_http_in_one_instance_does_not_delay_another(write_script, lua_calls, sink, caplog) -> None:
    sink.delay = 1.5
    async with dispatcher(
        ("slow", {"file": write_script(SLOW_POST % sink.url)}),
        ("fast", {"file": write_script(COUNTER)}),
    ) as d:
        await d.queue.put(make_transaction(make_event("MessageNew")))
        while "count 1" not in lua_calls():  # this loop runs on: the slow script waits in its thread
            await asyncio.sleep(0.01)
        assert "slow 200" not in lua_calls()  # the fast instance finished while the slow one waited
        await d.drain()
    assert lua_calls()[-1] == "slow 200"
