"""apns driver: pushes/s and the daemon's CPU per push, against a bare loop that sends the same
pushes with the same library (httpx over HTTP/2, an ES256 provider token from pyjwt), to the
same loopback APNs, in one run.

The sink is ``push_notification_apns.testing.LoopbackApns`` in a process of its own: HTTP/2 over
TLS, checking each provider token's signature and the apns-* headers as Apple does. The daemon
runs as ``push-notification serve`` fed through the bridge spool (see device_bench.py); CPU is
read from /proc.

    python benchmarks/apns.py [--pushes 1000] [--rounds 5] [--users 100]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import ssl
import time
from pathlib import Path

import device_bench
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from device_bench import Round, Setup, Sink, serve_sink, user

TOPIC, KEY_ID, TEAM_ID = "com.example.mail", "BENCHKEY01", "BENCHTEAM1"


def token(number: int) -> str:
    return hashlib.sha256(f"bench-device-{number}".encode()).hexdigest()


def run_sink(args: argparse.Namespace) -> None:
    """Apple's side: it makes the team key (the .p8 a developer downloads) and knows the devices."""
    from push_notification_apns.testing import LoopbackApns

    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = serialization.PrivateFormat.PKCS8
    (args.work / "AuthKey.p8").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    )
    service = LoopbackApns(args.work, topic=TOPIC, key=key.public_key(), key_id=KEY_ID, team_id=TEAM_ID, port=args.port)
    for number in range(args.users):
        service.device(token(number))
    serve_sink(service, args.sink)


async def bare_loop(url: str, ca_file: Path, key: ec.EllipticCurvePrivateKey, users: int, n: int) -> Round:
    """(pushes/s, CPU seconds per push) of the same pushes, one after another on one connection."""
    context = ssl.create_default_context(cafile=str(ca_file))
    async with httpx.AsyncClient(http2=True, verify=context) as client:
        bearer = "bearer " + jwt.encode({"iss": TEAM_ID, "iat": int(time.time())}, key, "ES256", {"kid": KEY_ID})
        cpu, started = time.process_time(), time.perf_counter()
        for i in range(n):
            number = i % users
            wake = {"aps": {"content-available": 1}, "account": user(number), "mailbox": "INBOX",
                    "event": "MessageNew", "count": 1, "unseen": 1}  # fmt: skip
            body = json.dumps(wake, separators=(",", ":")).encode()
            headers = {"authorization": bearer, "apns-topic": TOPIC, "apns-push-type": "background",
                       "apns-priority": "5", "apns-expiration": str(int(time.time()) + 86400),
                       "apns-collapse-id": hashlib.sha256(user(number).encode()).hexdigest()[:32]}  # fmt: skip
            response = await client.post(f"{url}/3/device/{token(number)}", headers=headers, content=body)
            assert response.status_code == 200, response.text
        return n / (time.perf_counter() - started), (time.process_time() - cpu) / n


def setup(work: Path, sink: Sink, users: int) -> Setup:
    key_file, ca_file, url = work / "AuthKey.p8", work / "apns-test-ca.pem", f"https://127.0.0.1:{sink.port}"
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    settings = {"topic": TOPIC, "key_file": str(key_file), "key_id": KEY_ID, "team_id": TEAM_ID,
                "production_url": url, "ssl_client_ca_file": str(ca_file)}  # fmt: skip
    return Setup("apns", settings, "apns", [{"token": token(u)} for u in range(users)],
                 lambda n: asyncio.run(bare_loop(url, ca_file, key, users, n)))  # fmt: skip


if __name__ == "__main__":
    device_bench.main(__doc__ or "", __file__, run_sink, setup,
                      "apns: {rounds} interleaved rounds of {pushes} background pushes, {users} users",
                      "bare loop (httpx HTTP/2 + pyjwt)")  # fmt: skip
