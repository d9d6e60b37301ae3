"""webpush driver: encrypted pushes/s and the daemon's CPU per push, against a bare loop that
encrypts (http-ece, a fresh P-256 key per message) and POSTs (aiohttp, VAPID from py-vapid)
with the same libraries, to the same sink, in one run.

The daemon runs as ``push-notification serve`` fed through the bridge spool (the default
transport), with the sqlite queue and the device registry, one subscription per user and
storm control off (it would merge the bench's pushes). The sink, a separate process, answers
201 after checking each message carries the Web Push headers; CPU is read from /proc.

    python benchmarks/webpush.py [--pushes 1000] [--rounds 5] [--users 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dovecot_e2e import cpu_seconds
from push_notification.devices.vapid import b64url, create_vapid_key, load_vapid_key
from push_notification.testing.daemon import CLI, DaemonProcess, daemon_config
from push_notification.testing.net import free_port
from py_vapid import Vapid02

PAYLOAD = b'{"account":"user0@example.com","mailbox":"INBOX","event":"MessageNew","count":1,"unseen":1}'


def run_sink(port: int) -> None:
    """A separate process: 201 for each well-formed Web Push message, 400 otherwise; counts."""
    from aiohttp import web

    counts = {"ok": 0, "bad": 0}

    async def push(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        vapid = headers.get("Authorization", "").startswith("vapid t=")
        good = vapid and headers.get("Content-Encoding") == "aes128gcm" and "TTL" in headers and len(body) > 86
        counts["ok" if good else "bad"] += 1
        return web.Response(status=201 if good else 400)

    async def count(request: web.Request) -> web.Response:
        return web.json_response(counts)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/push/{id}", push)
        app.router.add_get("/_count", count)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def sink_count(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_count", timeout=10) as response:
        data: dict[str, int] = json.loads(response.read())
        return data


def subscription(sink: str, user: int) -> dict[str, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"endpoint": f"{sink}/push/{user}", "keys": {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}}


async def bare_loop(key_path: Path, subscriptions: list[dict[str, object]], n: int) -> tuple[float, float]:
    """(pushes/s, CPU seconds per push) of encrypt + POST, one after another."""
    from push_notification.devices.vapid import b64url_decode

    vapid = Vapid02(private_key=load_vapid_key(key_path))
    endpoint0 = str(subscriptions[0]["endpoint"])
    audience = endpoint0.split("/push/")[0]
    authorization = vapid.sign({"aud": audience, "exp": int(time.time()) + 43200, "sub": "mailto:bench@example.com"})
    headers = {"TTL": "86400", "Urgency": "normal", "Content-Encoding": "aes128gcm",
               "Content-Type": "application/octet-stream", "Authorization": authorization["Authorization"]}  # fmt: skip
    async with aiohttp.ClientSession(skip_auto_headers=("User-Agent",)) as session:
        cpu, started = time.process_time(), time.perf_counter()
        for i in range(n):
            sub = subscriptions[i % len(subscriptions)]
            keys: dict[str, str] = sub["keys"]  # type: ignore[assignment]
            body = http_ece.encrypt(PAYLOAD, salt=os.urandom(16), private_key=ec.generate_private_key(ec.SECP256R1()),
                                    dh=b64url_decode(keys["p256dh"]), auth_secret=b64url_decode(keys["auth"]),
                                    version="aes128gcm")  # fmt: skip
            async with session.post(str(sub["endpoint"]), data=body, headers=headers) as response:
                await response.read()
                assert response.status == 201, response.status
        return n / (time.perf_counter() - started), (time.process_time() - cpu) / n


class Daemon:
    def __init__(self, work: Path, key: Path, users: int, sink: str, extra: list[str]) -> None:
        self.spool = work / "spool"
        for part in ("tmp", "new"):
            (self.spool / part).mkdir(parents=True)
        self.config = daemon_config(
            work,
            f"log_level = warning\nspool_dir = {self.spool}\n"
            + "".join(f"{line}\n" for line in extra)
            + f"push_notification webpush {{\n  vapid_key = {key}\n  vapid_subject = mailto:bench@example.com\n"
            "  coalesce = 0\n  defer_non_new = 0\n}\n",
        )
        for user in range(users):
            subprocess.run(
                [*CLI, "devices", "add", "-c", str(self.config), "-u", f"user{user}@example.com",
                 "--subscription", json.dumps(subscription(sink, user))],
                check=True, capture_output=True,
            )  # fmt: skip
        self.users = users
        self.process = DaemonProcess(self.config).start()

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def feed(self, first: int, n: int) -> None:
        """As the bridge does for LMTP deliveries: one spool file per transaction."""
        for number in range(first, first + n):
            txn = {"user": {"username": f"user{number % self.users}@example.com", "service": "lmtp"},
                   "mailbox": "INBOX", "events": [{"name": "MessageNew", "mailbox": "INBOX", "uid": number,
                   "uid_validity": 1795606734, "from_address": "bench@example.org", "subject_utf8": "Hello"}],
                   "status": {"messages": number, "recent": 1, "unseen": 1, "uidvalidity": 1795606734,
                              "uidnext": number + 1}}  # fmt: skip
            name = f"{number}.{uuid.uuid4().hex}.json"
            (self.spool / "tmp" / name).write_bytes(json.dumps(txn).encode())
            os.rename(self.spool / "tmp" / name, self.spool / "new" / name)

    def stop(self) -> None:
        self.process.stop()


def daemon_round(daemon: Daemon, sink_port: int, first: int, n: int) -> tuple[float, float]:
    """(pushes/s, daemon CPU seconds per push) for ``n`` transactions written at once."""
    pid = daemon.pid
    before = sink_count(sink_port)["ok"]
    cpu, started = cpu_seconds(lambda: [pid]), time.perf_counter()
    daemon.feed(first, n)
    deadline = time.monotonic() + 120
    while sink_count(sink_port)["ok"] < before + n:
        if time.monotonic() > deadline:
            raise SystemExit("the daemon did not push everything within 120 s")
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    time.sleep(0.2)  # the last outcomes are recorded after the sink answered
    return n / elapsed, (cpu_seconds(lambda: [pid]) - cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=1000, help="per round and side (default 1000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--setting", action="append", default=[], help="a daemon config line, e.g. 'queue = memory'")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return
    work = Path(tempfile.mkdtemp(prefix="pn-webpush-bench-"))
    key = work / "vapid.pem"
    create_vapid_key(key)
    sink_port = free_port()
    sink_url = f"http://127.0.0.1:{sink_port}"
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(sink_port)])
    daemon: Daemon | None = None
    try:
        for _ in range(200):
            try:
                sink_count(sink_port)
                break
            except OSError:
                time.sleep(0.05)
        subscriptions = [subscription(sink_url, u) for u in range(args.users)]
        daemon = Daemon(work, key, args.users, sink_url, args.setting)
        asyncio.run(bare_loop(key, subscriptions, 100))  # warm-up of both sides
        daemon_round(daemon, sink_port, 0, 100)
        bare: list[tuple[float, float]] = []
        ours: list[tuple[float, float]] = []
        for r in range(args.rounds):  # interleaved: the machine is shared, so compare within a round
            bare.append(asyncio.run(bare_loop(key, subscriptions, args.pushes)))
            ours.append(daemon_round(daemon, sink_port, 1000 + r * args.pushes, args.pushes))
        bad = sink_count(sink_port)["bad"]
        print(f"webpush: {args.rounds} interleaved rounds of {args.pushes} encrypted pushes, {args.users} users;"
              f" {os.cpu_count()} CPUs; malformed pushes at the sink: {bad}")  # fmt: skip
        print("  (pushes/s: best round; CPU per push: median round; ratios: median of the per-round ratios)")
        for name, rounds in (
            ("bare loop (http-ece + py-vapid + aiohttp)", bare),
            ("daemon (spool, sqlite, registry)", ours),
        ):
            rate, cpu = max(r for r, _ in rounds), statistics.median(c for _, c in rounds)
            print(f"  {name:<42} {rate:>8,.0f} pushes/s  {cpu * 1e6:>6,.0f} µs CPU/push")
        rate_ratio = statistics.median(o[0] / b[0] for o, b in zip(ours, bare, strict=True))
        cpu_ratio = statistics.median(b[1] / o[1] for o, b in zip(ours, bare, strict=True))
        print(f"  daemon / bare loop: {rate_ratio:.2f}x the pushes/s, {cpu_ratio:.2f}x the pushes per CPU second")
    finally:
        if daemon is not None:
            daemon.stop()
        sink.terminate()
        sink.wait(30)


if __name__ == "__main__":
    main()
