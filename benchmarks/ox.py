"""Throughput of the OX driver against a bare aiohttp client loop, in one run.

A local aiohttp sink (its own process, answering 200 to PUT) receives the same requests from:

* bare: one keep-alive ClientSession PUTting prepared bodies one after the other;
* ox: the OX driver behind the real dispatcher, fed one MessageNew transaction per request
  (METADATA lookup, payload building and retry logic included);
* floor: the real dispatcher with a minimal async driver that PUTs a prepared body, i.e. what
  the core itself costs, so the OX driver's own share of the gap can be read off.

Runs alternate (the order rotates each round, so drift in the machine's load favours none);
printed are the best run of each, the median ratio of runs of the same round, and client CPU
per request. Target: ox >= 90 % of bare.

    python benchmarks/ox.py [--requests 1000] [--rounds 12]
    python benchmarks/ox.py --instructions [--requests 400]   # callgrind: instructions per
                                                               # notification through the driver

``--instructions`` runs the OX driver (begin_txn, message_new, end_txn: payload, METADATA,
sender, transport) under ``valgrind --tool=callgrind`` for N and 2N transactions and prints
the difference per transaction, building the transactions subtracted: a count that a loaded
machine does not blur, for before/after comparisons of the driver's and the client's code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import gc
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from push_notification import DriverContext, MessageNew, Transaction, hookimpl
from push_notification.server.metadata import MetadataStore
from push_notification.settings import Settings
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.testing.net import free_port
from push_notification.transaction import OX_METADATA_KEY
from push_notification_ox import OxDriver
from push_notification_ox.payload import build_payload

PATH = "/preliminary/http-notify/v1/notify"
AUTH = "Basic " + base64.b64encode(b"login:pass").decode()
SKIP = ("User-Agent", "Accept", "Accept-Encoding")


def run_sink(port: int, ready: Any) -> None:
    """The OX endpoint stand-in: read the body, answer 200."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    async def main() -> None:
        app = web.Application()
        app.router.add_put(PATH, handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def transactions(count: int) -> list[Transaction]:
    status = {"messages": 10, "recent": 1, "unseen": 3, "uidvalidity": 1716000000, "uidnext": 11}
    return [
        make_transaction(
            make_event(
                "MessageNew",
                uid=uid,
                uid_validity=1716000000,
                from_="Bob <bob@example.org>",
                subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
                snippet="Hello Alice, see you tomorrow",
            ),
            user="alice",
            status=status,
        )
        for uid in range(1, count + 1)
    ]


class _Headers:
    """The OX request headers, Date formatted once a second (as the driver does)."""

    def __init__(self) -> None:
        self.second = -1
        self.headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Connection": "Keep-Alive",
            "Authorization": AUTH,
        }

    def now(self) -> dict[str, str]:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.headers["Date"] = email.utils.formatdate(second, usegmt=True)
        return self.headers


async def _put(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> None:
    async with session.put(url, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise SystemExit(f"sink answered {resp.status}")


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), skip_auto_headers=SKIP)


class Measured:
    """Wall-clock requests/s and client CPU µs per request of one run."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.rate = self.cpu_us = 0.0

    def __enter__(self) -> Measured:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.rate = self.count / (time.perf_counter() - self._wall)
        self.cpu_us = (time.process_time() - self._cpu) / self.count * 1e6


async def bare_loop(url: str, bodies: list[bytes], txns: list[Transaction]) -> Measured:
    """A plain aiohttp loop sending the same requests."""
    headers = _Headers()
    async with _session() as session:
        with Measured(len(bodies)) as measured:
            for body in bodies:
                await _put(session, url, body, headers.now())
    return measured


async def ox_loop(url: str, bodies: list[bytes], txns: list[Transaction]) -> Measured:
    """The OX driver behind the real dispatcher."""
    store = MetadataStore()
    store.set("alice", OX_METADATA_KEY, "user=11@3")
    settings = {"url": url.replace("http://", "http://login:pass@")}
    async with DriverHarness(OxDriver, settings, metadata=store, instance="ox") as harness:
        with Measured(len(txns)) as measured:
            await _deliver_all(harness, txns)
    return measured


async def _deliver_all(harness: DriverHarness, txns: list[Transaction]) -> None:
    """Submit every transaction and return once all were delivered (the dispatcher's drain is
    woken by its workers, so waiting costs nothing)."""
    await harness.send(*txns)


class FloorDriver:
    """The least a driver can do: PUT a prepared body per MessageNew."""

    url = ""
    body = b""

    def __init__(self, ctx: DriverContext) -> None:
        self.headers = _Headers()
        self.session: aiohttp.ClientSession | None = None

    @hookimpl
    async def driver_init(self) -> None:
        self.session = _session()

    @hookimpl
    async def driver_deinit(self) -> None:
        if self.session is not None:
            await self.session.close()

    @hookimpl
    async def message_new(self, txn: Transaction, event: MessageNew) -> None:
        assert self.session is not None
        await _put(self.session, self.url, self.body, self.headers.now())


async def floor_loop(url: str, bodies: list[bytes], txns: list[Transaction]) -> Measured:
    """The real dispatcher with :class:`FloorDriver`: the core's own cost."""
    FloorDriver.url, FloorDriver.body = url, bodies[0]
    async with DriverHarness(FloorDriver, {}, instance="floor") as harness:
        with Measured(len(txns)) as measured:
            await _deliver_all(harness, txns)
    return measured


