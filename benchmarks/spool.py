"""Files/s and daemon CPU per file through the spool reader (Dovecot bridge, spool transport).

A writer thread drops N transaction files into ``tmp/`` and renames them into ``new/`` (as
the bridge script does) while the real SpoolReader puts each into a counting queue. CPU is the
whole process's, writer included, so the reader's own share is lower.

    python benchmarks/spool.py [--files 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from push_notification.queue import MemoryQueue
from push_notification.server.spool import SpoolReader
from push_notification.transaction import Transaction

BODY = json.dumps(
    {
        "user": {"username": "alice", "service": "lmtp"},
        "mailbox": "INBOX",
        "events": [{"name": "MessageNew", "uid": 1, "uid_validity": 1700000000, "subject_utf8": "Hi"}],
        "status": {"messages": 1, "recent": 1, "unseen": 1, "uidvalidity": 1700000000, "uidnext": 2},
    }
).encode()


async def run(files: int) -> tuple[float, float]:
    spool = Path(tempfile.mkdtemp(prefix="pn-spool-bench-"))
    all_taken = asyncio.Event()

    class Counting(MemoryQueue):
        """Counts what it is given and keeps nothing (no instance is attached)."""

        taken = 0

        async def put(self, txn: Transaction) -> None:
            self.taken += 1
            if self.taken == files:
                all_taken.set()

    reader = SpoolReader(spool, Counting())
    await reader.start()

    def write() -> None:
        for _ in range(files):
            name = uuid.uuid4().hex
            (spool / "tmp" / name).write_bytes(BODY)
            os.rename(spool / "tmp" / name, spool / "new" / name)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, write)
    await asyncio.wait_for(all_taken.wait(), 120)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await reader.stop()
    return files / wall, cpu / files * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=3000)
    args = parser.parse_args()
    rate, cpu_ms = asyncio.run(run(args.files))
    print(f"spool reader: {args.files} files, {rate:,.0f} files/s, {cpu_ms:.3f} ms CPU per file (writer included)")


if __name__ == "__main__":
    main()
