"""The daemon's CPU per notification, taken apart: what the spool, the queue, the OX driver
and the HTTP ingress each cost, without Dovecot in the way.

Daemons run side by side (``push-notification serve``), each fed the same bridge-shaped
transaction at a steady rate, in interleaved rounds of one run:

  spool, no-op driver, memory queue   the spool reader and the dispatcher alone
  spool, no-op driver, sqlite queue   + the durable queue
  spool, OX driver, sqlite queue      the default setup (benchmarks/dovecot_e2e.py's c)
  http,  OX driver, sqlite queue      the ingress instead of the spool, one keep-alive connection
  http as the bridge, kept            the http bridge's exchange (dovecot_e2e.py's d): Dovecot's
                                      head with ``Expect: 100-continue``, the body only after the
                                      100, on the connection its process keeps (on the wire, 4
                                      LMTP connections x 25 deliveries made 5 TCP connections:
                                      Dovecot's HTTP client pools them per process, across mail
                                      users; 2.3.19's Lua set_payload always asks for the 100)
  http as the bridge, fresh           the same exchange on a new connection per notification,
                                      closed by the client once it read the 202 (a process that
                                      delivers one mail and exits)

plus the sink, a bare aiohttp server answering 200: its CPU per request is what one aiohttp
request costs a server here (the ingress speaks HTTP/1.1 itself, on httptools: that is not
its floor), and each row's "x sink" is its CPU over the sink's in the same rounds: the
host's speed and wake-up cost move both alike. CPU is read from /proc per process.
For the OX rows, latency is from the file's rename into new/ (or the POST) to its arrival at
the sink, p50 and p99: what the daemon adds to Dovecot's delivery, at that rate (a loaded
machine adds its own scheduling waits: compare rows of one run).

    python benchmarks/dovecot_e2e.py --help   # the end-to-end figures, with Dovecot
    python benchmarks/daemon_cpu.py [--rate 400] [--per-round 800] [--rounds 4]
    python benchmarks/daemon_cpu.py --only spool-ox-sqlite --rate 100,400,1600
                                                      # one table per rate: on a virtual
                                                      # machine a wake-up is dear, and the
                                                      # same code costs more per notification
                                                      # the longer it sleeps between them
    python benchmarks/daemon_cpu.py --against main   # each setup also on git revision main's
                                                      # code, rounds interleaved: before/after
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from dovecot_e2e import OX_PATH, cpu_seconds, sink_arrivals, wait_for_sink
from push_notification.testing.daemon import DaemonProcess, daemon_config
from push_notification.testing.net import free_port
from revision import source_paths

ROOT = Path(__file__).resolve().parents[1]
NOOP_DRIVER_DIR = ROOT / "tests" / "durable" / "driver"
TOKEN = "bench-token"


def transaction(name: str, number: int) -> dict[str, object]:
    """What the bridge writes for one LMTP delivery (Dovecot 2.3.19, status snapshot on)."""
    tag = f"bench-{name}-{number}"
    return {
        "id": f"{uuid.uuid4().hex}.{number}",
        "user": {
            "username": "alice@example.com", "service": "lmtp", "session_id": "QErELs7IBmtsIwAAg+zDdQ",
            "home": "/home/alice@example.com", "uid": 8, "gid": 8, "session_create_time": 1795606734,
            "nonexistent": False, "anonymous": False, "autocreated": False, "mail_debug": False,
            "fuzzy_search": False, "dsyncing": False, "admin": False, "session_restored": False,
        },
        "mailbox": "INBOX",
        "success": True,
        "events": [{
            "name": "MessageNew", "mailbox": "INBOX", "uid": number, "uid_validity": 1795606734,
            "from": "Bench <bench@example.org>", "to": "alice@example.com", "snippet": f"{tag} body text",
            "from_address": "bench@example.org", "from_display_name": "Bench", "to_address": "alice@example.com",
            "subject_utf8": tag, "date": 0, "tz": 0, "flags": [], "keywords": [],
        }],
        "metadata": {"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},
        "status": {"messages": number, "recent": 1, "unseen": 1, "uidvalidity": 1795606734, "uidnext": number + 1},
    }  # fmt: skip


def bridge_head(port: int, length: int) -> bytes:
    """The head Dovecot 2.3.19's HTTP client sends for the http bridge's POST, field for field
    (as captured on the wire): its own fields first, the script's after them."""
    date = email.utils.formatdate(usegmt=True)
    return (
        f"POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nDate: {date}\r\n"
        f"User-Agent: push-notification-bridge/1\r\nExpect: 100-continue\r\nContent-Length: {length}\r\n"
        f"Connection: Keep-Alive\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()


@dataclass
class Variant:
    name: str  # letters and dashes only: the sink finds "bench-NAME-N" in request bodies
    title: str
    transport: str
    driver: str
    queue: str
    directory: Path
    #: Source folders first on the daemon's PYTHONPATH (another revision's code), or none.
    code: tuple[Path, ...] = ()
    #: For http: "keep-alive" (one request per write), "bridge" or "fresh" (Dovecot's exchange).
    exchange: str = "keep-alive"
    daemon: DaemonProcess | None = None
    cpu: float = 0.0
    sent: int = 0
    connection: socket.socket | None = None
    #: When each notification of the measured rounds was handed over (its sink tag → time).
    handed: dict[str, float] | None = None

    @property
    def spool(self) -> Path:
        return self.directory / "spool"

    def start(self, sink_url: str) -> None:
        for path in (self.spool / "tmp", self.spool / "new"):
            path.mkdir(parents=True)
        block = (
            f"push_notification ox {{\n  driver = ox\n  ox_url = {sink_url}\n}}\n"
            if self.driver == "ox"
            else "push_notification noop {\n  driver = durable_test_noop\n}\n"
        )
        source = f"spool_dir = {self.spool}\n" if self.transport == "spool" else f"ingress_token = {TOKEN}\n"
        config = daemon_config(self.directory, f"queue = {self.queue}\nlog_level = warning\n{source}{block}")
        self.daemon = DaemonProcess(config, pythonpath=[*self.code, NOOP_DRIVER_DIR]).start()
        if self.transport == "http" and self.exchange != "fresh":
            self.connection = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)

    def send(self, number: int) -> None:
        body = json.dumps(transaction(self.name, number), separators=(",", ":")).encode()
        if self.transport == "spool":  # as the bridge does: write into tmp/, rename into new/
            name = f"{number}.{uuid.uuid4().hex}.json"
            (self.spool / "tmp" / name).write_bytes(body)
            os.rename(self.spool / "tmp" / name, self.spool / "new" / name)
            self._handed(number)
            return
        self._handed(number)
        if self.exchange == "keep-alive":
            assert self.connection is not None
            self.connection.sendall(
                b"POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            self._answer(self.connection, b"HTTP/1.1 202")
            return
        assert self.daemon is not None
        connection = self.connection or socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
        connection.sendall(bridge_head(self.daemon.port, len(body)))
        self._answer(connection, b"HTTP/1.1 100")  # Dovecot 2.3 sends the body only after it
        connection.sendall(body)
        self._answer(connection, b"HTTP/1.1 202")
        if connection is not self.connection:
            connection.close()  # the client closes first, as Dovecot does at the end of its process

    def _answer(self, connection: socket.socket, status: bytes) -> None:
        """Read one response, which must begin with ``status``."""
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += connection.recv(4096)
        head, _, rest = answer.partition(b"\r\n\r\n")
        if not head.startswith(status):
            raise SystemExit(f"{self.name}: ingress answered {head.splitlines()[0]!r}")
        if rest and status == b"HTTP/1.1 100":
            raise SystemExit(f"{self.name}: the ingress answered before the body was sent: {rest[:80]!r}")
        lengths = [int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"]
        length = lengths[0] if lengths else 0
        while len(rest) < length:
            rest += connection.recv(4096)

    def _handed(self, number: int) -> None:
        if self.handed is not None:
            self.handed[f"{self.name}-{number}"] = time.time()

    def latency(self, arrived: dict[str, float]) -> str:
        """``p50 / p99`` ms from hand-over to the sink, or empty for the no-op rows."""
        if not self.handed:
            return ""
        times = sorted((arrived[tag] - at) * 1000 for tag, at in self.handed.items() if tag in arrived)
        return f"{times[len(times) // 2]:8.2f} / {times[int(len(times) * 0.99)]:.2f}" if times else ""

    def settled(self, numbers: range, arrived: dict[str, float]) -> bool:
        if self.driver == "ox":
            return all(f"{self.name}-{n}" in arrived for n in numbers)
        return not any((self.spool / "new").iterdir())

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.daemon is not None:
            self.daemon.stop()


def run_round(variant: Variant, numbers: range, rate: float, sink_port: int, sink_pid: int) -> float:
    """Send ``numbers`` at ``rate``/s, wait until all are settled; the sink's CPU meanwhile."""
    assert variant.daemon is not None and variant.daemon.proc is not None
    pid = variant.daemon.proc.pid
    before, sink_before = cpu_seconds(lambda: [pid]), cpu_seconds(lambda: [sink_pid])
    started = time.perf_counter()
    for index, number in enumerate(numbers):
        variant.send(number)
        delay = started + (index + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    deadline = time.monotonic() + 60
    while not variant.settled(numbers, sink_arrivals(sink_port) if variant.driver == "ox" else {}):
        if time.monotonic() > deadline:
            raise SystemExit(f"{variant.name}: not settled after 60 s; see {variant.directory / 'daemon.log'}")
        time.sleep(0.05)
    time.sleep(0.2)  # outcomes recorded after the last delivery belong to this round
    variant.cpu += cpu_seconds(lambda: [pid]) - before
    variant.sent += len(numbers)
    return cpu_seconds(lambda: [sink_pid]) - sink_before


def measure(variants: list[Variant], rate: float, args: argparse.Namespace, first: int, port: int, sink: int) -> int:
    """Run every setup's rounds at ``rate`` and print its table; the next unused number."""
    sink_cpu, sink_requests = 0.0, 0
    for variant in variants:
        variant.cpu, variant.sent = 0.0, 0
        variant.handed = {} if variant.driver == "ox" else None
    print(f"\n{args.rounds} interleaved rounds of {args.per_round} notifications at {rate:g}/s"
          f" per setup; {os.cpu_count()} CPUs")  # fmt: skip
    for _ in range(args.rounds):
        for variant in variants:
            used = run_round(variant, range(first, first + args.per_round), rate, port, sink)
            if variant.driver == "ox":
                sink_cpu, sink_requests = sink_cpu + used, sink_requests + args.per_round
        first += args.per_round
    arrived = sink_arrivals(port)
    sink_ms = sink_cpu * 1000 / sink_requests if sink_requests else 0.0
    print(f"{'setup':<44} {'daemon CPU ms per notification':>32} {'x sink':>7}   latency ms p50 / p99")
    for variant in variants:
        ms = variant.cpu * 1000 / variant.sent
        ratio = f"{ms / sink_ms:7.2f}" if sink_ms else f"{'':7}"
        print(f"{variant.title:<44} {ms:32.3f} {ratio}   {variant.latency(arrived)}")
    if sink_requests:
        print(f"{'sink: a bare aiohttp server, per request':<44} {sink_ms:32.3f}")
    return first


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give notifications/s, e.g. 400 or 100,400,1600") from None
    if not all(rate > 0 for rate in rates):  # a split gives at least one; NaN is not above 0 either
        raise argparse.ArgumentTypeError(f"{text!r}: every rate must be above 0")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rate", type=_rates, default=[400.0], help="notifications/s, or several, comma-separated (default 400)"
    )
    parser.add_argument("--per-round", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--against", metavar="REV", help="also run each setup on git revision REV's code")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated setups to run (default: all)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pn-daemon-cpu-"))
    sink_port = free_port()
    e2e = Path(__file__).with_name("dovecot_e2e.py")
    sink = subprocess.Popen([sys.executable, str(e2e), "--sink", str(sink_port), str(work / "sink.json")])
    setups = [
        ("spool-noop-memory", "spool, no-op driver, memory queue", "spool", "noop", "memory"),
        ("spool-noop-sqlite", "spool, no-op driver, sqlite queue", "spool", "noop", "sqlite"),
        ("spool-ox-sqlite", "spool, OX driver, sqlite queue (default)", "spool", "ox", "sqlite"),
        ("http-ox-sqlite", "http ingress, OX driver, sqlite queue", "http", "ox", "sqlite"),
        ("http-bridge-ox-sqlite", "http as the bridge, kept connection", "http", "ox", "sqlite", "bridge"),
        ("http-fresh-ox-sqlite", "http as the bridge, fresh connections", "http", "ox", "sqlite", "fresh"),
    ]
    if args.only:
        setups = [setup for setup in setups if setup[0] in args.only.split(",")]
    variants = [
        Variant(name, title, transport, driver, queue, work / name, exchange=exchange[0] if exchange else "keep-alive")
        for name, title, transport, driver, queue, *exchange in setups
    ]
    if args.against:  # the same setups on the other revision's code, each beside its twin
        code = tuple(source_paths(args.against, work / "code"))
        twins = [
            replace(v, name=f"{v.name}-rev", title=f"  {args.against}", directory=work / f"{v.name}-rev", code=code)
            for v in variants
        ]
        variants = [v for pair in zip(variants, twins, strict=True) for v in pair]
    try:
        wait_for_sink(sink_port)
        for variant in variants:
            variant.start(f"http://login:pass@127.0.0.1:{sink_port}{OX_PATH}")
        for variant in variants:  # warm up: connections, caches, first queue reads
            run_round(variant, range(1, 51), args.rate[0], sink_port, sink.pid)
        first = 1000
        for rate in args.rate:
            first = measure(variants, rate, args, first, sink_port, sink.pid)
    finally:
        for variant in variants:
            variant.stop()
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
