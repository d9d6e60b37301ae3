"""Real Dovecot deliveries with and without push, through Dovecot's OX driver and our bridge.

Run as root with Dovecot installed (scripts/install-dovecot) and the ox driver installed:

    python benchmarks/dovecot_e2e.py [--deliveries 2000] [--connections 4] [--rounds 5]

Setups, each its own Dovecot (and daemon), driven in interleaved batches in one run:

  a  Dovecot without push
  b  Dovecot's own OX driver → sink
  c  spool bridge → daemon → our OX driver → sink
  c- the same without the bridge's mailbox status snapshot (what the snapshot's sync costs)
  d  http bridge → daemon → our OX driver → sink

Figures: deliveries/s (LMTP replies), delivery → sink latency p50/p99 (from the DATA command
to the sink's receipt), CPU ms per delivery of Dovecot (all its processes), the daemon and
the sink, measured from /proc. Issue 5 targets: c ≥ 1.1× b with p99 within 5 ms of b's;
d ≥ 0.95× b; daemon CPU ≤ 0.5 ms per notification.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from push_notification.dovecot.setup import BridgeOptions, install_script, plugin_settings
from push_notification.testing.daemon import DaemonProcess, daemon_config
from push_notification.testing.dovecot import Dovecot, lmtp_send
from push_notification.testing.net import free_port

USER = "alice@example.com"
OX_KEY = "/private/vendor/vendor.dovecot/http-notify"
OX_PATH = "/preliminary/http-notify/v1/notify"
TAG = re.compile(rb"bench-([a-z-]+)-(\d+)")
TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the sink
def run_sink(port: int, out: str) -> None:
    """A separate process: answers every request 200 and records when each tag arrived."""
    import asyncio

    from aiohttp import web

    arrived: dict[str, float] = {}

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        for name, number in TAG.findall(body):
            arrived.setdefault(f"{name.decode()}-{number.decode()}", now)
        return web.Response(status=200, text="ok")

    async def arrivals(request: web.Request) -> web.Response:
        return web.json_response(arrived)

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        app.router.add_get("/_arrived", arrivals)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    Path(out).write_text(json.dumps(arrived))


def wait_for_sink(port: int) -> None:
    """Until the sink answers (it starts in its own process)."""
    for _ in range(200):
        try:
            sink_arrivals(port)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the sink on port {port} did not start")


def sink_arrivals(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_arrived", timeout=10) as response:
        data: dict[str, float] = json.loads(response.read())
        return data


# ------------------------------------------------------------------- CPU use
def cpu_seconds(pids: Callable[[], list[int]]) -> float:
    """utime+stime of the processes, plus what they reaped from exited children."""
    total = 0
    for pid in pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / TICK


def group_pids(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry))
    return found


# -------------------------------------------------------------------- setups
@dataclass
class Setup:
    name: str
    title: str
    dovecot: Dovecot
    sink: int | None = None
    daemon: DaemonProcess | None = None
    delivered: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=lambda: {"dovecot": 0.0, "daemon": 0.0, "sink": 0.0})
    sent_at: dict[str, float] = field(default_factory=dict)


def start_daemon(directory: Path, config: str) -> DaemonProcess:
    return DaemonProcess(daemon_config(directory, f"log_level = warning\n{config}")).start()


def bridged(transport: str, status: bool, url: str, token: str | None) -> tuple[Dovecot, Path]:
    dovecot = Dovecot(users=(USER,))
    spool = dovecot.make_spool()
    script = install_script(dovecot.root / "share")
    options = BridgeOptions(str(script), transport=transport, spool=str(spool), url=url, token=token, status=status)
    dovecot.plugin.update(plugin_settings(options))
    return dovecot, spool


def make_setups(sink_port: int, work: Path) -> list[Setup]:
    sink_url = f"http://login:pass@127.0.0.1:{sink_port}{OX_PATH}"
    setups = [
        Setup("a", "Dovecot without push", Dovecot(users=(USER,), mail_plugins="")),
        Setup(
            "b",
            "Dovecot's OX driver -> sink",
            Dovecot(
                users=(USER,),
                mail_plugins="notify push_notification",
                plugin={"push_notification_driver": f"ox:url={sink_url}"},
            ),
            sink=sink_port,
        ),
    ]
    ox_block = f"push_notification ox {{\n  driver = ox\n  ox_url = {sink_url}\n}}\n"
    for name, title, transport, status in [
        ("c", "spool bridge -> daemon -> our OX -> sink", "spool", True),
        ("c-", "spool bridge, no status snapshot", "spool", False),
        ("d", "http bridge -> daemon -> our OX -> sink", "http", True),
    ]:
        directory = work / name
        directory.mkdir()
        token = "bench-token" if transport == "http" else None
        dovecot, spool = bridged(transport, status, "http://127.0.0.1:8425/v1/transactions", token)
        config = ox_block + (f"spool_dir = {spool}\n" if transport == "spool" else f"ingress_token = {token}\n")
        daemon = start_daemon(directory, config)
        if transport == "http":
            dovecot.plugin["push_notification_bridge_url"] = daemon.ingress
        setups.append(Setup(name, title, dovecot, sink=sink_port, daemon=daemon))
    return setups


# --------------------------------------------------------------------- runs
def batch(setup: Setup, start: int, count: int, connections: int, sink_pid: int) -> None:
    """Deliver ``count`` mails over ``connections`` LMTP connections; wait for the sink."""
    dovecot = setup.dovecot
    assert dovecot.pid is not None
    pgid = dovecot.pid
    procs = {
        "dovecot": lambda: group_pids(pgid),
        "daemon": lambda: [setup.daemon.proc.pid] if setup.daemon and setup.daemon.proc else [],
        "sink": lambda: [sink_pid] if setup.sink else [],
    }
    before = {k: cpu_seconds(v) for k, v in procs.items()}
    numbers = list(range(start, start + count))
    lanes = [numbers[i::connections] for i in range(connections)]
    failures: list[str] = []

    def lane(items: list[int]) -> None:
        conn = dovecot.lmtp()
        for n in items:
            tag = f"bench-{setup.name}-{n}"
            mail = f"From: Bench <bench@example.org>\r\nTo: {USER}\r\nSubject: {tag}\r\n\r\n{tag} body text\r\n"
            setup.sent_at[tag[6:]] = time.time()
            codes = lmtp_send(conn, mail, [USER], "bench@example.org")
            if codes[0][0] != 250:
                failures.append(f"{tag}: {codes}")
        conn.quit()

    started = time.perf_counter()
    threads = [threading.Thread(target=lane, args=(items,)) for items in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    setup.seconds += time.perf_counter() - started
    setup.delivered += count
    if failures:
        raise RuntimeError(f"{setup.name}: deliveries failed: {failures[:3]}")
    if setup.sink is not None:
        wanted = {f"{setup.name}-{n}" for n in numbers}
        deadline = time.monotonic() + 60
        while True:
            arrived = sink_arrivals(setup.sink)
            if wanted <= arrived.keys() or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        missing = wanted - arrived.keys()
        if missing:
            raise RuntimeError(f"{setup.name}: {len(missing)} notifications never reached the sink")
        setup.latencies.extend(arrived[key] - setup.sent_at[key] for key in wanted)
    for key, pids in procs.items():
        setup.cpu[key] += cpu_seconds(pids) - before[key]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(setups: list[Setup]) -> None:
    by_name = {s.name: s for s in setups}
    rate = {s.name: s.delivered / s.seconds for s in setups}
    print(f"\n{'setup':<4} {'what':<42} {'deliv/s':>8} {'x a':>6} {'x b':>6} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'dovecot':>8} {'daemon':>8} {'sink':>8}   (CPU ms per delivery)")  # fmt: skip
    for s in setups:
        mid = f"{percentile(s.latencies, 0.5) * 1000:8.2f}" if s.latencies else f"{'-':>8}"
        high = f"{percentile(s.latencies, 0.99) * 1000:8.2f}" if s.latencies else f"{'-':>8}"
        cpu = [f"{s.cpu[k] * 1000 / s.delivered:8.3f}" for k in ("dovecot", "daemon", "sink")]
        print(f"{s.name:<4} {s.title:<42} {rate[s.name]:8.1f} {rate[s.name] / rate['a']:6.2f}"
              f" {rate[s.name] / rate['b']:6.2f} {mid} {high} {' '.join(cpu)}")  # fmt: skip
    p99 = {k: percentile(by_name[k].latencies, 0.99) * 1000 for k in ("b", "c", "d")}

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print("\ntargets:")
    print(f"  c >= 1.1 x b:            {rate['c'] / rate['b']:.2f} x  {verdict(rate['c'] >= 1.1 * rate['b'])}")
    print(f"  c p99 <= b p99 + 5 ms:   {p99['c']:.2f} vs {p99['b']:.2f} ms  {verdict(p99['c'] <= p99['b'] + 5)}")
    print(f"  d >= 0.95 x b:           {rate['d'] / rate['b']:.2f} x  {verdict(rate['d'] >= 0.95 * rate['b'])}")
    for name in ("c", "d"):
        per = by_name[name].cpu["daemon"] * 1000 / by_name[name].delivered
        print(f"  daemon CPU ({name}) <= 0.5 ms: {per:.3f} ms  {verdict(per <= 0.5)}")
    snapshot = rate["c-"] / rate["c"]
    print(f"  status snapshot costs: c- runs at {snapshot:.2f} x c")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000, help="per setup (default 2000)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved batches per setup")
    parser.add_argument("--sink", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(int(args.sink[0]), args.sink[1])
        return
    work = Path(tempfile.mkdtemp(prefix="pn-bench-"))
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(sink_port), str(work / "sink.json")])
    setups: list[Setup] = []
    try:
        wait_for_sink(sink_port)
        setups = make_setups(sink_port, work)
        for setup in setups:
            setup.dovecot.start()
            setup.dovecot.set_metadata(USER, OX_KEY, "user=11@3")
            batch(setup, 0, 8, 1, sink.pid)  # warm up: INBOX, processes, connections
            setup.delivered, setup.seconds, setup.latencies = 0, 0.0, []
            setup.cpu = {k: 0.0 for k in setup.cpu}
        per_round = args.deliveries // args.rounds
        print(f"{args.deliveries} deliveries per setup over {args.connections} LMTP connections,"
              f" {args.rounds} interleaved rounds; {os.cpu_count()} CPUs")  # fmt: skip
        for r in range(args.rounds):
            for setup in setups:
                batch(setup, 1000 + r * per_round, per_round, args.connections, sink.pid)
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
        report(setups)
    finally:
        for setup in setups:
            if setup.daemon is not None:
                setup.daemon.stop()
            setup.dovecot.cleanup()
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