async def instructions_child(url: str, count: int, mode: str) -> None:
    """What ``--instructions`` counts: ``count`` transactions built (``build``) or built and
    delivered through the OX driver's hooks (``ox``), after 100 to warm up."""
    store = MetadataStore()
    store.set("alice", OX_METADATA_KEY, "user=11@3")
    settings = {"url": url.replace("http://", "http://login:pass@")}
    driver = OxDriver(DriverContext("ox", "ox", Settings.from_dict("ox", settings), metadata=store))
    await driver.driver_init()

    async def deliver(txns: list[Transaction]) -> None:
        for txn in txns:
            if mode == "ox" and driver.begin_txn(txn):
                for event in txn.events:
                    driver.message_new(txn, event)  # type: ignore[arg-type]
                await driver.end_txn(txn, True)

    await deliver(transactions(100))
    txns = transactions(count)
    gc.collect()
    await deliver(txns)
    await driver.driver_deinit()


def count_instructions(url: str, count: int) -> float:
    """Instructions per delivered transaction: callgrind totals for N and 2N, each less the
    same run building its transactions only."""

    def total(mode: str, n: int) -> int:
        with tempfile.NamedTemporaryFile(prefix="pn-ox-callgrind-") as out:
            command = [sys.executable, __file__, "--child", url, str(n), mode]
            subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}", *command],
                check=True,
                capture_output=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            found = re.search(rb"^(?:summary|totals):\s*(\d+)", Path(out.name).read_bytes(), re.M)
            assert found is not None, "callgrind wrote no total"
            return int(found.group(1))

    delivered = total("ox", 2 * count) - total("ox", count)
    built = total("build", 2 * count) - total("build", count)
    return (delivered - built) / count


Loop = Callable[[str, list[bytes], list[Transaction]], Awaitable[Measured]]
CONTENDERS: dict[str, Loop] = {"bare": bare_loop, "ox": ox_loop, "floor": floor_loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        url, count, mode = args.child
        uvloop.run(instructions_child(url, int(count), mode))
        return

    port = free_port()
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=(port, ready), daemon=True)
    sink.start()
    results: dict[str, list[Measured]] = {name: [] for name in CONTENDERS}
    try:
        if not ready.wait(10):
            raise SystemExit("sink did not start")
        url = f"http://127.0.0.1:{port}{PATH}"
        if args.instructions:
            count = min(args.requests, 1000)
            print(f"OX driver: {count_instructions(url, count):,.0f} instructions per notification (callgrind)")
            return

        async def run(name: str, count: int) -> Measured:
            # Fresh transactions each run (drivers' cached per-transaction work must not carry
            # over), and the pre-built pile is benchmark input, not daemon state: keep the
            # garbage collector from rescanning it, as benchmarks/dispatch.py does.
            txns = transactions(count)
            bodies = [build_payload("alice", t.events[0], 3) for t in txns]  # type: ignore[arg-type]
            gc.collect()
            gc.freeze()
            try:
                return await CONTENDERS[name](url, bodies, txns)
            finally:
                del txns, bodies
                gc.unfreeze()

        async def rounds() -> None:
            for name in CONTENDERS:  # warm-up
                await run(name, 200)
            names = list(CONTENDERS)
            for i in range(args.rounds):
                for name in names[i % 3 :] + names[: i % 3]:
                    results[name].append(await run(name, args.requests))

        asyncio.run(rounds())
    finally:
        sink.terminate()
        sink.join()

    def rates(name: str) -> list[float]:
        return [m.rate for m in results[name]]

    def ratio(name: str) -> float:
        return statistics.median(x / b for x, b in zip(rates(name), rates("bare"), strict=True))

    labels = {"bare": "bare aiohttp loop", "ox": "ox driver + dispatcher", "floor": "floor: dispatcher + minimal"}
    print(f"{args.requests} requests per run, {args.rounds} rounds, sequential, keep-alive, sink in its own process")
    print(f"{'':29} {'best req/s':>10} {'median ratio':>13} {'CPU us/req':>11}")
    for name in CONTENDERS:
        best = max(rates(name))
        cpu = statistics.median(m.cpu_us for m in results[name])
        shown = "" if name == "bare" else f"{ratio(name):.1%}"
        print(f"{labels[name]:29} {best:10.0f} {shown:>13} {cpu:11.0f}")
    print(f"ox / bare (best runs): {max(rates('ox')) / max(rates('bare')):.1%}; target >= 90%")


if __name__ == "__main__":
    main()
