"""Scale-out: the SQLite queue on one daemon against the Redis queue on 1, 2 and 4 daemons.

Each setup runs real daemons (``push-notification serve``, no-op driver) and a real
redis-server (AOF, ``appendfsync everysec``); the load generator spreads keep-alive HTTP posts
over the daemons. Printed per setup, all in one run so they can be compared:

* accepted tx/s (posts answered 202) and delivered tx/s (every daemon's no-op driver done);
* daemon CPU per transaction (user + system time of every daemon process / transactions);
* p50/p99 ingress latency at a steady 400 tx/s (open loop);
* a breakdown of the CPU figure: each daemon's share, each daemon's CPU while idle (its fixed
  costs: leases, upkeep, reads that find nothing), and the commands the daemons sent Redis per
  transaction (scripts and reads: the round trips), so growth from 1 to 4 daemons can be told
  apart into more work per transaction and more daemons costing their fixed share;
* SQLite and Redis with one daemon again, at a quarter of the connections (no latency run):
  what one daemon costs per transaction with the share of the load each of four daemons
  serves, so the growth from 1 to 4 daemons can be told apart into thinner traffic per daemon
  (batches, wake-ups) and the daemons themselves.

    python benchmarks/scale_out.py [--transactions 20000] [--rate 400] [--seconds 10]

Targets (issue 17, this 2-core machine): Redis, one daemon: >= 5,000 tx/s accepted and
p99 <= 3 ms at 400 tx/s; daemon CPU per transaction with Redis <= 1.5x SQLite's; CPU per
transaction from 1 to 4 daemons grows by <= 20 % (the cores, not the design, bound the total).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from durable import DRIVER_DIR, Connection, latency, post_all
from push_notification.config.redis_client import redis_client
from push_notification.testing.daemon import DaemonProcess, daemon_config
from push_notification.testing.redis import RedisServer

TICKS = os.sysconf("SC_CLK_TCK")
#: The commands a daemon sends Redis itself (the others run inside its scripts): one round trip each.
ROUND_TRIPS = ("evalsha", "eval", "xreadgroup", "xautoclaim", "hmget")
#: How long each setup's daemons are watched idle, after the warm-up (s).
IDLE_SECONDS = 2.0


class Daemon(DaemonProcess):
    """One daemon of a setup (no-op driver, its own state directory) and its CPU time."""

    def __init__(self, workdir: Path, name: str, queue_lines: str) -> None:
        directory = workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        config = daemon_config(
            directory,
            f"{queue_lines}max_pending = 1000000\nlog_level = warning\n"
            "push_notification noop {\n driver = durable_test_noop\n}\n",
        )
        super().__init__(config, pythonpath=[DRIVER_DIR])

    async def ready(self) -> None:
        await self.astart()

    def cpu(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def run_time(self) -> float:
        """Seconds on a CPU, to the nanosecond (``/proc/PID/schedstat``): fine enough for an idle daemon."""
        assert self.proc is not None
        return int(Path(f"/proc/{self.proc.pid}/schedstat").read_text().split()[0]) / 1e9

    async def delivered(self, connection: Connection) -> int:
        """Deliveries this daemon's no-op instance finished (its /metrics counter)."""
        connection.writer.write(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
        head = await connection.reader.readuntil(b"\r\n\r\n")
        length = next(int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:")
        text = (await connection.reader.readexactly(length)).decode()
        for line in text.splitlines():
            if line.startswith("push_notification_deliveries_total{") and 'outcome="delivered"' in line:
                return int(float(line.rpartition(" ")[2]))
        return 0


async def throughput(daemons: list[Daemon], total: int, connections: int) -> tuple[float, float, list[float]]:
    """(accepted/s, delivered/s, each daemon's CPU ms per transaction) for ``total`` posts spread evenly."""
    probes = [await Connection.open(d.port) for d in daemons]

    async def delivered() -> int:
        return sum([await d.delivered(p) for d, p in zip(daemons, probes, strict=True)])

    before = await delivered()

    async def settled() -> bool:
        return await delivered() - before >= total

    cpu_before = [d.cpu() for d in daemons]
    accepted, done = await post_all([d.port for d in daemons], total, connections, settled)
    shares = [(d.cpu() - b) / total * 1000 for d, b in zip(daemons, cpu_before, strict=True)]
    for probe in probes:
        probe.close()
    return accepted, done, shares


async def round_trips(url: str | None) -> int:
    """Commands sent to Redis so far by its clients (see :data:`ROUND_TRIPS`); 0 without Redis."""
    if url is None:
        return 0
    client = redis_client(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ROUND_TRIPS)


async def measure(
    name: str,
    workdir: Path,
    queue_lines: str,
    count: int,
    args: argparse.Namespace,
    url: str | None = None,
    *,
    connections: int | None = None,
    with_latency: bool = True,
) -> dict[str, Any]:
    connections = connections or args.connections
    daemons = [Daemon(workdir, f"{name}-{i}", queue_lines) for i in range(count)]
    try:
        for daemon in daemons:
            await daemon.ready()
        await asyncio.sleep(1.0 if count > 1 else 0.2)  # leases settle
        await throughput(daemons, 2000, connections)  # warm-up
        idle_before = [d.run_time() for d in daemons]
        await asyncio.sleep(IDLE_SECONDS)
        idle = [(d.run_time() - b) / IDLE_SECONDS * 1000 for d, b in zip(daemons, idle_before, strict=True)]
        trips_before = await round_trips(url)
        accepted, delivered, shares = await throughput(daemons, args.transactions, connections)
        trips = (await round_trips(url) - trips_before) / args.transactions
        p50, p99, _ = await latency(daemons[0], args.rate, args.seconds) if with_latency else (0.0, 0.0, 0.0)
    finally:
        for daemon in daemons:
            daemon.stop()
    return {"accepted": accepted, "delivered": delivered, "cpu": sum(shares), "p50": p50, "p99": p99,
            "shares": shares, "idle": idle, "trips": trips}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=20_000, help="transactions per throughput run")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections for throughput")
    parser.add_argument("--rate", type=float, default=400.0, help="steady rate for the latency run (tx/s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    extra: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pn-scale-bench-") as tmp:
        results["sqlite x1"] = await measure("sqlite", Path(tmp), "queue = sqlite\n", 1, args)
        for count in (1, 2, 4):
            with RedisServer() as redis:
                lines = f"queue = redis\nqueue_url = {redis.url}\n"
                results[f"redis x{count}"] = await measure(f"redis{count}", Path(tmp), lines, count, args, redis.url)
        # One daemon with a quarter of the connections: the share each of four daemons serves.
        thin = {"connections": max(args.connections // 4, 1), "with_latency": False}
        extra["sqlite x1"] = await measure("sqlite-thin", Path(tmp), "queue = sqlite\n", 1, args, **thin)
        with RedisServer() as redis:
            lines = f"queue = redis\nqueue_url = {redis.url}\n"
            extra["redis x1"] = await measure("redis-thin", Path(tmp), lines, 1, args, redis.url, **thin)
    load = os.getloadavg()[0]
    print(
        f"push-notification daemons over HTTP, no-op driver, {os.cpu_count()} CPUs (load average {load:.1f}),"
        f" {args.transactions} transactions per setup"
    )
    print(
        f"{'setup':10} {'accepted tx/s':>14} {'delivered tx/s':>15} {'CPU ms/tx':>10}"
        f"   ingress latency at {args.rate:g} tx/s (first daemon)"
    )
    for name, r in results.items():
        print(
            f"{name:10} {r['accepted']:14,.0f} {r['delivered']:15,.0f} {r['cpu']:10.3f}"
            f"   p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms"
        )
    print(f"{'breakdown':10} {'CPU ms/tx of each daemon':>32}   {'idle CPU ms/s of each':>24}   Redis calls/tx")
    for name, r in results.items():
        shares = " ".join(f"{x:.3f}" for x in r["shares"])
        idle = " ".join(f"{x:.1f}" for x in r["idle"])
        trips = f"{r['trips']:.3f}" if name.startswith("redis") else "-"
        print(f"{name:10} {shares:>32}   {idle:>24}   {trips}")
    thin = max(args.connections // 4, 1)
    print(f"one daemon at {thin} connections (the share each of four daemons serves of {args.connections}):")
    for name, r in extra.items():
        trips = f", {r['trips']:.3f} Redis calls/tx" if name.startswith("redis") else ""
        print(f"{name:10} {r['cpu']:.3f} ms/tx, {r['cpu'] / results[name]['cpu']:.2f}x at {args.connections}{trips}")
    one, sqlite, four = results["redis x1"], results["sqlite x1"], results["redis x4"]
    print(
        f"targets: redis x1 accepted >= 5,000 tx/s: {'met' if one['accepted'] >= 5000 else 'NOT met'}"
        f" ({one['accepted']:,.0f}); redis x1 p99 <= 3 ms: {'met' if one['p99'] <= 3.0 else 'NOT met'}"
        f" ({one['p99']:.2f}); CPU/tx redis/sqlite {one['cpu'] / sqlite['cpu']:.2f} (<= 1.5);"
        f" CPU/tx x4/x1 {four['cpu'] / one['cpu']:.2f} (<= 1.2)"
    )


if __name__ == "__main__":
    asyncio.run(main())
