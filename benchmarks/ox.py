"""Throughput of the OX driver against a bare aiohttp client loop, in one run.

A local aiohttp sink (its own process, answering 200 to PUT) receives the same requests
from (a) a bare loop: one keep-alive ClientSession PUTting prepared bodies one after the
other, and (b) the OX driver behind the real dispatcher, fed one MessageNew transaction
per request (METADATA lookup, payload building, retries logic included). Runs alternate
(bare then driver, driver then bare, ...); printed are the best of each and, steadier on a shared
machine, the median of the ratios of neighbouring runs. Target: driver >= 90 % of the bare loop.

    python benchmarks/ox.py [--requests 2000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import multiprocessing
import socket
import statistics
import time
from typing import Any

import aiohttp
from aiohttp import web
from push_notification.metadata import MetadataStore
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.transaction import OX_METADATA_KEY, Transaction
from push_notification_ox import OxDriver
from push_notification_ox.payload import build_payload

PATH = "/preliminary/http-notify/v1/notify"


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


async def bare_loop(url: str, bodies: list[bytes]) -> float:
    """Requests/s of a plain aiohttp loop sending the same requests."""
    auth = "Basic " + base64.b64encode(b"login:pass").decode()
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(
        connector=connector, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding")
    ) as session:
        second, date = -1, ""
        started = time.perf_counter()
        for body in bodies:
            now = int(time.time())
            if now != second:  # the same once-a-second Date formatting the driver does
                second, date = now, email.utils.formatdate(now, usegmt=True)
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Connection": "Keep-Alive",
                "Authorization": auth,
                "Date": date,
            }
            async with session.put(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"sink answered {resp.status}")
        return len(bodies) / (time.perf_counter() - started)


async def driver_loop(url: str, txns: list[Transaction]) -> float:
    """Requests/s of the OX driver behind the real dispatcher."""
    store = MetadataStore()
    store.set("alice", OX_METADATA_KEY, "user=11@3")
    settings = {"url": url.replace("http://", "http://login:pass@")}
    async with DriverHarness(OxDriver, settings, metadata=store, instance="ox") as harness:
        started = time.perf_counter()
        await harness.send(*txns)
        elapsed = time.perf_counter() - started
    return len(txns) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=(port, ready), daemon=True)
    sink.start()
    try:
        if not ready.wait(10):
            raise SystemExit("sink did not start")
        url = f"http://127.0.0.1:{port}{PATH}"
        txns = transactions(args.requests)
        bodies = [build_payload("alice", t.events[0], 3) for t in txns]  # type: ignore[arg-type]
        bare: list[float] = []
        driver: list[float] = []

        async def rounds() -> None:
            await bare_loop(url, bodies[:200])  # warm-up
            await driver_loop(url, txns[:200])
            for i in range(args.rounds):
                # alternate which goes first, so drift in the machine's load favours neither
                if i % 2:
                    driver.append(await driver_loop(url, txns))
                    bare.append(await bare_loop(url, bodies))
                else:
                    bare.append(await bare_loop(url, bodies))
                    driver.append(await driver_loop(url, txns))

        asyncio.run(rounds())
    finally:
        sink.terminate()
        sink.join()
    best_bare, best_driver = max(bare), max(driver)
    print(f"requests per run        : {args.requests} (x{args.rounds} rounds, sequential, keep-alive)")
    print(f"bare aiohttp loop       : {best_bare:8.0f} req/s  (rounds: {', '.join(f'{x:.0f}' for x in bare)})")
    print(f"ox driver + dispatcher  : {best_driver:8.0f} req/s  (rounds: {', '.join(f'{x:.0f}' for x in driver)})")
    paired = statistics.median(d / b for b, d in zip(bare, driver, strict=True))
    print(f"driver / bare, best     : {best_driver / best_bare:8.1%}")
    print(f"driver / bare, median   : {paired:8.1%}  (of neighbouring runs; target >= 90%)")


if __name__ == "__main__":
    main()
