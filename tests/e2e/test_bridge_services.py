"""Every service that changes mail feeds the daemon, on Dovecot 2.3 and 2.4 configured by the
printed snippet alone: LMTP, LDA, IMAP and doveadm (flags, save, expunge); on 2.3 also Sieve
inside LMTP (with the admin's own lmtp plugins set before the snippet) and POP3.

One probe script (lua/services.lua) runs in Dovecot's own Lua driver beside the bridge and, in
the daemon, in our Lua driver: per transaction the service, the events and what
``mbox:sync()`` then ``mbox:status()`` show. Both must see the same, so the bridge's status
snapshot (what our driver's ``mbox:status()`` returns) is the synced one, also in expunge and
delete transactions. No service and not the daemon may log a warning or an error.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BridgedDovecot, dovecot_missing, e2e_daemon, need, wait_until
from push_notification.testing.daemon import DaemonProcess
from push_notification.testing.dovecot import Dovecot
from push_notification.testing.dovecot24 import dovecot24_missing

ALICE = "alice@example.com"
PROBE = Path(__file__).parent / "lua" / "services.lua"
PLAIN = "From: bob@example.org\r\nSubject: {}\r\n\r\nHello\r\n"
LOGGED_PROBLEM = r"(Warning|Error|Fatal|Panic):"
DAEMON_PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback")


class Probed:
    """A bridged Dovecot with the probe in its own Lua driver, and the daemon with the probe
    in ours; ``step`` runs one action and returns what each side recorded for it."""

    def __init__(self, dovecot: Dovecot, daemon: DaemonProcess, theirs: Path, ours: Path) -> None:
        self.dovecot, self.daemon, self.theirs, self.ours = dovecot, daemon, theirs, ours
        self.seen = 0
        #: What doveadm wrote to stderr (its log: a doveadm command logs there, not to log_path).
        self.doveadm_log: list[str] = []

    def doveadm(self, *args: str, stdin: str | None = None) -> None:
        self.doveadm_log.extend(self.dovecot.doveadm(*args, stdin=stdin).stderr.splitlines())

    def step(self, action: Callable[[], object]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        action()
        theirs = records(self.theirs)[self.seen :]
        total = self.seen + len(theirs)
        assert wait_until(lambda: len(records(self.ours)) >= total, 15), self.daemon.log()[-3000:]
        ours = records(self.ours)[self.seen :]
        self.seen = total
        return [without_repeats(r) for r in theirs], ours


def records(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def without_repeats(record: dict[str, Any]) -> dict[str, Any]:
    """Two Lua drivers in one Dovecot share its event registry: Dovecot hands its copy of the
    probe each mailbox event twice (a Dovecot bug the bridge does not copy)."""
    events = list(dict.fromkeys(tuple(e) for e in record["events"]))
    return {**record, "events": [list(e) for e in events]}


def probe_config(ours: Path, spool: Path) -> str:
    return (
        f"push_notification probe {{\n  driver = lua\n  lua_file = {PROBE}\n"
        f"  lua_settings {{\n    services_out = {ours}\n  }}\n}}\nspool_dir = {spool}\n"
    )


@pytest.fixture(params=["2.3", "2.4"])
def probed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Probed]:
    dovecot: Dovecot
    if request.param == "2.3":
        need(dovecot_missing(), "Dovecot")
        dovecot = BridgedDovecot()
    else:
        need(dovecot24_missing(), "Dovecot 2.4")
        from dovecot24_support import BridgedDovecot24

        dovecot = BridgedDovecot24()
    out = dovecot.root / "out"  # writable by the mail processes' account
    out.mkdir()
    dovecot.chown_for_mail(out)
    script = dovecot.root / "share" / PROBE.name  # readable by the mail processes' account
    shutil.copyfile(PROBE, script)
    theirs, ours = out / "dovecot.jsonl", tmp_path / "ours.jsonl"
    if request.param == "2.3":
        dovecot.plugin["push_notification_driver2"] = f"lua:file={script}"
        dovecot.plugin["services_out"] = str(theirs)
    else:
        dovecot.extra_config += (
            f"push_notification probe {{\n  driver = lua\n  lua_file = {dovecot.conf_path(script)}\n"
            f"  lua_settings {{\n    services_out = {dovecot.conf_path(theirs)}\n  }}\n}}\n"
        )
    daemon = e2e_daemon(tmp_path, probe_config(ours, dovecot.spool))  # type: ignore[attr-defined]
    with daemon, dovecot:
        yield Probed(dovecot, daemon, theirs, ours)


def doveadm_status(dovecot: Dovecot, mailbox: str) -> dict[str, int]:
    out = dovecot.doveadm("mailbox", "status", "-u", ALICE, "messages unseen uidnext", mailbox).stdout
    fields = dict(item.split("=") for item in out.split()[1:])
    return {key: int(value) for key, value in fields.items()}


def test_every_service_that_changes_mail_feeds_the_daemon_with_a_synced_status(probed: Probed) -> None:
    dovecot = probed.dovecot
    steps: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    steps["lmtp"] = probed.step(lambda: dovecot.deliver(PLAIN.format("lmtp"), ALICE))
    steps["lda"] = probed.step(lambda: dovecot.deliver_lda(PLAIN.format("lda"), ALICE))
    imap = dovecot.imap(ALICE)
    imap.select("INBOX")
    steps["imap store"] = probed.step(lambda: imap.uid("STORE", "1", "+FLAGS", r"(\Seen)"))
    steps["doveadm flags"] = probed.step(
        lambda: probed.doveadm("flags", "add", "-u", ALICE, r"\Flagged", "mailbox", "INBOX", "uid", "2")
    )
    steps["doveadm save"] = probed.step(
        lambda: probed.doveadm("save", "-u", ALICE, "-m", "INBOX", stdin=PLAIN.format("saved"))
    )
    steps["doveadm expunge"] = probed.step(
        lambda: probed.doveadm("expunge", "-u", ALICE, "mailbox", "INBOX", "uid", "1")
    )
    after_doveadm_expunge = doveadm_status(dovecot, "INBOX")
    steps["imap expunge"] = probed.step(lambda: (imap.uid("STORE", "2", "+FLAGS", r"(\Deleted)"), imap.expunge()))
    after_imap_expunge = doveadm_status(dovecot, "INBOX")
    imap.create("Work")
    imap.uid("COPY", "3", "Work")
    probed.step(lambda: None)  # the create and the copy
    steps["imap delete"] = probed.step(lambda: imap.delete("Work"))
    imap.logout()
    problems = dovecot.log_lines(LOGGED_PROBLEM) + probed.doveadm_log
    daemon_log = probed.daemon.log()

    for label, (theirs, ours) in steps.items():
        assert ours == theirs, label
    services = {label: sorted({r["service"] for r in ours}) for label, (_, ours) in steps.items()}
    assert services == {
        "lmtp": ["lmtp"],
        "lda": ["lda"],
        "imap store": ["imap"],
        "doveadm flags": ["doveadm"],
        "doveadm save": ["doveadm"],
        "doveadm expunge": ["doveadm"],
        "imap expunge": ["imap"],
        "imap delete": ["imap"],
    }
    names = {label: [[e[0] for e in r["events"]] for r in ours] for label, (_, ours) in steps.items()}
    assert names["doveadm flags"] == [["FlagsClear", "FlagsSet"]]
    assert names["doveadm save"] == [["MessageAppend"]]
    assert names["doveadm expunge"] == [["MessageExpunge"]]
    assert names["imap delete"] == [["MessageExpunge"], ["MailboxDelete"]]
    # the snapshot of an expunge is the mailbox after it, as doveadm reports it then
    assert steps["doveadm expunge"][1][0]["status"] == after_doveadm_expunge
    assert steps["imap expunge"][1][-1]["status"] == after_imap_expunge
    assert steps["imap delete"][1][0]["status"] == {"messages": 0, "unseen": 0, "uidnext": 2}
    assert problems == []
    assert [line for line in daemon_log.splitlines() if DAEMON_PROBLEM.search(line)] == []


def test_beside_another_push_driver_loaded_for_every_service_no_service_logs_an_error() -> None:
    """The admin's own push setup (plugins global, driver 1) plus the snippet renumbered to
    driver 2, as its comment says: doveadm (which loads the global plugins) knows the lua
    driver, and its changes reach the bridge."""
    need(dovecot_missing(), "Dovecot")
    dovecot = BridgedDovecot(mail_plugins="notify push_notification", plugin={"push_notification_driver": "dlog"})
    dovecot.extra_config = dovecot.extra_config.replace("push_notification_driver =", "push_notification_driver2 =")
    with dovecot:
        dovecot.deliver(PLAIN.format("first"), ALICE)
        runs = [
            dovecot.doveadm("flags", "add", "-u", ALICE, r"\Seen", "mailbox", "INBOX", "uid", "1"),
            dovecot.doveadm("save", "-u", ALICE, "-m", "INBOX", stdin=PLAIN.format("saved")),
            dovecot.doveadm("expunge", "-u", ALICE, "mailbox", "INBOX", "uid", "1"),
        ]
        spooled = [[e["name"] for e in t["events"]] for t in dovecot.take_spool()]
        # doveadm logs to its stderr ("Unknown push notification driver: lua" went there)
        problems = dovecot.log_lines(LOGGED_PROBLEM) + [line for run in runs for line in run.stderr.splitlines()]
    assert spooled == [["MailboxCreate"], ["MessageNew"], ["FlagsClear", "FlagsSet", "MessageRead"],
                       ["MessageAppend"], ["MessageExpunge"]]  # fmt: skip
    assert problems == []


ADMIN_SIEVE = (
    "protocol lmtp {\n  mail_plugins = $mail_plugins sieve\n}\n"
    "plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}\n"
)
SIEVE_SCRIPT = (
    'require ["fileinto", "imap4flags", "mailbox"];\n'
    'if header :contains "subject" "sieve" {\n  addflag "\\\\Flagged";\n  fileinto :create "Sieved";\n}\n'
)
SIEVE_PLUGIN = Path("/usr/lib/dovecot/modules/lib90_sieve_plugin.so")
POP3_SERVER = Path("/usr/lib/dovecot/pop3")


def test_sieve_inside_lmtp_and_pop3_feed_the_bridge_too() -> None:
    """The admin's `protocol lmtp { mail_plugins = $mail_plugins sieve }` stands before the
    snippet (as conf.d/20-lmtp.conf before 95-push-notification.conf): both plugin lists apply."""
    need(dovecot_missing(), "Dovecot")
    missing = [str(p) for p in (SIEVE_PLUGIN, POP3_SERVER) if not p.exists()]
    need(f"{', '.join(missing)} missing: run scripts/install-dovecot as root" if missing else None, "Sieve and POP3")
    dovecot = BridgedDovecot(pop3=True)
    dovecot.extra_config = ADMIN_SIEVE + dovecot.extra_config
    dovecot.home(ALICE).mkdir(parents=True, exist_ok=True)  # start() makes it the user's
    sieve = dovecot.home(ALICE) / ".dovecot.sieve"
    sieve.write_text(SIEVE_SCRIPT)
    dovecot.chown_for_mail(sieve)
    with dovecot:
        dovecot.deliver(PLAIN.format("please sieve this"), ALICE)
        sieved = dovecot.take_spool()
        dovecot.deliver(PLAIN.format("plain"), ALICE)
        dovecot.take_spool()
        pop3 = dovecot.pop3(ALICE)
        pop3.dele(1)
        pop3.quit()
        popped = dovecot.take_spool()
        after = doveadm_status(dovecot, "INBOX")
        problems = dovecot.log_lines(LOGGED_PROBLEM)
    new = [t for t in sieved if [e["name"] for e in t["events"]] == ["MessageNew"]]
    assert [(t["user"]["service"], t["mailbox"], t["events"][0]["flags"]) for t in new] == [
        ("lmtp", "Sieved", [r"\Flagged"])
    ]
    assert [(t["user"]["service"], [e["name"] for e in t["events"]]) for t in popped] == [("pop3", ["MessageExpunge"])]
    assert popped[0]["status"]["messages"] == after["messages"] == 0
    assert problems == []
