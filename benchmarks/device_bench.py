"""The frame of the device-driver benchmarks (apns.py, fcm.py, webpush.py): a loopback push
service in a process of its own (the sink, which counts what it accepted), the daemon as
``push-notification serve`` fed through the bridge spool with the sqlite queue and the device
registry, and interleaved rounds of a bare client loop, the daemon and the driver alone,
compared within the run.

A benchmark module gives the sink (an async context manager factory), the instance settings,
one device per user and the bare loop; :func:`main` does the rest and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dovecot_e2e import cpu_seconds
from push_notification.testing.net import free_port

INGRESS_TOKEN = "bench-ingress"
#: (pushes/s, CPU seconds per push) of one round.
Round = tuple[float, float]


def user(number: int) -> str:
    return f"user{number}@example.com"


def serve_sink(service: Any, count_port: int) -> None:
    """In the sink process: run ``service`` (a loopback push service, not yet entered) until
    SIGTERM, with ``GET /_count`` on ``count_port`` saying how many pushes it accepted."""
    from aiohttp import web

    async def main() -> None:
        async with service:

            async def count(request: web.Request) -> web.Response:
                return web.json_response({"ok": len(service.received), "bad": len(service.rejected)})

            app = web.Application()
            app.router.add_get("/_count", count)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", count_port).start()
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
            await runner.cleanup()

    asyncio.run(main())


class Sink:
    """The sink process: ``python BENCH --sink COUNT_PORT --port PORT --work DIR``."""

    def __init__(self, script: str, work: Path) -> None:
        self.port, self.count_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [sys.executable, script, "--sink", str(self.count_port), "--port", str(self.port), "--work", str(work)]
        )
        for _ in range(400):
            try:
                self.count()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit("the sink exited") from None
                time.sleep(0.05)
        raise SystemExit("the sink did not start")

    def count(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.count_port}/_count", timeout=10) as response:
            data: dict[str, int] = json.loads(response.read())
            return data

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class SpoolDaemon:
    """``push-notification serve`` with ``instance`` (and ``extra`` config lines), storm control
    off (it would merge the bench's pushes), one device per user registered over HTTP."""

    def __init__(self, work: Path, instance: str, kind: str, devices: list[Device], extra: list[str]) -> None:
        self.spool = work / "spool"
        for part in ("tmp", "new"):
            (self.spool / part).mkdir(parents=True)
        self.users = len(devices)
        config = work / "daemon.conf"
        lines = "".join(f"{line}\n" for line in extra)
        config.write_text(f"state_dir = {work / 'state'}\nlog_level = warning\nspool_dir = {self.spool}\n"
                          f"ingress_token = {INGRESS_TOKEN}\n{lines}{instance}")  # fmt: skip
        self.url = f"http://127.0.0.1:{free_port()}"
        with (work / "daemon.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "push_notification.cli", "serve", "-c", str(config),
                 "--listen", self.url.removeprefix("http://")], stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        for _ in range(400):
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"the daemon did not start; see {work / 'daemon.log'}")
        for number, device in enumerate(devices):
            body = json.dumps({"user": user(number), "kind": kind, **device}).encode()
            request = urllib.request.Request(f"{self.url}/v1/devices", data=body, method="POST")
            request.add_header("Authorization", f"Bearer {INGRESS_TOKEN}")
            urllib.request.urlopen(request, timeout=10).read()

    def feed(self, first: int, n: int) -> None:
        """As the bridge does for LMTP deliveries: one spool file per transaction."""
        for number in range(first, first + n):
            txn = {"user": {"username": user(number % self.users), "service": "lmtp"},
                   "mailbox": "INBOX", "events": [{"name": "MessageNew", "mailbox": "INBOX", "uid": number,
                   "uid_validity": 1795606734, "from_address": "bench@example.org", "subject_utf8": "Hello"}],
                   "status": {"messages": number, "recent": 1, "unseen": 1, "uidvalidity": 1795606734,
                              "uidnext": number + 1}}  # fmt: skip
            name = f"{number}.{uuid.uuid4().hex}.json"
            (self.spool / "tmp" / name).write_bytes(json.dumps(txn).encode())
            os.rename(self.spool / "tmp" / name, self.spool / "new" / name)

    def round(self, sink: Sink, first: int, n: int) -> Round:
        """(pushes/s, daemon CPU seconds per push) for ``n`` transactions written at once."""
        pid = self.process.pid
        before = sink.count()["ok"]
        cpu, started = cpu_seconds(lambda: [pid]), time.perf_counter()
        self.feed(first, n)
        deadline = time.monotonic() + 120
        while sink.count()["ok"] < before + n:
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not push everything within 120 s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        time.sleep(0.2)  # the last outcomes are recorded after the sink answered
        return n / elapsed, (cpu_seconds(lambda: [pid]) - cpu) / n

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def measure(
    plan: Setup, daemon: SpoolDaemon, sink: Sink, pushes: int, rounds: int
) -> tuple[list[Round], list[Round], list[Round]]:
    """Warm the sides up, then ``rounds`` interleaved rounds of the bare loop, the daemon and
    the driver alone (the machine is shared: compare within a round)."""
    plan.bare(100)
    daemon.round(sink, 0, 100)
    bares: list[Round] = []
    ours: list[Round] = []
    alone: list[Round] = []
    for number in range(rounds):
        bares.append(plan.bare(pushes))
        ours.append(daemon.round(sink, 1000 + number * pushes, pushes))
        alone.append(driver_alone(plan, pushes))
    return bares, ours, alone


