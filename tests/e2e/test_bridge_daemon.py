"""Real Dovecot → bridge → our daemon → our dlog driver, beside Dovecot's own dlog driver.

Both transports feed the daemon; in the same Dovecot run, Dovecot's dlog (driver2) logs the
same actions, and our dlog's lines must equal Dovecot's (dlog_parity.py states the deliberate
differences). A daemon stopped or killed during a burst of deliveries loses nothing (spool).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from dlog_parity import blocks, daemon_streams, dovecot_streams, normalise_dovecot, transactions_ended
from e2e_support import OX_KEY, BridgedDovecot, e2e_daemon, require_dovecot, wait_until
from push_notification.testing.daemon import DaemonProcess
from push_notification.testing.dovecot import Dovecot, lmtp_send

require_dovecot()

ALICE, BOB = "alice@example.com", "bob@example.com"
INSTANCE = "ourdlog"
DAEMON_CONFIG = f"push_notification {INSTANCE} {{\n  driver = dlog\n}}\n"
TOKEN = "e2e-ingress-token"

MAILS = [
    "From: Bob Sender <bob@example.org>\r\nTo: Alice <alice@example.com>\r\nSubject: Plain hello\r\n"
    "Date: Tue, 01 Oct 2024 10:00:00 +0200\r\n\r\nHello Alice,\r\nsee you.\r\n",
    "From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\nTo: alice@example.com\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Wed, 02 Oct 2024 23:30:00 -0530\r\n\r\nHallo\r\n",
    "From: n@example.org\r\nTo: alice@example.com\r\nSubject: Alt\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n'
    "--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n",
]


def actions(dovecot: Dovecot) -> list[tuple[str, int, Callable[[], object]]]:
    """The issue's scenario as steps: label, how many transactions Dovecot runs, the action."""
    imap = dovecot.imap(ALICE)
    steps: list[tuple[str, int, Callable[[], object]]] = [
        ("deliver plain", 1, lambda: dovecot.deliver(MAILS[0], [ALICE])),
        ("deliver mime", 1, lambda: dovecot.deliver(MAILS[1], [ALICE])),
        ("deliver alternative", 1, lambda: dovecot.deliver(MAILS[2], [ALICE])),
        ("deliver to two", 3, lambda: dovecot.deliver(MAILS[0], [ALICE, BOB])),
        ("append", 1, lambda: imap.append("INBOX", r"(\Flagged)", None, b"Subject: app\r\n\r\nx\r\n")),
        ("select", 0, lambda: imap.select("INBOX")),
        ("+seen", 1, lambda: imap.uid("STORE", "1:2", "+FLAGS", r"(\Seen)")),
        ("+flags", 1, lambda: imap.uid("STORE", "1", "+FLAGS", r"(\Flagged \Answered \Deleted)")),
        ("+keywords", 1, lambda: imap.uid("STORE", "2", "+FLAGS", "($Work Custom1)")),
        ("-keyword", 1, lambda: imap.uid("STORE", "2", "-FLAGS", "($Work)")),
        ("-flags", 1, lambda: imap.uid("STORE", "1", "-FLAGS", r"(\Seen \Answered)")),
        ("expunge", 1, lambda: imap.expunge()),
        ("create", 1, lambda: imap.create("Work")),
        ("copy", 1, lambda: imap.uid("COPY", "2", "Work")),
        ("move", 2, lambda: imap.uid("MOVE", "3", "Work")),
        ("subscribe", 1, lambda: imap.subscribe("Work")),
        ("rename", 1, lambda: imap.rename("Work", "Projects")),
        ("unsubscribe", 1, lambda: imap.unsubscribe("Work")),
        ("delete", 2, lambda: imap.delete("Projects")),
        ("logout", 0, lambda: imap.logout()),
    ]
    return steps


def ended(dovecot: Dovecot, dovecot_offset: int, daemon: DaemonProcess, daemon_offset: int) -> tuple[int, int]:
    """Transactions each dlog ended since the offsets: (Dovecot's, ours)."""
    theirs = transactions_ended(dovecot_streams(dovecot.log_text()[dovecot_offset:]))
    ours = transactions_ended(daemon_streams(daemon.log()[daemon_offset:], INSTANCE))
    return theirs, ours


