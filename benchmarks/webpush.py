"""webpush driver: encrypted pushes/s and the daemon's CPU per push, against a bare loop that
encrypts (http-ece, a fresh P-256 key per message) and POSTs (aiohttp, VAPID from py-vapid)
with the same libraries, to the same sink, in one run.

The sink, a process of its own, answers 201 after checking each message carries the Web Push
headers (it does not decrypt: its CPU would only slow both sides). The daemon runs as
``push-notification serve`` fed through the bridge spool (see device_bench.py), one
subscription per user; CPU is read from /proc.

    python benchmarks/webpush.py [--pushes 1000] [--rounds 5] [--users 100] [--setting LINE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import aiohttp
import device_bench
import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from device_bench import Device, Round, Setup, Sink, serve_sink
from push_notification.devices.vapid import b64url, b64url_decode, create_vapid_key, load_vapid_key
from py_vapid import Vapid02

PAYLOAD = b'{"account":"user0@example.com","mailbox":"INBOX","event":"MessageNew","count":1,"unseen":1}'


class HeaderCheckingPushService:
    """A push service that checks the headers of each message (VAPID, aes128gcm, TTL) and
    answers 201, or 400 for a malformed one (counted in ``rejected``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[int] = []
        self.rejected: list[str] = []

    async def __aenter__(self) -> HeaderCheckingPushService:
        from aiohttp import web

        async def push(request: web.Request) -> web.Response:
            body = await request.read()
            headers = request.headers
            vapid = headers.get("Authorization", "").startswith("vapid t=")
            if vapid and headers.get("Content-Encoding") == "aes128gcm" and "TTL" in headers and len(body) > 86:
                self.received.append(len(body))
                return web.Response(status=201)
            self.rejected.append(request.path)
            return web.Response(status=400)

        app = web.Application()
        app.router.add_post("/push/{id}", push)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def run_sink(args: argparse.Namespace) -> None:
    serve_sink(HeaderCheckingPushService(args.port), args.sink)


def subscription(sink: str, number: int) -> Device:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    keys = {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}
    return {"subscription": {"endpoint": f"{sink}/push/{number}", "keys": keys}}


async def bare_loop(key_path: Path, sink: str, devices: list[Device], n: int) -> Round:
    """(pushes/s, CPU seconds per push) of encrypt + POST, one after another."""
    vapid = Vapid02(private_key=load_vapid_key(key_path))
    authorization = vapid.sign({"aud": sink, "exp": int(time.time()) + 43200, "sub": "mailto:bench@example.com"})
    headers = {"TTL": "86400", "Urgency": "normal", "Content-Encoding": "aes128gcm",
               "Content-Type": "application/octet-stream", "Authorization": authorization["Authorization"]}  # fmt: skip
    async with aiohttp.ClientSession(skip_auto_headers=("User-Agent",)) as session:
        cpu, started = time.process_time(), time.perf_counter()
        for i in range(n):
            sub = devices[i % len(devices)]["subscription"]
            keys = sub["keys"]
            body = http_ece.encrypt(PAYLOAD, salt=os.urandom(16), private_key=ec.generate_private_key(ec.SECP256R1()),
                                    dh=b64url_decode(keys["p256dh"]), auth_secret=b64url_decode(keys["auth"]),
                                    version="aes128gcm")  # fmt: skip
            async with session.post(sub["endpoint"], data=body, headers=headers) as response:
                await response.read()
                assert response.status == 201, response.status
        return n / (time.perf_counter() - started), (time.process_time() - cpu) / n


def setup(work: Path, sink: Sink, users: int) -> Setup:
    key, url = work / "vapid.pem", f"http://127.0.0.1:{sink.port}"
    create_vapid_key(key)
    devices = [subscription(url, number) for number in range(users)]
    settings = {"vapid_key": str(key), "vapid_subject": "mailto:bench@example.com"}
    return Setup("webpush", settings, "webpush", devices, lambda n: asyncio.run(bare_loop(key, url, devices, n)))


if __name__ == "__main__":
    device_bench.main(__doc__ or "", __file__, run_sink, setup,
                      "webpush: {rounds} interleaved rounds of {pushes} encrypted pushes, {users} users",
                      "bare loop (http-ece + py-vapid + aiohttp)")  # fmt: skip
