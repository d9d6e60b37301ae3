"""fcm driver: pushes/s and the daemon's CPU per push, against a bare loop that sends the same
messages with the same libraries (aiohttp, an access token from google-auth's signed
assertion), to the same loopback FCM, in one run.

The sink is ``push_notification_fcm.testing.LoopbackFcm`` in a process of its own: an OAuth2
token endpoint checking the RS256 assertion, and ``messages:send`` checking the bearer token
and each message. The daemon runs as ``push-notification serve`` fed through the bridge spool
(see device_bench.py); CPU is read from /proc.

    python benchmarks/fcm.py [--pushes 1000] [--rounds 5] [--users 100]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import device_bench
from device_bench import Round, Setup, Sink, serve_sink, user
from google.auth import crypt, jwt

PROJECT = "bench-project"


def token(number: int) -> str:
    return f"bench{number}:APA91b" + hashlib.sha256(f"bench-device-{number}".encode()).hexdigest() * 2


def run_sink(args: argparse.Namespace) -> None:
    """Google's side: it makes the service account key and knows the devices."""
    from push_notification_fcm.testing import LoopbackFcm

    service = LoopbackFcm(PROJECT, port=args.port)
    service.url = f"http://127.0.0.1:{args.port}"  # the service account's token_uri, before it starts
    service.service_account(args.work / "service-account.json")
    for number in range(args.users):
        service.device(token(number))
    serve_sink(service, args.sink)


async def access_token(session: aiohttp.ClientSession, account: dict[str, Any]) -> str:
    now = int(time.time())
    claims = {"iss": account["client_email"], "scope": "https://www.googleapis.com/auth/firebase.messaging",
              "aud": account["token_uri"], "iat": now, "exp": now + 3600}  # fmt: skip
    signer = crypt.RSASigner.from_service_account_info(account)  # type: ignore[no-untyped-call]
    assertion = jwt.encode(signer, claims).decode()  # type: ignore[no-untyped-call]
    form = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with session.post(account["token_uri"], data=form, headers=headers) as response:
        return "Bearer " + str((await response.json())["access_token"])


async def bare_loop(url: str, account: dict[str, Any], users: int, n: int) -> Round:
    """(pushes/s, CPU seconds per push) of the same messages, one after another."""
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": await access_token(session, account), "Content-Type": "application/json"}
        send = f"{url}/v1/projects/{PROJECT}/messages:send"
        cpu, started = time.process_time(), time.perf_counter()
        for i in range(n):
            number = i % users
            data = {"account": user(number), "mailbox": "INBOX", "event": "MessageNew", "count": "1", "unseen": "1"}
            android = {"ttl": "86400s", "priority": "normal",
                       "collapse_key": hashlib.sha256(user(number).encode()).hexdigest()[:32]}  # fmt: skip
            body = json.dumps({"message": {"token": token(number), "data": data, "android": android}}).encode()
            async with session.post(send, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
        return n / (time.perf_counter() - started), (time.process_time() - cpu) / n


def setup(work: Path, sink: Sink, users: int) -> Setup:
    url, account_file = f"http://127.0.0.1:{sink.port}", work / "service-account.json"
    account = json.loads(account_file.read_text())
    settings = {"service_account": str(account_file), "url": url}
    return Setup("fcm", settings, "fcm", [{"token": token(u)} for u in range(users)],
                 lambda n: asyncio.run(bare_loop(url, account, users, n)))  # fmt: skip


if __name__ == "__main__":
    device_bench.main(__doc__ or "", __file__, run_sink, setup,
                      "fcm: {rounds} interleaved rounds of {pushes} data messages, {users} users",
                      "bare loop (aiohttp + google-auth)")  # fmt: skip
