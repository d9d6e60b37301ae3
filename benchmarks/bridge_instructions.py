"""What the Dovecot bridge costs Dovecot, in instructions: lmtp under callgrind, per delivery and per step.

Run as root with Dovecot 2.3 and valgrind installed (scripts/install-dovecot; apt-get install valgrind):

    python benchmarks/bridge_instructions.py [--deliveries 40] [--setups a,e,c,c-status,c-metadata]

Instruction counts do not depend on what else the machine runs (wall-clock and CPU-time figures
of benchmarks/dovecot_e2e.py vary 3x on the shared cores), so two versions of the bridge compare
in one short run. Each setup is its own Dovecot (testing harness) whose ``lmtp`` service runs
under ``valgrind --tool=callgrind``; one LMTP connection delivers ``--warmup`` mails (INBOX
created, caches warm), the counters are zeroed, ``--deliveries`` more mails go through and the
counters are dumped, so the figures are those of exactly those deliveries. Setups:

  a           Dovecot without push
  e           Dovecot's Lua driver with the floor script (benchmarks/dovecot_floor.lua): one appended JSON line
  c           the spool bridge as shipped (bytecode, status snapshot and METADATA on)
  c-status    the bridge without the status snapshot (push_notification_bridge_status = no)
  c-metadata  the bridge without the METADATA read (push_notification_bridge_metadata = no)
  c-none      the bridge with neither

Per step: callgrind's inclusive cost of the Dovecot and Lua API functions the Lua driver and the
bridge go through, per delivery. Only user-space instructions count: the system calls' kernel time
(open, write, rename) is not in these figures. Issue 19's target, c >= 0.95 x e in deliveries/s,
is met by instruction count when c costs at most e / 0.95 instructions per delivery.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dovecot_e2e import USER, floor_dovecot  # the same floor setup as the end-to-end benchmark
from push_notification.dovecot.setup import BridgeOptions, install_script, plugin_settings
from push_notification.testing.dovecot import Dovecot, lmtp_send

OX_KEY = "/private/vendor/vendor.dovecot/http-notify"
LMTP_BINARY = "/usr/lib/dovecot/lmtp"

SETUPS = {
    "a": "Dovecot without push",
    "e": "floor: Lua driver, one appended JSON line",
    "c": "spool bridge as shipped (status + METADATA)",
    "c-status": "bridge without the status snapshot",
    "c-metadata": "bridge without the METADATA read",
    "c-none": "bridge without status and METADATA",
}

#: Steps: a title and the functions whose inclusive cost it is (summed; the names Dovecot 2.3.19
#: and Lua 5.4 export). Nested steps (a mailbox open inside a Lua callback) are inside their parent.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("mail user created (hooks, settings)", ("mail_user_init",)),
    ("Lua state: create + load the script file", ("dlua_script_create_file",)),
    ("Lua state: run the main chunk, script_init", ("dlua_script_init",)),
    ("Lua state: close", ("dlua_script_unref",)),
    ("  of which: luaL_loadfilex (loader + bytecode)", ("luaL_loadfilex",)),
    ("  of which: luaL_openlibs", ("luaL_openlibs",)),
    ("Lua calls: main chunk and callbacks (lua_pcallk)", ("lua_pcallk",)),
    ("  the driver's callbacks (dlua_pcall)", ("dlua_pcall",)),
    ("  full garbage collection after end_txn (lua_gc)", ("lua_gc",)),
    ("  user table for begin_txn (dlua_push_mail_user)", ("dlua_push_mail_user",)),
    ("  settings: mail_user_plugin_getenv", ("mail_user_plugin_getenv",)),
    ("  mailbox_alloc", ("mailbox_alloc",)),
    ("  mailbox_open", ("mailbox_open",)),
    ("  mailbox_sync", ("mailbox_sync",)),
    ("  mailbox_get_status", ("mailbox_get_status",)),
    ("  METADATA: lua_storage_mailbox_attribute_get", ("lua_storage_mailbox_attribute_get",)),
    ("  mailbox_free", ("mailbox_free",)),
    ("  Lua io: fopen/setvbuf/fwrite/fclose", ("fopen@@GLIBC_2.2.5", "setvbuf", "fwrite", "fclose@@GLIBC_2.2.5")),
]


#: glibc's memset for large blocks is ``rep stosb``, which callgrind counts once per byte: a
#: freshly zeroed 200 kB hash table (Maildir's uidlist, per mailbox open) shows as 200 k
#: instructions that cost the CPU a few thousand cycles. Figures are given with and without it.
MEMSET = "__memset_avx2_unaligned_erms"


@dataclass
class Result:
    name: str
    deliveries: int
    total: int
    inclusive: dict[str, int]
    memset: int

    def per(self, value: int) -> float:
        return value / self.deliveries


def make_dovecot(name: str, out: Path) -> Dovecot:
    """The setup's Dovecot, its lmtp service under callgrind writing into ``out``."""
    if name == "a":
        dovecot = Dovecot(users=(USER,), mail_plugins="")
    elif name == "e":
        dovecot = floor_dovecot()
    else:
        dovecot = Dovecot(users=(USER,))
        spool = dovecot.make_spool()
        script_path = install_script(dovecot.root / "share")
        options = BridgeOptions(
            str(script_path),
            spool=str(spool),
            status=name not in ("c-status", "c-none"),
            metadata=name not in ("c-metadata", "c-none"),
        )
        dovecot.plugin.update(plugin_settings(options))
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o777)
    dovecot.extra_config += (
        "service lmtp {\n"
        f"  executable = {shutil.which('valgrind')} --tool=callgrind --callgrind-out-file={out}/cg.%p {LMTP_BINARY}\n"
        "}\n"
    )
    return dovecot


