"""One Lua script run both in Dovecot's own Lua driver and, through the bridge, in our Lua driver:
the same calls with identical user fields and event tables (numbers as Dovecot's floats).

Two Lua drivers in one Dovecot share one event registry, so Dovecot hands its copy of the
script each mailbox event twice and each keyword twice (a Dovecot bug; the bridge keeps one).
Dovecot's side is compared with those repeats removed.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from e2e_support import BridgedDovecot, e2e_daemon, require_dovecot, require_driver, wait_until

require_dovecot()

require_driver("lua")

SCRIPT = Path(__file__).parent / "lua" / "parity.lua"
ALICE, BOB = "alice@example.com", "bob@example.com"
MIME = (
    "From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\nTo: Alice <alice@example.com>, bob@example.com\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Wed, 02 Oct 2024 23:30:00 -0530\r\n"
    "Message-ID: <m1@example.org>\r\n\r\nHallo\r\n"
)
PLAIN = "From: plain@example.org\r\nSubject: plain\r\n\r\nbody\r\n"

Txn = tuple[str, tuple[str, ...]]


def transactions(path: Path, *, dovecot_side: bool) -> Counter[Txn]:
    """Every ended transaction as (begin line, its other lines as a sorted tuple), as a multiset."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        groups.setdefault(record["txn"], []).append(record)
    found: Counter[Txn] = Counter()
    for records in groups.values():
        if records[-1]["kind"] != "end":
            continue  # still being written
        begin = json.dumps(records[0]["data"], sort_keys=True)
        rest = [json.dumps({"kind": r["kind"], "data": normalise(r["data"], dovecot_side)}, sort_keys=True)
                for r in records[1:]]  # fmt: skip
        if dovecot_side:
            rest = list(dict.fromkeys(rest))  # mailbox events repeated per Lua driver
        found[(begin, tuple(sorted(rest)))] += 1
    return found


def normalise(data: Any, dovecot_side: bool) -> Any:
    if dovecot_side and isinstance(data, dict):
        return {k: list(dict.fromkeys(v)) if isinstance(v, list) else v for k, v in data.items()}
    return data


def test_the_same_script_sees_the_same_calls_in_dovecot_and_in_our_lua_driver(tmp_path: Path) -> None:
    dovecot = BridgedDovecot()
    out_dir = dovecot.root / "out"  # writable by the mail processes' account
    out_dir.mkdir()
    script = dovecot.root / "share" / SCRIPT.name  # readable by the mail processes' account
    shutil.copyfile(SCRIPT, script)
    dovecot.plugin["push_notification_driver2"] = f"lua:file={script}"
    dovecot.chown_for_mail(out_dir)
    theirs_path, ours_path = out_dir / "dovecot.jsonl", out_dir / "ours.jsonl"
    dovecot.plugin["parity_out"] = str(theirs_path)
    daemon = e2e_daemon(
        tmp_path,
        f"push_notification parity {{\n  driver = lua\n  lua_file = {SCRIPT}\n"
        f"  lua_settings {{\n    parity_out = {ours_path}\n  }}\n}}\nspool_dir = {dovecot.spool}\n",
    )
    with daemon, dovecot:
        dovecot.deliver(PLAIN, [ALICE])
        dovecot.deliver(MIME, [ALICE, BOB])
        imap = dovecot.imap(ALICE)
        imap.append("INBOX", r"(\Seen \Draft)", None, b"From: me@example.com\r\nSubject: app\r\n\r\nx\r\n")
        imap.select("INBOX")
        imap.uid("STORE", "1:2", "+FLAGS", r"(\Seen \Flagged)")
        imap.uid("STORE", "2", "+FLAGS", "($Work Custom1)")
        imap.uid("STORE", "2", "-FLAGS", r"($Work \Seen)")
        imap.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
        imap.expunge()
        imap.create("Work")
        imap.uid("COPY", "2", "Work")
        imap.uid("MOVE", "3", "Work")
        imap.subscribe("Work")
        imap.rename("Work", "Projects")
        imap.unsubscribe("Work")
        imap.delete("Projects")
        imap.logout()

        def settled() -> bool:
            if not (theirs_path.exists() and ours_path.exists()):
                return False
            return sum(transactions(theirs_path, dovecot_side=True).values()) == sum(
                transactions(ours_path, dovecot_side=False).values()
            )

        wait_until(settled, 15)
        errors = dovecot.log_errors()
        theirs = transactions(theirs_path, dovecot_side=True)
        ours = transactions(ours_path, dovecot_side=False)
    assert sum(theirs.values()) >= 15
    missing, extra = theirs - ours, ours - theirs
    assert not missing and not extra, f"only in Dovecot: {list(missing)[:2]}\nonly in ours: {list(extra)[:2]}"
    assert errors == []
