"""What parsing one transaction costs: µs (CPU) and instructions per ``transaction_from_json``.

Two cases: a bridge-shaped MessageNew (every field Dovecot's bridge sends) and a 10-event
FlagsSet transaction. Each is parsed in a child process, so ``--against REV`` can parse the
same texts with the code of another git revision (``git archive`` of its ``core/src``) in the
same run, rounds interleaved:

    python benchmarks/parse.py                      # this tree
    python benchmarks/parse.py --against main       # before/after in one run

µs: best of ``--rounds`` rounds of process CPU time (``time.process_time``) over ``--count``
parses. Instructions: ``valgrind --tool=callgrind`` totals of a child parsing ``2n`` minus one
parsing ``n`` texts, divided by ``n``: start-up and imports cancel out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from revision import source_paths

MESSAGE_NEW = {
    "id": "6f1c2b0e9a7d4c3b8e5f1a2b3c4d5e6f",
    "user": {
        "username": "alice@example.com",
        "service": "lmtp",
        "session_id": "<QmZhc2U2NC1zZXNzaW9u>",
        "home": "/var/vmail/example.com/alice",
        "uid": 5000,
        "gid": 5000,
        "session_create_time": 1764540000,
        "anonymous": False,
        "admin": False,
    },
    "mailbox": "INBOX",
    "success": True,
    "events": [
        {
            "name": "MessageNew",
            "mailbox": "INBOX",
            "uid": 4711,
            "uid_validity": 1764540000,
            "from": "=?UTF-8?Q?Bob_M=C3=BCller?= <bob@example.org>",
            "to": "alice@example.com",
            "subject": "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=",
            "subject_utf8": "Grüße",
            "from_address": "bob@example.org",
            "from_display_name": "Bob Müller",
            "to_address": "alice@example.com",
            "to_display_name": "",
            "date": 1764540123,
            "tz": 60,
            "snippet": "Hello Alice, here is the report you asked for last week.",
            "message_id": "<20261130.4711@example.org>",
            "flags": ["\\Recent"],
            "keywords": ["$Forwarded"],
        }
    ],
    "metadata": {"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},
    "status": {"messages": 12, "recent": 1, "unseen": 3, "uidvalidity": 1764540000, "uidnext": 4712},
}

FLAGS_SET = {
    "id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "user": {"username": "alice@example.com", "service": "imap", "session_id": "<aW1hcC1zZXNzaW9u>"},
    "mailbox": "INBOX",
    "success": True,
    "events": [
        {"name": "FlagsSet", "mailbox": "INBOX", "uid": 100 + i, "uid_validity": 1764540000, "flags": ["\\Seen"]}
        for i in range(10)
    ],
}

CASES = {"MessageNew (bridge)": MESSAGE_NEW, "FlagsSet x10": FLAGS_SET}


def child(case: str, count: int, timed: bool) -> None:
    """Parse ``case`` ``count`` times; print the best round's CPU µs per parse if ``timed``."""
    from push_notification.transaction import transaction_from_json

    text = json.dumps(CASES[case], separators=(",", ":"), ensure_ascii=False).encode()
    transaction_from_json(text)  # warm: first-use costs are not a parse's
    if not timed:
        for _ in range(count):
            transaction_from_json(text)
        return
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            transaction_from_json(text)
        best = min(best, time.process_time() - started)
    print(best / count * 1e6)


def run_child(src: Path, case: str, count: int, timed: bool, callgrind: Path | None = None) -> str:
    argv = [sys.executable, __file__, "--child", case, "--count", str(count)]
    if timed:
        argv.append("--timed")
    if callgrind is not None:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}", *argv]
    # A fixed hash seed: string hashing otherwise moves the start-up cost between the two runs.
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout


def instructions(src: Path, case: str, count: int, scratch: Path) -> float:
    """Instructions per parse: callgrind's total for ``2 * count`` parses minus ``count``."""
    totals = []
    for n in (count, 2 * count):
        out = scratch / f"cg.{os.getpid()}.{n}"
        run_child(src, case, n, timed=False, callgrind=out)
        match = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no totals in {out}")
        totals.append(int(match.group(1)))
        out.unlink()
    return (totals[1] - totals[0]) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", metavar="REV", help="also measure git revision REV's parser")
    parser.add_argument("--count", type=int, default=2000, help="parses per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per tree")
    parser.add_argument("--cg-count", type=int, default=300, help="parses per callgrind step (n)")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.count, args.timed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        trees = {"this tree": source_paths(None, scratch)[0]}
        if args.against:
            trees[args.against] = source_paths(args.against, scratch)[0]
        print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
        print(f"{'case':<22} {'tree':<12} {'µs/parse':>9} {'instr/parse':>12}")
        for case in CASES:
            best = {label: float("inf") for label in trees}
            for _ in range(args.rounds):
                for label, src in trees.items():
                    best[label] = min(best[label], float(run_child(src, case, args.count, timed=True)))
            for label, src in trees.items():
                instr = instructions(src, case, args.cg_count, scratch) if shutil.which("valgrind") else float("nan")
                print(f"{case:<22} {label:<12} {best[label]:>9.1f} {instr:>12,.0f}")


if __name__ == "__main__":
    main()
