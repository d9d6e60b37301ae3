"""Events per second through the dispatcher to no-op drivers, and the bare cost of a pluggy hook call.

Run: python benchmarks/dispatch.py [--events N]. Target (issue 2): >= 100,000 events/s to one
no-op driver. Rates are per second of this process's CPU time (everything here runs on its one
thread), so a machine busy with other work does not lower them. All figures come from this one
run, so they can be compared with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections import deque

import pluggy
from push_notification import DriverContext, hookimpl, hookspecs
from push_notification.dispatch import Dispatcher
from push_notification.drivers import create_instance
from push_notification.queue import MemoryQueue
from push_notification.server.daemon import GC_THRESHOLDS
from push_notification.settings import Settings
from push_notification.testing import make_event, make_transaction


class NoOp:
    def __init__(self, ctx: DriverContext) -> None:
        self.count = 0

    @hookimpl
    def message_new(self) -> None:
        self.count += 1


class NoOpEvent(NoOp):
    """The same through the catch-all ``event`` hook (what the webhook and lua drivers use)."""

    message_new = None  # type: ignore[assignment]

    @hookimpl
    def event(self) -> None:
        self.count += 1


def transactions(total: int, per_txn: int) -> list:
    return [
        make_transaction(*(make_event("MessageNew", uid=t * per_txn + i + 1) for i in range(per_txn)))
        for t in range(total // per_txn)
    ]


async def events_per_second(instances: int, txns: list, per_txn: int, driver: type[NoOp] = NoOp) -> float:
    """Events/s for ``txns``, which it consumes: as in the daemon, a transaction lives until
    every instance is done with it (the pile kept alive would make the collector rescan what
    delivery adds to each one)."""
    plugins = [
        create_instance(DriverContext(instance=f"n{i}", driver="noop", settings=Settings(f"n{i}")), driver)
        for i in range(instances)
    ]
    total = len(txns)
    dispatcher = Dispatcher(MemoryQueue(max_pending=total + 1), plugins)
    await dispatcher.start()
    pile = deque(txns)
    txns.clear()
    started = time.process_time()
    while pile:
        await dispatcher.queue.put(pile.popleft())
    await dispatcher.drain()
    elapsed = time.process_time() - started
    await dispatcher.stop()
    assert all(p.plugin.count == total * per_txn for p in plugins)  # type: ignore[attr-defined]
    return total * per_txn / elapsed


def bare_pluggy_call_ns(calls: int) -> float:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(NoOp.__new__(NoOp))
    NoOp.__init__(manager.get_plugins().pop(), None)  # type: ignore[arg-type]
    txn = make_transaction(make_event("MessageNew"))
    event = txn.events[0]
    hook = manager.hook.message_new
    started = time.perf_counter()
    for _ in range(calls):
        hook(txn=txn, event=event)
    return (time.perf_counter() - started) / calls * 1e9


DEFAULT_THRESHOLDS = gc.get_threshold()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    print(f"dispatcher → no-op driver, {args.events} MessageNew events per run (fresh transactions each run);"
          " rates per CPU second")  # fmt: skip
    print(f"{'instances':>9} {'events/txn':>10} {'events/s':>12} {'deliveries/s (events x instances)':>34}")
    runs = [(per_txn, instances, NoOp) for per_txn in (1, 10) for instances in (1, 2, 8)]
    runs += [(per_txn, 1, NoOpEvent) for per_txn in (1, 10)]
    for per_txn, instances, driver in runs:
        txns = transactions(args.events, per_txn)
        # The pre-built pile of transactions is benchmark input, not daemon state: keep the
        # garbage collector from rescanning it (a running daemon never holds 200k at once).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)  # as the daemon runs (server/daemon.py)
        rate = asyncio.run(events_per_second(instances, txns, per_txn, driver))
        del txns
        gc.set_threshold(*DEFAULT_THRESHOLDS)
        gc.unfreeze()
        gc.collect()
        hook = "  (event hook)" if driver is NoOpEvent else ""
        print(f"{instances:>9} {per_txn:>10} {rate:>12,.0f} {rate * instances:>34,.0f}{hook}")
    print(f"bare pluggy hook call (one impl, via manager.hook): {bare_pluggy_call_ns(200_000):,.0f} ns")


if __name__ == "__main__":
    main()
