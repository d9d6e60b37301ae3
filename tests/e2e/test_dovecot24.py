"""The bridge script on a real Dovecot 2.4 (the chroot of scripts/install-dovecot24).

Dovecot 2.4 is configured with what ``push-notification dovecot-config --version 2.4`` prints
(``push_notification bridge { driver = lua; lua_file; lua_settings { } }``). One Dovecot runs
the whole scenario once (module fixture); each test states what one action handed over. The
same scenario on the host's Dovecot 2.3 must hand over the same transactions. Skipped when the
chroot is not there, except under CI=true (nox's cross session builds it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dovecot24_support import BridgedDovecot24, require_dovecot24
from e2e_support import (
    OX_KEY,
    BridgedDovecot,
    dovecot_missing,
    e2e_daemon,
    recording_server,
    take_spool_files,
    wait_until,
)
from push_notification.dovecot.setup import dovecot_config
from push_notification.testing.dovecot import Dovecot
from push_notification.testing.dovecot24 import Dovecot24, dovecot24_version
from push_notification.transaction import transaction_from_json
from scenario_mails import MIME, PLAIN, first_mail_status, plain_delivery_event

require_dovecot24()

ALICE, BOB = "alice@example.com", "bob@example.com"
TOKEN = "e2e-ingress-token"
EIGHT_BIT = b"From: caf\xe9@example.org\r\nSubject: Caf\xe9 \xff\r\n\r\nbody\r\n"  # Latin-1, not UTF-8
APPENDED = b"From: me@example.com\r\nSubject: Appended\r\n\r\nDraft\r\n"


class Scenario:
    """Runs the actions against one Dovecot and keeps the spool files each one produced."""

    def __init__(self, dovecot: Dovecot, spool: Path) -> None:
        self.dovecot = dovecot
        self.spool = spool
        self.raw: dict[str, list[bytes]] = {}
        self.lmtp_codes: list[int] = []
        self.errors: list[str] = []

    def step(self, label: str, action: Callable[[], object]) -> None:
        action()
        self.raw[label] = take_spool_files(self.spool)

    def txns(self, label: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.raw[label]]

    def run(self) -> Scenario:
        dovecot = self.dovecot
        self.step("metadata set", lambda: dovecot.set_metadata(ALICE, OX_KEY, "user=11@3"))
        mails: list[tuple[str, str | bytes]] = [
            ("deliver", PLAIN),
            ("deliver mime", MIME),
            ("deliver 8-bit", EIGHT_BIT),
        ]
        for label, mail in mails:
            self.lmtp_codes.extend(code for code, _ in dovecot.deliver(mail, ALICE))
            self.raw[label] = take_spool_files(self.spool)
        imap = dovecot.imap(ALICE)
        self.step("append", lambda: imap.append("INBOX", r"(\Seen $Work)", None, APPENDED))
        imap.select("INBOX")
        self.step("+seen", lambda: imap.uid("STORE", "1", "+FLAGS", r"(\Seen)"))
        self.step("+deleted", lambda: imap.uid("STORE", "1", "+FLAGS", r"(\Deleted)"))
        self.step("expunge", imap.expunge)
        self.step("+keywords", lambda: imap.uid("STORE", "2", "+FLAGS", "($Work Custom1)"))
        self.step("-keyword", lambda: imap.uid("STORE", "2", "-FLAGS", "($Work)"))
        self.step("create", lambda: imap.create("Work"))
        self.step("copy", lambda: imap.uid("COPY", "2", "Work"))
        self.step("move", lambda: imap.uid("MOVE", "3", "Work"))
        self.step("subscribe", lambda: imap.subscribe("Work"))
        self.step("rename", lambda: imap.rename("Work", "Projects"))
        self.step("unsubscribe", lambda: imap.unsubscribe("Work"))
        self.step("delete", lambda: imap.delete("Projects"))
        imap.logout()
        self.lmtp_codes.extend(code for code, _ in dovecot.deliver(PLAIN, [ALICE, BOB]))
        self.raw["deliver to two"] = take_spool_files(self.spool)
        self.errors = dovecot.log_lines(r"(Warning|Error|Fatal|Panic):")
        return self


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    # Dovecot's dlog driver beside the bridge: its events reach the script too (de-duplicated).
    with BridgedDovecot24(extra_config="push_notification dlog {\n}\n") as dovecot:
        yield Scenario(dovecot, dovecot.spool).run()


def only(txns: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(txns) == 1, txns
    return txns[0]


def names(txn: dict[str, Any]) -> list[str]:
    return [event["name"] for event in txn["events"]]


def test_the_chroot_runs_dovecot_2_4() -> None:
    assert dovecot24_version().startswith("2.4.")


def test_every_spool_file_is_a_valid_transaction_and_dovecot_logged_no_warning(scenario: Scenario) -> None:
    parsed = [transaction_from_json(raw) for files in scenario.raw.values() for raw in files]
    assert all(scenario.raw.values()), "an action handed over nothing"
    alices = [t for t in parsed if t.user.username == ALICE]
    assert {t.user.username for t in parsed} == {ALICE, BOB}
    assert all(t.metadata == {OX_KEY: "user=11@3"} for t in alices[1:])  # set by the first step
    assert scenario.errors == []
    assert scenario.lmtp_codes == [250, 250, 250, 250, 250]


def test_doveadm_creating_inbox_for_the_metadata_is_a_mailbox_create(scenario: Scenario) -> None:
    txn = only(scenario.txns("metadata set"))
    assert txn["user"]["service"] == "doveadm"
    assert txn["events"] == [{"name": "MailboxCreate", "mailbox": "INBOX"}]
    assert txn["metadata"] == {OX_KEY: ""}  # unset: the value is written after INBOX exists


def test_a_delivery_carries_user_headers_snippet_metadata_and_status(scenario: Scenario) -> None:
    txn = only(scenario.txns("deliver"))
    assert txn["user"]["username"] == ALICE
    assert txn["user"]["service"] == "lmtp"
    assert txn["user"]["session_id"]
    assert txn["user"]["home"].endswith(ALICE)
    assert txn["mailbox"] == "INBOX"
    assert txn["metadata"] == {OX_KEY: "user=11@3"}
    (event,) = txn["events"]
    assert event == plain_delivery_event(txn["status"]["uidvalidity"])
    assert txn["status"] == first_mail_status(event["uid_validity"])


def test_mime_headers_arrive_raw_with_decoded_subject_name_and_snippet(scenario: Scenario) -> None:
    (event,) = only(scenario.txns("deliver mime"))["events"]
    assert event["from"] == "=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@example.org>"
    assert event["from_display_name"] == "Jörg Müller"
    assert event["subject_utf8"] == "Grüße aus Köln"
    assert event["snippet"] == "Schöne Grüße"
    assert event["tz"] == -330


def test_8bit_headers_arrive_as_valid_json_with_replacement_characters(scenario: Scenario) -> None:
    (raw,) = scenario.raw["deliver 8-bit"]
    (event,) = json.loads(raw.decode("utf-8"))["events"]  # strict UTF-8: the bridge repaired the bytes
    assert event["from"] == "caf\ufffd@example.org"
    assert event["subject_utf8"].startswith("Caf")


def test_an_imap_append_carries_its_flags_and_keywords(scenario: Scenario) -> None:
    txn = only(scenario.txns("append"))
    assert txn["user"]["service"] == "imap"
    (event,) = txn["events"]
    assert (event["name"], event["uid"], event["subject_utf8"]) == ("MessageAppend", 4, "Appended")
    assert (event["flags"], event["keywords"]) == ([r"\Seen"], ["$Work"])
    assert (event["date"], event["tz"]) == (0, 0)  # no Date header
    assert txn["status"]["messages"] == 4 and txn["status"]["unseen"] == 3


def test_setting_seen_is_flags_set_and_message_read(scenario: Scenario) -> None:
    txn = only(scenario.txns("+seen"))
    events = {event["name"]: event for event in txn["events"]}
    assert names(txn)[-2:] == ["FlagsSet", "MessageRead"]
    assert events["FlagsSet"]["flags"] == [r"\Seen"]
    assert events["MessageRead"]["uid"] == 1
    assert txn["status"]["unseen"] == 2  # of 4: the appended one was seen already


def test_deleted_flag_is_a_trash_and_expunge_an_expunge(scenario: Scenario) -> None:
    deleted = only(scenario.txns("+deleted"))
    assert names(deleted) == ["FlagsClear", "FlagsSet", "MessageTrash"]
    assert deleted["events"][0]["flags_old"] == [r"\Seen", r"\Recent"]  # recent in this session
    expunged = only(scenario.txns("expunge"))
    assert [(e["name"], e["uid"]) for e in expunged["events"]] == [("MessageExpunge", 1)]


def test_keywords_set_and_cleared_name_only_what_changed(scenario: Scenario) -> None:
    def by_name(label: str, name: str) -> dict[str, Any]:
        events: list[dict[str, Any]] = only(scenario.txns(label))["events"]
        (event,) = [e for e in events if e["name"] == name]
        return event

    assert by_name("+keywords", "FlagsSet")["keywords"] == ["$Work", "Custom1"]
    cleared = by_name("-keyword", "FlagsClear")
    assert (cleared["keywords"], cleared["keywords_old"]) == (["$Work"], ["$Work", "Custom1"])


def test_copy_and_move_append_to_the_target_and_move_expunges_the_source(scenario: Scenario) -> None:
    (copied,) = scenario.txns("copy")
    assert (copied["mailbox"], names(copied)) == ("Work", ["MessageAppend"])
    assert copied["events"][0]["keywords"] == ["Custom1"]  # the copy keeps its keywords
    moved = [(t["mailbox"], names(t)) for t in scenario.txns("move")]
    assert moved == [("Work", ["MessageAppend"]), ("INBOX", ["MessageExpunge"])]


def test_a_delivery_to_two_users_hands_over_per_user(scenario: Scenario) -> None:
    txns = scenario.txns("deliver to two")
    assert [(t["user"]["username"], names(t)) for t in txns] == [
        (ALICE, ["MessageNew"]),
        (BOB, ["MailboxCreate"]),
        (BOB, ["MessageNew"]),
    ]


def test_mailbox_create_subscribe_rename_unsubscribe_and_delete(scenario: Scenario) -> None:
    labels = ("create", "subscribe", "rename", "unsubscribe")
    events = [only(scenario.txns(label))["events"] for label in labels]
    assert events == [
        [{"name": "MailboxCreate", "mailbox": "Work"}],
        [{"name": "MailboxSubscribe", "mailbox": "Work"}],
        [{"name": "MailboxRename", "mailbox": "Projects", "mailbox_old": "Work"}],
        [{"name": "MailboxUnsubscribe", "mailbox": "Work"}],  # a subscription outlives its mailbox's name
    ]
    # deleting a mailbox first expunges its two messages, in a transaction of their own
    expunged, deleted = scenario.txns("delete")
    assert [(e["name"], e["uid"]) for e in expunged["events"]] == [("MessageExpunge", 1), ("MessageExpunge", 2)]
    assert deleted["events"] == [{"name": "MailboxDelete", "mailbox": "Projects"}]
    assert all("status" not in only(scenario.txns(label)) for label in ("create", "rename"))


def comparable(txn: dict[str, Any]) -> dict[str, Any]:
    """A transaction without what differs between any two runs (ids, sessions, times, paths)."""
    txn = json.loads(json.dumps(txn))
    del txn["id"]
    user = txn["user"]
    for key in ("session_id", "session_create_time", "home", "mail_debug"):  # 2.4 has no mail_debug
        user.pop(key, None)
    uidvalidity = txn.get("status", {}).get("uidvalidity")
    for event in txn["events"]:
        if "uid_validity" in event:
            event["uid_validity"] = "same" if event["uid_validity"] == uidvalidity or uidvalidity is None else "other"
    if "status" in txn:
        txn["status"]["uidvalidity"] = "same"
    return txn


def test_the_same_actions_hand_over_the_same_transactions_as_dovecot_2_3(scenario: Scenario) -> None:
    reason = dovecot_missing()
    if reason is not None:
        pytest.skip(f"no Dovecot 2.3 to compare with: {reason}")
    with BridgedDovecot(plugin={"push_notification_driver2": "dlog"}) as dovecot23:
        older = Scenario(dovecot23, dovecot23.spool).run()
    assert list(older.raw) == list(scenario.raw)
    for label in scenario.raw:
        assert [comparable(t) for t in scenario.txns(label)] == [comparable(t) for t in older.txns(label)], label


MAIL = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: over http\r\n\r\nHello\r\n"


def test_over_http_the_daemon_takes_each_transaction_and_nothing_is_spooled(tmp_path: Path) -> None:
    daemon_config = "push_notification ourdlog {\n  driver = dlog\n}\n"
    with (
        e2e_daemon(tmp_path, daemon_config, token=TOKEN) as daemon,
        BridgedDovecot24("http", url=daemon.ingress, token=TOKEN) as dovecot,
    ):
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        assert wait_until(lambda: "MessageNew: Subject [over http]" in daemon.log())
        assert "MailboxCreate" in daemon.log()
        assert dovecot.take_spool() == []
        assert dovecot.log_lines("push-notification-bridge") == []
        assert dovecot.log_errors() == []


def test_a_refused_token_spools_the_transaction_and_warns_once(tmp_path: Path) -> None:
    with (
        e2e_daemon(tmp_path, "push_notification d {\n  driver = dlog\n}\n", token=TOKEN) as daemon,
        BridgedDovecot24("http", url=daemon.ingress, token="wrong") as dovecot,
    ):
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        spooled = [transaction_from_json(raw) for raw in dovecot.take_spool()]
        warnings = dovecot.log_lines("push-notification-bridge")
    assert [t.events[0].name for t in spooled] == ["MailboxCreate", "MessageNew"]
    assert len(warnings) == 1 and "401" in warnings[0] and "wrong" not in warnings[0]


def test_a_hanging_ingress_is_given_up_after_the_bridge_timeout() -> None:
    """Proves 2.4 takes the bridge's HTTP client settings (its names differ from 2.3's)."""
    with (
        recording_server(delay=5.0) as ingress,
        BridgedDovecot24("http", url=ingress.url, token=TOKEN, timeout_msecs=300) as dovecot,
    ):
        started = time.monotonic()
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        elapsed = time.monotonic() - started
        spooled = [transaction_from_json(raw) for raw in dovecot.take_spool()]
    assert [t.events[0].name for t in spooled] == ["MailboxCreate", "MessageNew"]
    assert len(ingress.requests) == 1  # then paused: MessageNew went straight to the spool
    assert elapsed < 2.0, f"delivery took {elapsed:.2f}s with a 300 ms bridge timeout"


def test_the_printed_snippet_alone_makes_a_stock_2_4_config_feed_the_spool() -> None:
    dovecot = Dovecot24(mail_plugins="")  # the snippet brings the plugins
    spool = dovecot.make_spool()
    share = dovecot.root / "share"
    args = ["--version", "2.4", "--install-dir", str(share), "--spool", dovecot.conf_path(spool)]
    result = CliRunner().invoke(dovecot_config, args)
    assert result.exit_code == 0, result.output
    # the host path of the installed script is where Dovecot in the chroot finds it under /tmp
    dovecot.extra_config = result.stdout.replace(str(share), dovecot.conf_path(share))
    with dovecot:
        replies = dovecot.deliver("From: a@example.org\r\nSubject: configured\r\n\r\nbody\r\n")
        txns = [transaction_from_json(raw) for raw in take_spool_files(spool)]
        errors = dovecot.log_errors()
    assert [code for code, _ in replies] == [250]
    assert [t.events[0].name for t in txns] == ["MailboxCreate", "MessageNew"]
    assert errors == []


def test_lua_settings_reach_the_script_through_script_init() -> None:
    """2.4 has no plugin settings for Lua: status and metadata are turned off in lua_settings."""
    with BridgedDovecot24(status=False, lua_settings={"metadata": "no"}) as dovecot:
        dovecot.set_metadata(ALICE, OX_KEY, "user=11@3")
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        delivered = transaction_from_json(dovecot.take_spool()[-1])
    assert [e.name for e in delivered.events] == ["MessageNew"]
    assert delivered.status is None
    assert dict(delivered.metadata) == {}


def test_a_chatmail_token_set_on_inbox_is_handed_over_with_the_next_delivery() -> None:
    with BridgedDovecot24() as dovecot:
        imap = dovecot.imap(ALICE)
        typ, data = imap.xatom("SETMETADATA", 'INBOX (/private/devicetoken "sandbox:0a1b2c")')
        assert typ == "OK", data
        imap.logout()
        dovecot.take_spool()
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        [txn] = [json.loads(raw) for raw in dovecot.take_spool()]
        assert txn["metadata"]["/private/devicetoken"] == "sandbox:0a1b2c"
        assert dovecot.log_errors() == []