def lmtp_pid(out: Path) -> int:
    """The PID of the setup's lmtp process (the one callgrind writes into ``out``)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if LMTP_BINARY.encode() in cmdline and f"--callgrind-out-file={out}/".encode() in b"".join(cmdline):
            return int(entry)
    raise RuntimeError("no lmtp process under callgrind found")


def deliver(conn: smtplib.LMTP, count: int, start: int) -> None:
    for n in range(start, start + count):
        tag = f"bench-{n}"
        mail = f"From: Bench <bench@example.org>\r\nTo: {USER}\r\nSubject: {tag}\r\n\r\n{tag} body text\r\n"
        codes = lmtp_send(conn, mail, [USER], "bench@example.org")
        if codes[0][0] != 250:
            raise RuntimeError(f"delivery failed: {codes}")


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def measure(name: str, work: Path, deliveries: int, warmup: int) -> Result:
    out = work / name
    dovecot = make_dovecot(name, out)
    try:
        dovecot.start()
        dovecot.set_metadata(USER, OX_KEY, "user=11@3")
        conn = dovecot.lmtp(timeout=300)
        deliver(conn, warmup, 0)
        pid = lmtp_pid(out)
        callgrind_control("--zero", str(pid))
        deliver(conn, deliveries, warmup)
        before = set(out.iterdir())
        callgrind_control("--dump=measured", str(pid))
        dump = wait_for_dump(out, before)
        conn.quit()
    finally:
        dovecot.cleanup()
    total, inclusive, memset = read_dump(dump)
    return Result(name, deliveries, total, inclusive, memset)


def wait_for_dump(out: Path, before: set[Path]) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = [p for p in set(out.iterdir()) - before if p.stat().st_size > 0]
        if new:
            time.sleep(0.5)  # callgrind writes the file in one go; let it finish
            return new[0]
        time.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no dump into {out}")


_LINE = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+\S*?:([^\s\[']+)('\d+)?\s+\[")


def annotate(path: Path, inclusive: bool) -> str:
    argv = ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", str(path)]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def read_dump(path: Path) -> tuple[int, dict[str, int], int]:
    """Total instructions, inclusive instructions per function name (recursion levels merged
    into the outermost) and memset's own instructions."""
    memset = sum(int(line.split()[0].replace(",", "")) for line in annotate(path, False).splitlines() if MEMSET in line)
    total = 0
    inclusive: dict[str, int] = {}
    for line in annotate(path, True).splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        match = _LINE.match(line)
        if match is None or match.group(3):
            continue
        cost = int(match.group(1).replace(",", ""))
        inclusive[match.group(2)] = max(cost, inclusive.get(match.group(2), 0))
    return total, inclusive, memset


def report(results: list[Result]) -> None:
    by_name = {r.name: r for r in results}
    head = f"{'M instr/delivery':>17} {'x a':>6} {'x e':>6}   {'without memset':>14} {'x e':>6}"
    print(f"\n{'setup':<11} {'what':<44} {head}")
    for r in results:
        ratios = " ".join(f"{r.total / by_name[k].total:6.2f}" if k in by_name else f"{'-':>6}" for k in ("a", "e"))
        bare = r.total - r.memset
        bare_e = f"{bare / (by_name['e'].total - by_name['e'].memset):6.2f}" if "e" in by_name else f"{'-':>6}"
        figures = f"{r.per(r.total) / 1e6:17.3f} {ratios}   {r.per(bare) / 1e6:14.3f} {bare_e}"
        print(f"{r.name:<11} {SETUPS[r.name]:<44} {figures}")
    print("\nper step, k instructions per delivery (callgrind inclusive cost):")
    names = [r.name for r in results if r.name != "a"]
    print(f"{'step':<52}" + "".join(f"{n:>12}" for n in names))
    for title, functions in STEPS:
        row = []
        for n in names:
            r = by_name[n]
            row.append(f"{r.per(sum(r.inclusive.get(f, 0) for f in functions)) / 1e3:12.1f}")
        print(f"{title:<52}" + "".join(row))
    if "c" in by_name and "e" in by_name:
        c, e = by_name["c"], by_name["e"]
        for label, ci, ei in (("", c.total, e.total), (" without memset", c.total - c.memset, e.total - e.memset)):
            verdict = "met" if ei / ci >= 0.95 else "MISSED"
            print(f"\ntarget c >= 0.95 x e (by instructions{label}, e / c): {ei / ci:.3f}  {verdict}", end="")
            print(f"; the bridge costs {(ci - ei) / c.deliveries / 1e6:.3f} M more per delivery than the floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=40, help="measured deliveries per setup (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="deliveries before counting (default 5)")
    parser.add_argument("--setups", default="a,e,c,c-status,c-metadata", help=f"comma-separated: {', '.join(SETUPS)}")
    parser.add_argument("--keep", type=Path, help="keep the callgrind files in this directory")
    args = parser.parse_args()
    names = [n.strip() for n in args.setups.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown setup {unknown[0]!r}; choose from {', '.join(SETUPS)}")
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    work = args.keep or Path(tempfile.mkdtemp(prefix="pn-bridge-instr-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    print(
        f"{args.deliveries} deliveries per setup after {args.warmup} warm-up, one LMTP connection; lmtp under callgrind"
    )
    results = []
    try:
        for name in names:
            results.append(measure(name, work, args.deliveries, args.warmup))
            print(f"  {name} done", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    print(f"load average: {Path('/proc/loadavg').read_text().split()[0]} (instruction counts do not depend on it)")


if __name__ == "__main__":
    main()
