"""webhook driver: rendering cost per preset, and deliveries per second against a local endpoint
compared with a bare aiohttp client posting the same bodies (the driver's overhead).

Run: python benchmarks/webhook.py [--events N]. All figures come from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time

import aiohttp
from aiohttp import web
from push_notification.events import Event
from push_notification.settings import Settings
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_webhook import WebhookDriver
from push_notification_webhook.config import read_config

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
ROUNDS = 3
PRESETS = {
    "json": {},
    "json+signature": {"secret": SECRET},
    "ntfy": {"preset": "ntfy", "topic": "mail-{{ user }}"},
    "gotify": {"preset": "gotify", "token": "t"},
    "slack": {"preset": "slack"},
}


def events(n: int) -> list[Event]:
    return [
        make_event("MessageNew", uid=i + 1, from_address="bob@example.org", subject_utf8=f"Grüße {i}", snippet="Hi")
        for i in range(n)
    ]


def render_rate(settings: dict[str, str], evs: list[Event]) -> float:
    config = read_config(Settings.from_dict("bench", {"url": "http://127.0.0.1:9/", **settings}))
    txn = make_transaction(*evs[:1])
    started = time.perf_counter()
    for i, event in enumerate(evs):
        request = config.renderer.request(txn, event, f"t.{i}")
        if request.sign is not None:
            request.sign(request.body)
    return len(evs) / (time.perf_counter() - started)


async def serve() -> tuple[web.AppRunner, str, list[int]]:
    count = [0]

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        count[0] += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook", count


async def driver_rate(url: str, evs: list[Event], per_txn: int) -> float:
    txns = [make_transaction(*evs[i : i + per_txn]) for i in range(0, len(evs), per_txn)]
    async with DriverHarness(WebhookDriver, {"url": url, "secret": SECRET}) as harness:
        started = time.perf_counter()
        await harness.send(*txns)
        elapsed = time.perf_counter() - started
    assert harness.plugin.delivered == len(evs), harness.plugin.delivered
    return len(evs) / elapsed


async def bare_rate(url: str, n: int) -> float:
    body = b'{"type":"MessageNew","data":{"user":"alice","mailbox":"INBOX","event":{"uid":1}}}'
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for _ in range(n):
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                await response.read()
        return n / (time.perf_counter() - started)


async def main(n: int) -> None:
    evs = events(n)
    print(f"webhook driver benchmark, {n} MessageNew events")
    for name, settings in PRESETS.items():
        print(f"  render {name:<15} {render_rate(settings, evs):>10,.0f} requests/s")
    runner, url, _count = await serve()
    bare = one = ten = 0.0
    try:
        for _ in range(ROUNDS):  # interleaved, best of each: the machine is shared
            bare = max(bare, await bare_rate(url, n))
            one = max(one, await driver_rate(url, evs, 1))
            ten = max(ten, await driver_rate(url, evs, 10))
    finally:
        await runner.cleanup()
    print(f"  (HTTP figures: best of {ROUNDS} interleaved rounds)")
    print(f"  bare aiohttp POST, sequential      {bare:>10,.0f} requests/s")
    print(f"  driver, signed, 1 event/txn        {one:>10,.0f} requests/s  ({one / bare:.2f} of bare)")
    print(f"  driver, signed, 10 events/txn      {ten:>10,.0f} requests/s  ({ten / bare:.2f} of bare)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    asyncio.run(main(parser.parse_args().events))
