"""What the bridge's synced snapshot costs an IMAP EXPUNGE, on a real Dovecot 2.3.

Run as root with Dovecot installed (scripts/install-dovecot):

    python benchmarks/bridge_expunge.py [--expunges 300] [--mailbox-size 500]

Three Dovecots, each configured by ``push-notification dovecot-config`` (spool transport, no
daemon: the spool only fills), driven in interleaved batches over one IMAP connection each:

  a  Dovecot without push
  b  the bridge without the status snapshot (``status = no``)
  c  the bridge with it: a transaction that expunged syncs the mailbox before its status

Each step expunges one message from an INBOX kept at ``--mailbox-size`` messages (a message is
appended back first, outside the timing). Figures: EXPUNGE round trips per second and p50/p99
latency, as seen by the client. c vs b is what the sync costs; b vs a is the bridge itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

from push_notification.dovecot.setup import BridgeOptions, install_script, render_snippet
from push_notification.testing.dovecot import Dovecot

USER = "alice@example.com"
MESSAGE = b"From: bench@example.org\r\nSubject: expunge me\r\n\r\nbody\r\n"


@dataclass
class Setup:
    name: str
    what: str
    dovecot: Dovecot
    timings: list[float] = field(default_factory=list)


def bridged(status: bool) -> Dovecot:
    dovecot = Dovecot(users=(USER,), mail_plugins="")
    spool = dovecot.make_spool()
    script = install_script(dovecot.root / "share")
    options = BridgeOptions(str(script), spool=str(spool), status=status)
    dovecot.extra_config = render_snippet(options, "2.3")
    return dovecot


def fill(dovecot: Dovecot, count: int) -> None:
    text = MESSAGE.decode()
    for _ in range(count):
        dovecot.doveadm("save", "-u", USER, "-m", "INBOX", stdin=text)


def run_batch(setup: Setup, count: int) -> None:
    imap = setup.dovecot.imap(USER)
    imap.select("INBOX")
    try:
        for _ in range(count):
            imap.append("INBOX", None, None, MESSAGE)
            imap.store("1", "+FLAGS", r"(\Deleted)")
            started = time.perf_counter()
            imap.expunge()
            setup.timings.append(time.perf_counter() - started)
    finally:
        imap.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expunges", type=int, default=300, help="per setup (default 300)")
    parser.add_argument("--mailbox-size", type=int, default=500, help="messages kept in INBOX (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved batches per setup")
    args = parser.parse_args()
    setups = [
        Setup("a", "Dovecot without push", Dovecot(users=(USER,), mail_plugins="")),
        Setup("b", "bridge, no status snapshot", bridged(status=False)),
        Setup("c", "bridge with the synced snapshot", bridged(status=True)),
    ]
    try:
        for setup in setups:
            setup.dovecot.start()
            fill(setup.dovecot, args.mailbox_size)
        batch = max(1, args.expunges // args.rounds)
        for number in range(args.rounds):
            for setup in setups:
                run_batch(setup, batch)
            print(f"  round {number + 1}/{args.rounds} done", flush=True)
    finally:
        for setup in setups:
            setup.dovecot.cleanup()
    print(f"\n{batch * args.rounds} expunges per setup, INBOX of {args.mailbox_size} messages, Maildir")
    print(f"{'setup':5} {'what':34} {'expunges/s':>10} {'x a':>6} {'p50 ms':>8} {'p99 ms':>8}")
    base = len(setups[0].timings) / sum(setups[0].timings)
    for setup in setups:
        rate = len(setup.timings) / sum(setup.timings)
        ordered = sorted(setup.timings)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(
            f"{setup.name:5} {setup.what:34} {rate:10.1f} {rate / base:6.2f}"
            f" {statistics.median(ordered) * 1000:8.2f} {p99 * 1000:8.2f}"
        )
    b, c = (len(s.timings) / sum(s.timings) for s in setups[1:])
    print(f"\nthe synced snapshot: c runs at {c / b:.2f} x b")


if __name__ == "__main__":
    main()
