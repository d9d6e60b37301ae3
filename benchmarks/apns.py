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
import tempfile
import time
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from device_bench import Round, Sink, SpoolDaemon, measure, report, serve_sink, user

TOPIC, KEY_ID, TEAM_ID = "com.example.mail", "BENCHKEY01", "BENCHTEAM1"


def token(number: int) -> str:
    return hashlib.sha256(f"bench-device-{number}".encode()).hexdigest()


def run_sink(args: argparse.Namespace) -> None:
    from push_notification_apns.testing import LoopbackApns

    key = serialization.load_pem_private_key((args.work / "AuthKey.p8").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=1000, help="per round and side (default 1000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args)
        return
    work = Path(tempfile.mkdtemp(prefix="pn-apns-bench-"))
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = work / "AuthKey.p8"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    sink = Sink(__file__, work)
    daemon: SpoolDaemon | None = None
    try:
        url, ca_file = f"https://127.0.0.1:{sink.port}", work / "apns-test-ca.pem"
        instance = (f"push_notification apns {{\n  topic = {TOPIC}\n  key_file = {key_file}\n  key_id = {KEY_ID}\n"
                    f"  team_id = {TEAM_ID}\n  production_url = {url}\n  ssl_client_ca_file = {ca_file}\n"
                    "  coalesce = 0\n  defer_non_new = 0\n}\n")  # fmt: skip
        daemon = SpoolDaemon(work, instance, "apns", [token(u) for u in range(args.users)])
        bares, ours = measure(
            lambda n: asyncio.run(bare_loop(url, ca_file, key, args.users, n)), daemon, sink, args.pushes, args.rounds
        )
        report(f"apns: {args.rounds} interleaved rounds of {args.pushes} background pushes, {args.users} users",
               "bare loop (httpx HTTP/2 + pyjwt)", bares, ours, sink.count()["bad"])  # fmt: skip
    finally:
        if daemon is not None:
            daemon.stop()
        sink.stop()


if __name__ == "__main__":
    main()
