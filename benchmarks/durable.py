"""Durable delivery: transactions/s accepted and delivered, and ingress latency at a steady rate.

Runs the real daemon (``push-notification serve``) as a subprocess with a no-op driver, once
with ``queue = sqlite`` (the durable default) and once with ``queue = memory``, and drives its
HTTP ingress from this process over keep-alive connections. All figures come from this one
run, so they can be compared with each other.

    python benchmarks/durable.py [--transactions 20000] [--rate 400] [--seconds 10]

Targets (issue 6): durable >= 5,000 transactions/s accepted; durable p99 ingress latency
(request -> 2xx) <= 2 ms at 400 tx/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from push_notification.testing.daemon import DaemonProcess, daemon_config

ROOT = Path(__file__).resolve().parents[1]
DRIVER_DIR = ROOT / "tests" / "durable" / "driver"


def request_bytes(port: int, user: str, uid: int) -> bytes:
    body = json.dumps(
        {
            "id": uuid.uuid4().hex,
            "user": {"username": user, "service": "lmtp"},
            "mailbox": "INBOX",
            "events": [
                {"name": "MessageNew", "uid": uid, "uid_validity": 1700000000, "from": "a@example.com", "subject": "Hi"}
            ],
        }
    ).encode()
    head = (
        f"POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection with a minimal client: cheap enough that the
    benchmark measures the daemon rather than the load generator."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(0)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class Daemon(DaemonProcess):
    """The daemon with the no-op driver, on ``queue`` (its own state directory)."""

    def __init__(self, workdir: Path, queue: str) -> None:
        directory = workdir / queue
        directory.mkdir(parents=True, exist_ok=True)
        config = daemon_config(
            directory,
            f"queue = {queue}\nmax_pending = 1000000\nlog_level = warning\n"
            "push_notification noop {\n driver = durable_test_noop\n}\n",
        )
        super().__init__(config, pythonpath=[DRIVER_DIR])

    async def depth(self, connection: Connection) -> int:
        connection.writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
        head = await connection.reader.readuntil(b"\r\n\r\n")
        length = next(int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:")
        body = json.loads(await connection.reader.readexactly(length))
        return int(body["queue_depth"])


async def post_all(
    ports: list[int], total: int, connections: int, settled: Callable[[], Awaitable[bool]]
) -> tuple[float, float]:
    """(accepted/s, delivered/s): ``total`` transactions posted as fast as ``connections``
    keep-alive connections spread over the daemons on ``ports`` allow; delivered once
    ``settled()`` says so. Every throughput figure of the benchmarks comes from this loop."""
    requests = [request_bytes(0, f"user{i % 1000}", i) for i in range(total)]
    pool = [await Connection.open(ports[i % len(ports)]) for i in range(connections)]
    next_index = 0

    async def worker(connection: Connection) -> None:
        nonlocal next_index
        while next_index < total:
            request = requests[next_index]
            next_index += 1
            status = await connection.post(request)
            if status != 202:
                raise SystemExit(f"ingress answered {status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in pool))
    accepted = time.perf_counter() - started
    while not await settled():
        await asyncio.sleep(0.002)
    delivered = time.perf_counter() - started
    for connection in pool:
        connection.close()
    return total / accepted, total / delivered


async def throughput(daemon: Daemon, total: int, connections: int) -> tuple[float, float]:
    """(accepted/s, delivered/s) for one daemon: delivered once its queue is empty."""
    probe = await Connection.open(daemon.port)

    async def settled() -> bool:
        return await daemon.depth(probe) == 0

    try:
        return await post_all([daemon.port], total, connections, settled)
    finally:
        probe.close()


async def latency(daemon: Daemon, rate: float, seconds: float) -> tuple[float, float, float]:
    """(p50, p99, max) in ms of request → 2xx at a steady ``rate`` (open loop: requests are
    sent on schedule whether or not earlier ones were answered)."""
    total = int(rate * seconds)
    requests = [request_bytes(daemon.port, f"user{i % 1000}", i) for i in range(total)]
    idle = [await Connection.open(daemon.port) for _ in range(32)]
    samples: list[float] = []
    loop = asyncio.get_running_loop()

    async def one(request: bytes) -> None:
        connection = idle.pop() if idle else await Connection.open(daemon.port)
        sent = time.perf_counter()
        status = await connection.post(request)
        samples.append(time.perf_counter() - sent)
        idle.append(connection)
        if status != 202:
            raise SystemExit(f"ingress answered {status}")

    tasks = []
    start = loop.time()
    for i, request in enumerate(requests):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(request)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    samples.sort()
    ms = [s * 1000 for s in samples]
    return statistics.median(ms), ms[int(len(ms) * 0.99) - 1], ms[-1]


async def store_only(queue: str, workdir: Path, total: int, producers: int = 64) -> float:
    """transactions/s ``put`` into the queue in-process: the store without HTTP."""
    from push_notification.queue import MemoryQueue, Queue
    from push_notification.queue.sqlite import SqliteQueue
    from push_notification.testing import make_event, make_transaction

    store: Queue = SqliteQueue(workdir / "store-only.sqlite") if queue == "sqlite" else MemoryQueue(total + 1)
    store.attach(["noop"])
    txns = [make_transaction(make_event("MessageNew", uid=i), user=f"user{i % 1000}") for i in range(total)]
    chunks = [txns[i::producers] for i in range(producers)]

    async def producer(chunk: list) -> None:  # type: ignore[type-arg]
        for txn in chunk:
            await store.put(txn)

    started = time.perf_counter()
    await asyncio.gather(*(producer(chunk) for chunk in chunks))
    elapsed = time.perf_counter() - started
    await store.close()
    return total / elapsed


async def measure(queue: str, workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    daemon = Daemon(workdir, queue)
    try:
        await daemon.astart()
        await throughput(daemon, 2000, args.connections)  # warm-up
        accepted, delivered = await throughput(daemon, args.transactions, args.connections)
        p50, p99, worst = await latency(daemon, args.rate, args.seconds)
    finally:
        daemon.stop()
    store = await store_only(queue, workdir, args.transactions)
    return {"accepted": accepted, "delivered": delivered, "p50": p50, "p99": p99, "max": worst, "store": store}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=20_000, help="transactions for the throughput run")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections for throughput")
    parser.add_argument("--rate", type=float, default=400.0, help="steady rate for the latency run (tx/s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pn-durable-bench-") as tmp:
        results = {queue: await measure(queue, Path(tmp), args) for queue in ("sqlite", "memory")}
    load = os.getloadavg()[0]
    print(
        f"push-notification daemon over HTTP, no-op driver, {os.cpu_count()} CPUs (load average {load:.1f}),"
        f" {args.transactions} transactions"
    )
    print(
        f"{'queue':8} {'accepted tx/s':>14} {'delivered tx/s':>15}   ingress latency at {args.rate:g} tx/s"
        f"                   {'store only put tx/s':>20}"
    )
    for queue, r in results.items():
        print(
            f"{queue:8} {r['accepted']:14,.0f} {r['delivered']:15,.0f}"
            f"   p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  max {r['max']:6.2f} ms   {r['store']:20,.0f}"
        )
    durable = results["sqlite"]
    print(
        f"targets: durable accepted >= 5,000 tx/s: {'met' if durable['accepted'] >= 5000 else 'NOT met'};"
        f" durable p99 <= 2 ms at 400 tx/s: {'met' if durable['p99'] <= 2.0 else 'NOT met'};"
        f" durable/memory accepted ratio {durable['accepted'] / results['memory']['accepted']:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