#: What registers one device, beside its user and kind: ``{"token": ...}`` (APNs, FCM) or
#: ``{"subscription": {...}}`` (Web Push).
Device = dict[str, Any]


@dataclass(frozen=True)
class Setup:
    """What a benchmark module brings: the driver's name and settings, the device kind and
    one device per user, and its bare loop (``n`` pushes → one round)."""

    driver: str
    settings: dict[str, str]
    kind: str
    devices: list[Device]
    bare: Callable[[int], Round]

    @property
    def instance(self) -> str:
        """The daemon's instance block, storm control off (it would merge the bench's pushes)."""
        lines = "".join(f"  {key} = {value}\n" for key, value in self.settings.items())
        return f"push_notification {self.driver} {{\n{lines}  coalesce = 0\n  defer_non_new = 0\n}}\n"


async def _driver_alone(plan: Setup, n: int) -> Round:
    from push_notification.devices.registration import parse_registration
    from push_notification.testing import DriverHarness, make_event, make_transaction

    async with DriverHarness(plan.driver, plan.settings) as harness:
        for number, device in enumerate(plan.devices):
            body = {"user": user(number), "kind": plan.kind, **device}
            await harness.devices.register(parse_registration(body, harness.devices.kinds), "bench")
        status = {"messages": 1, "recent": 1, "unseen": 1, "uidvalidity": 1, "uidnext": 2}
        txns = [make_transaction(make_event("MessageNew", uid=i + 1), user=user(i % len(plan.devices)), status=status)
                for i in range(n + 20)]  # fmt: skip
        for txn in txns[:20]:  # warm-up: connection, access token
            await harness.plugin.end_txn(txn, True)
        cpu, started = time.process_time(), time.perf_counter()
        for txn in txns[20:]:
            await harness.plugin.end_txn(txn, True)
        return n / (time.perf_counter() - started), (time.process_time() - cpu) / n


def driver_alone(plan: Setup, n: int) -> Round:
    """The driver's own cost: ``end_txn`` called in this process, one transaction after
    another (registry lookup, payload, the shared HTTP sender), no daemon around it."""
    return asyncio.run(_driver_alone(plan, n))


def main(doc: str, script: str, sink: Callable[[argparse.Namespace], None],
         setup: Callable[[Path, Sink, int], Setup], title: str, bare_label: str) -> None:  # fmt: skip
    """The command line of a benchmark module: ``[--pushes N] [--rounds N] [--users N]
    [--setting LINE]...``; ``title`` is formatted with the arguments. The sink starts first and writes the
    credentials the push service hands out (the team key, the service account) to the work
    directory ``setup`` reads them from."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=1000, help="per round and side (default 1000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--setting", action="append", default=[], help="a daemon config line, e.g. 'queue = memory'")
    parser.add_argument("--instance-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the driver's instance block, e.g. max_parallel_deliveries=1")  # fmt: skip
    for hidden in ("--sink", "--port"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        sink(args)
        return
    work = Path(tempfile.mkdtemp(prefix=f"pn-{Path(script).stem}-bench-"))
    running = Sink(script, work)
    daemon: SpoolDaemon | None = None
    try:
        plan = setup(work, running, args.users)
        extra = dict(setting.split("=", 1) for setting in args.instance_setting)
        plan = dataclasses.replace(plan, settings={**plan.settings, **{k.strip(): v.strip() for k, v in extra.items()}})
        daemon = SpoolDaemon(work, plan.instance, plan.kind, plan.devices, args.setting)
        bares, ours, alone = measure(plan, daemon, running, args.pushes, args.rounds)
        report(title.format(**vars(args)), bare_label, bares, ours, alone, running.count()["bad"])
    finally:
        if daemon is not None:
            daemon.stop()
        running.stop()


def report(title: str, bare_label: str, bares: list[Round], ours: list[Round], alone: list[Round], bad: int) -> None:
    print(f"{title}; {os.cpu_count()} CPUs; pushes the sink refused: {bad}")
    print("  (pushes/s: best round; CPU per push: median round; ratios: median of the per-round ratios)")
    rows = ((bare_label, bares), ("daemon (spool, sqlite queue, registry)", ours), ("driver alone (end_txn)", alone))
    for name, rounds in rows:
        rate, cpu = max(r for r, _ in rounds), statistics.median(c for _, c in rounds)
        print(f"  {name:<42} {rate:>8,.0f} pushes/s  {cpu * 1e6:>6,.0f} µs CPU/push")
    rate_ratio = statistics.median(o[0] / b[0] for o, b in zip(ours, bares, strict=True))
    cpu_ratio = statistics.median(b[1] / o[1] for o, b in zip(ours, bares, strict=True))
    print(f"  daemon / bare loop: {rate_ratio:.2f}x the pushes/s, {cpu_ratio:.2f}x the pushes per CPU second")
    rate_ratio = statistics.median(o[0] / b[0] for o, b in zip(alone, bares, strict=True))
    cpu_ratio = statistics.median(b[1] / o[1] for o, b in zip(alone, bares, strict=True))
    print(f"  driver alone / bare loop: {rate_ratio:.2f}x the pushes/s, {cpu_ratio:.2f}x the pushes per CPU second")