def run_with_parity(dovecot: Dovecot, daemon: DaemonProcess) -> tuple[list[str], int]:
    """Run every step; after each, wait until our dlog ended as many transactions as Dovecot's
    dlog did and compare the blocks. Returns every difference, and how many blocks matched."""
    problems: list[str] = []
    matched = 0
    dovecot_offset, daemon_offset = len(dovecot.log_text()), len(daemon.log())
    for label, count, step in actions(dovecot):
        step()
        # Dovecot's log process writes a little after the reply; the daemon a little later still
        wait_until(lambda a=dovecot_offset, b=daemon_offset, n=count: min(ended(dovecot, a, daemon, b)) >= n)
        time.sleep(0.05)  # anything beyond the expected count would show up as a difference
        dovecot_log, daemon_log = dovecot.log_text(), daemon.log()
        new_dovecot = dovecot_streams(dovecot_log[dovecot_offset:])
        new_ours = daemon_streams(daemon_log[daemon_offset:], INSTANCE)
        dovecot_offset, daemon_offset = len(dovecot_log), len(daemon_log)
        theirs = Counter({normalise_dovecot(b): n for b, n in blocks(new_dovecot).items()})
        ours = blocks(new_ours)
        matched += sum((theirs & ours).values())
        if theirs != ours:
            problems.append(f"{label}: Dovecot {dict(theirs)} != ours {dict(ours)}")
        counts = transactions_ended(new_dovecot), transactions_ended(new_ours)
        if counts != (count, count):
            problems.append(
                f"{label}: {count} transactions expected; Dovecot's dlog ended {counts[0]}, ours {counts[1]}"
            )
    return problems, matched


@pytest.mark.parametrize("transport", ["spool", "http"])
def test_our_dlog_writes_what_dovecots_dlog_writes(tmp_path: Path, transport: str) -> None:
    if transport == "spool":
        dovecot = BridgedDovecot(transport, plugin={"push_notification_driver2": "dlog"})
        daemon = e2e_daemon(tmp_path, DAEMON_CONFIG + f"spool_dir = {dovecot.spool}\n")
    else:
        daemon = e2e_daemon(tmp_path, DAEMON_CONFIG, token=TOKEN)
        dovecot = BridgedDovecot(
            transport, url=daemon.ingress, token=TOKEN, plugin={"push_notification_driver2": "dlog"}
        )
    with daemon, dovecot:
        dovecot.set_metadata(ALICE, OX_KEY, "user=11@3")  # creates alice's INBOX (doveadm logs elsewhere)
        wait_until(lambda: transactions_ended(daemon_streams(daemon.log(), INSTANCE)) >= 1)
        problems, matched = run_with_parity(dovecot, daemon)
        errors = dovecot.log_errors()
        # Delivered files go at the spool reader's next scan (deleted in batches), not at once.
        wait_until(lambda: not any((dovecot.spool / "new").iterdir()), 10)
        leftover = list((dovecot.spool / "new").iterdir())
    assert problems == [], "\n".join(problems)
    assert matched >= 20
    assert errors == []
    assert leftover == [], "transactions left in the spool (http: the ingress failed)"
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_daemon_stopped_during_a_burst_loses_no_transaction(tmp_path: Path, sig: signal.Signals) -> None:
    count = 60
    with BridgedDovecot() as dovecot:
        dovecot.set_metadata(ALICE, OX_KEY, "user=11@3")
        daemon = e2e_daemon(tmp_path, DAEMON_CONFIG + f"spool_dir = {dovecot.spool}\n")
        daemon.start()
        codes: list[int] = []

        def burst() -> None:
            conn = dovecot.lmtp()
            for i in range(count):
                mail = f"From: burst@example.org\r\nSubject: burst {i}\r\n\r\nmail {i}\r\n"
                codes.extend(code for code, _ in lmtp_send(conn, mail, [ALICE], "s@example.org"))
                # Paced (about 6 s in all) so the daemon's stop, which may take a few seconds,
                # surely falls inside the burst, however fast this machine delivers.
                time.sleep(0.1)
            conn.quit()

        sender = threading.Thread(target=burst)
        sender.start()
        assert wait_until(lambda: len(codes) >= count // 4, 30)
        daemon.stop(sig)  # mid-burst; killed, it leaves the files it was delivering
        stopped_at = len(codes)
        sender.join(60)
        daemon.start()
        try:
            expected = {f"Message data: Mailbox [INBOX], UID [{uid}]" for uid in range(1, count + 1)}

            def arrived() -> set[str]:
                lines = daemon_streams(daemon.log(), INSTANCE)[INSTANCE]
                return {line.rsplit(",", 1)[0] for line in lines if line.startswith("Message data:")}

            wait_until(lambda: expected <= arrived(), 20)
            got = arrived()
        finally:
            daemon.stop()
    assert codes == [250] * count
    assert stopped_at < count, "the daemon was not stopped during the burst"
    assert sorted(expected - got) == []
