"""Events per second through a minimal Lua handler (the lua driver behind the real dispatcher).

Run: python benchmarks/lua.py [--events N]. Prints, from one run: events/s with a one-line
message_new handler (one event per transaction, and 10 per transaction), the same through
LuaJIT when lupa has it, the driver alone without the dispatcher's per-transaction thread hop,
and the bare cost of one Lua handler call, so the figures compare.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from push_notification.dispatch import Dispatcher, deliver_sync
from push_notification.drivers import DriverContext, create_instance
from push_notification.queue import MemoryQueue
from push_notification.settings import Settings
from push_notification.testing import make_event, make_transaction
from push_notification_lua import LuaDriver
from push_notification_lua.event_tables import event_table

SCRIPT = """
local count = 0
function dovecot_lua_notify_begin_txn(user) return {user = user} end
function dovecot_lua_notify_event_message_new(ctx, event) count = count + 1 end
function dovecot_lua_notify_end_txn(ctx, success) end
function handled() return count end
"""


def transactions(total: int, per_txn: int) -> list:
    return [
        make_transaction(*(make_event("MessageNew", uid=t * per_txn + i + 1, subject="hi") for i in range(per_txn)))
        for t in range(total // per_txn)
    ]


async def events_per_second(script: Path, txns: list, per_txn: int, runtime: str) -> float:
    settings = Settings.from_dict("bench", {"file": str(script), "runtime": runtime})
    instance = create_instance(DriverContext("bench", "lua", settings), LuaDriver)
    dispatcher = Dispatcher(MemoryQueue(max_pending=len(txns) + 1), [instance])
    await dispatcher.start()
    started = time.perf_counter()
    for txn in txns:
        await dispatcher.queue.put(txn)
    await dispatcher.drain()
    elapsed = time.perf_counter() - started
    await dispatcher.stop()
    handled = instance.plugin.state.call("handled")[1]  # type: ignore[attr-defined]
    assert handled == len(txns) * per_txn, handled
    return len(txns) * per_txn / elapsed


def driver_only_events_per_second(script: Path, txns: list) -> float:
    """The driver's own cost: hooks called in this thread, without the dispatcher's thread hop."""
    settings = Settings.from_dict("direct", {"file": str(script)})
    instance = create_instance(DriverContext("direct", "lua", settings), LuaDriver)
    instance.plugin.driver_init()  # type: ignore[attr-defined]
    started = time.perf_counter()
    for txn in txns:
        deliver_sync(instance, txn)
    elapsed = time.perf_counter() - started
    handled = instance.plugin.state.call("handled")[1]  # type: ignore[attr-defined]
    assert handled == len(txns), handled
    return len(txns) / elapsed


def bare_call_us(script: Path, calls: int) -> float:
    settings = Settings.from_dict("bare", {"file": str(script)})
    driver = LuaDriver(DriverContext("bare", "lua", settings))
    driver.driver_init()
    table = driver.state.table(event_table(make_event("MessageNew", subject="hi")))
    ctx = driver.state.table({})
    started = time.perf_counter()
    for _ in range(calls):
        driver.state.call("dovecot_lua_notify_event_message_new", ctx, table)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "minimal.lua"
        script.write_text(SCRIPT)
        for per_txn in (1, 10):
            rate = asyncio.run(events_per_second(script, transactions(args.events, per_txn), per_txn, "lua54"))
            print(f"lua54 : {rate:10,.0f} events/s ({per_txn} event(s) per transaction, {args.events} events)")
        try:
            import lupa.luajit21  # noqa: F401

            rate = asyncio.run(events_per_second(script, transactions(args.events, 1), 1, "luajit"))
            print(f"luajit: {rate:10,.0f} events/s (1 event per transaction, {args.events} events)")
        except ImportError:
            print("luajit: not available in this lupa build")
        rate = driver_only_events_per_second(script, transactions(args.events, 1))
        print(f"driver alone (no dispatcher thread hop): {rate:10,.0f} events/s (1 event per transaction)")
        print(f"bare Lua handler call (table already built): {bare_call_us(script, args.events):.2f} us")


if __name__ == "__main__":
    main()
