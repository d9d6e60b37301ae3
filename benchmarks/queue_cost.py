"""The queue alone, in process: CPU µs per put and per get + done, for memory, SQLite and Redis.

No HTTP, no daemon: concurrent producers ``put`` transactions (as concurrent ingress requests
do), then one consumer ``get``\\ s them in batches and reports each ``done`` (as a dispatcher
worker does with a no-op driver). CPU is this process's (user + system) plus, for Redis, the
redis-server process's, measured separately; every queue runs in the same process, in rounds
interleaved with each other, so the figures compare within one run.

    python benchmarks/queue_cost.py [--transactions 20000] [--rounds 3]

It says where a daemon's time goes before the HTTP layer adds its share: the issue 17 target
(daemon CPU per transaction with Redis <= 1.5x SQLite's) starts here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from push_notification.queue import MemoryQueue, Queue
from push_notification.queue.redis import RedisQueue
from push_notification.queue.sqlite import SqliteQueue
from push_notification.testing import make_event, make_transaction
from push_notification.testing.redis import RedisServer
from push_notification.transaction import Transaction

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system seconds of ``pid`` (another process: redis-server)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def one_round(queue: Queue, txns: list[Transaction], producers: int, server_pid: int | None) -> dict[str, float]:
    """µs of CPU per transaction to put all of ``txns``, then to get and finish them."""
    chunks = [txns[i::producers] for i in range(producers)]

    async def producer(chunk: list[Transaction]) -> None:
        for txn in chunk:
            await queue.put(txn)

    server = process_cpu(server_pid) if server_pid else 0.0
    cpu = time.process_time()
    await asyncio.gather(*(producer(chunk) for chunk in chunks))
    put = time.process_time() - cpu
    server_put = (process_cpu(server_pid) - server) if server_pid else 0.0
    server = process_cpu(server_pid) if server_pid else 0.0
    cpu = time.process_time()
    left = len(txns)
    while left:
        batch = await queue.get("noop", 256)
        for txn in batch:
            await queue.done("noop", txn, None)
        left -= len(batch)
    await asyncio.sleep(0)  # outcome writes flush at the next loop turn
    consume = time.process_time() - cpu
    server_consume = (process_cpu(server_pid) - server) if server_pid else 0.0
    n = len(txns) / 1e6
    return {
        "put": put / n,
        "get+done": consume / n,
        "server put": server_put / n,
        "server get+done": server_consume / n,
    }


async def redis_queue(url: str) -> RedisQueue:
    queue = RedisQueue(url)
    await queue.start()
    queue.attach(["noop"])
    while len(queue.owned) < queue.partitions:  # the first beat gives this lone daemon every lease
        await asyncio.sleep(0.01)
    return queue


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=20_000, help="transactions per round")
    parser.add_argument("--producers", type=int, default=64, help="concurrent producers (ingress requests)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per queue (median shown)")
    args = parser.parse_args()
    txns = [make_transaction(make_event("MessageNew", uid=i), user=f"user{i % 1000}") for i in range(args.transactions)]
    results: dict[str, list[dict[str, float]]] = {"memory": [], "sqlite": [], "redis": []}
    with tempfile.TemporaryDirectory(prefix="pn-queue-cost-") as tmp, RedisServer() as server:
        assert server.process is not None
        makers: dict[str, Callable[[], Queue]] = {
            "memory": lambda: MemoryQueue(args.transactions + 1),
            "sqlite": lambda: SqliteQueue(Path(tmp) / "queue.sqlite"),
        }
        queues: dict[str, Queue] = {name: make() for name, make in makers.items()}
        for queue in queues.values():
            queue.attach(["noop"])
        queues["redis"] = await redis_queue(server.url)
        for _ in range(args.rounds):
            for name, queue in queues.items():
                pid = server.process.pid if name == "redis" else None
                results[name].append(await one_round(queue, txns, args.producers, pid))
        for queue in queues.values():
            await queue.close()
    load = os.getloadavg()[0]
    print(
        f"queue cost in process, CPU µs per transaction (median of {args.rounds} interleaved rounds of"
        f" {args.transactions}, {args.producers} producers), load average {load:.1f}"
    )
    print(f"{'queue':8} {'put':>8} {'get+done':>9} {'total':>8}   {'redis-server put':>17} {'get+done':>9}")
    for name, rounds in results.items():
        figure = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        server_part = f"   {figure['server put']:17.1f} {figure['server get+done']:9.1f}" if name == "redis" else ""
        print(
            f"{name:8} {figure['put']:8.1f} {figure['get+done']:9.1f} {figure['put'] + figure['get+done']:8.1f}"
            f"{server_part}"
        )


if __name__ == "__main__":
    asyncio.run(main())
