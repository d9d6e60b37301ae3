"""What the bridge script hands over for each Dovecot action (spool transport, real Dovecot 2.3).

One Dovecot runs the whole scenario once (module fixture); each test states what one action
produced. Every spool file must be a valid transaction for ``transaction_from_dict``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import OX_KEY, BridgedDovecot, events_of, require_dovecot
from push_notification.events import EVENT_TYPES
from push_notification.transaction import transaction_from_dict
from scenario_mails import MIME, PLAIN, first_mail_status, plain_delivery_event

require_dovecot()

ALICE, BOB = "alice@example.com", "bob@example.com"

ALTERNATIVE = (
    "From: news@example.org\r\n"
    "To: alice@example.com\r\n"
    "Subject: Two parts\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe plain part wins.\r\n"
    "--b1\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html><body><p>The HTML part</p></body></html>\r\n"
    "--b1--\r\n"
)
LONG = (
    "From: long@example.org\r\nTo: alice@example.com\r\nSubject: Long\r\n\r\n"
    + " ".join(f"word{i:04}" for i in range(1, 400))
    + "\r\n"
)
TWO = "From: both@example.org\r\nTo: alice@example.com, bob@example.com\r\nSubject: For both\r\n\r\nHi both\r\n"


class Scenario:
    """Runs actions against Dovecot and keeps what each one handed over, by label."""

    def __init__(self, dovecot: BridgedDovecot) -> None:
        self.dovecot = dovecot
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.lmtp_codes: list[int] = []
        self.errors: list[str] = []

    def record(self, label: str) -> list[dict[str, Any]]:
        txns = self.dovecot.take_spool()
        self.results[label] = txns
        return txns

    def deliver(self, label: str, message: str, recipients: list[str]) -> None:
        replies = self.dovecot.deliver(message, recipients)
        self.lmtp_codes.extend(code for code, _ in replies)
        self.record(label)


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    with BridgedDovecot() as dovecot:
        run = Scenario(dovecot)
        dovecot.set_metadata(ALICE, OX_KEY, "user=11@3")
        run.record("metadata set")
        run.deliver("plain", PLAIN, [ALICE])
        run.deliver("mime", MIME, [ALICE])
        run.deliver("alternative", ALTERNATIVE, [ALICE])
        run.deliver("long", LONG, [ALICE])
        run.deliver("two recipients", TWO, [ALICE, BOB])

        imap = dovecot.imap(ALICE)
        imap.append("INBOX", r"(\Seen \Draft)", None, b"From: me@example.com\r\nSubject: Appended\r\n\r\nDraft\r\n")
        run.record("append")
        imap.select("INBOX")
        for label, op, flags in [
            ("+seen", "+FLAGS", r"(\Seen)"),
            ("+flagged answered", "+FLAGS", r"(\Flagged \Answered)"),
            ("+keywords", "+FLAGS", "($Work Custom1)"),
            ("-keyword", "-FLAGS", "($Work)"),
            ("-seen", "-FLAGS", r"(\Seen)"),
            ("+deleted", "+FLAGS", r"(\Deleted)"),
        ]:
            imap.uid("STORE", "1", op, flags)
            run.record(label)
        imap.expunge()
        run.record("expunge")
        imap.create("Work")
        run.record("create")
        imap.uid("COPY", "2", "Work")
        run.record("copy")
        imap.uid("MOVE", "3", "Work")
        run.record("move")
        imap.subscribe("Work")
        run.record("subscribe")
        imap.rename("Work", "Projects")
        run.record("rename")
        imap.unsubscribe("Work")
        run.record("unsubscribe")
        imap.delete("Projects")
        run.record("delete")
        imap.logout()
        run.errors = dovecot.log_errors()
        yield run


def only(txns: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(txns) == 1, txns
    return txns[0]


def test_every_spool_file_is_a_valid_transaction_and_dovecot_logged_no_error(scenario: Scenario) -> None:
    for txns in scenario.results.values():
        for txn in txns:
            transaction_from_dict(txn)
    assert scenario.errors == []
    assert set(scenario.lmtp_codes) == {250}


def test_all_twelve_events_arrive(scenario: Scenario) -> None:
    seen = {name for txns in scenario.results.values() for _, name in events_of(txns)}
    assert seen == set(EVENT_TYPES)


def test_a_plain_delivery_carries_user_headers_snippet_metadata_and_status(scenario: Scenario) -> None:
    txn = only(scenario.results["plain"])
    assert txn["user"]["username"] == ALICE
    assert txn["user"]["service"] == "lmtp"
    assert txn["user"]["session_id"]
    assert txn["user"]["home"].endswith(ALICE)
    assert txn["mailbox"] == "INBOX"
    assert txn["metadata"] == {OX_KEY: "user=11@3"}
    (event,) = txn["events"]
    assert event == plain_delivery_event(txn["status"]["uidvalidity"])
    assert txn["status"] == first_mail_status(event["uid_validity"])


def test_mime_encoded_headers_arrive_raw_with_decoded_subject_and_name(scenario: Scenario) -> None:
    (event,) = only(scenario.results["mime"])["events"]
    assert event["from"] == "=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@example.org>"
    assert event["from_display_name"] == "Jörg Müller"
    assert event["subject_utf8"] == "Grüße aus Köln"
    assert "subject" not in event  # Dovecot's Lua API has no raw subject
    assert event["snippet"] == "Schöne Grüße"
    assert event["tz"] == -330
    assert "to_display_name" not in event and event["to_address"] == "alice@example.com"


def test_multipart_alternative_snippet_comes_from_the_plain_part(scenario: Scenario) -> None:
    (event,) = only(scenario.results["alternative"])["events"]
    assert event["snippet"] == "The plain part wins."
    assert event["date"] == 0 and event["tz"] == 0  # no Date header
    assert "message_id" not in event


def test_a_long_body_gives_a_200_character_snippet(scenario: Scenario) -> None:
    (event,) = only(scenario.results["long"])["events"]
    assert len(event["snippet"]) == 200  # cut hard, mid-word
    assert event["snippet"].endswith(" word0022 wo")


def test_two_recipients_give_one_transaction_per_user(scenario: Scenario) -> None:
    txns = scenario.results["two recipients"]
    deliveries = [t for t in txns if t["events"][0]["name"] == "MessageNew"]
    assert [t["user"]["username"] for t in deliveries] == [ALICE, BOB]
    assert [t["events"][0]["uid"] for t in deliveries] == [5, 1]
    # bob's first delivery creates his INBOX first, in a transaction of its own
    assert events_of([t for t in txns if t["user"]["username"] == BOB]) == [
        ("INBOX", "MailboxCreate"),
        ("INBOX", "MessageNew"),
    ]
    # bob has no http-notify METADATA: the bridge says so (Dovecot's METADATA is the truth)
    assert deliveries[1]["metadata"] == {OX_KEY: ""}


def test_append_is_message_append_with_the_given_flags(scenario: Scenario) -> None:
    txn = only(scenario.results["append"])
    assert txn["user"]["service"] == "imap"
    (event,) = txn["events"]
    assert event["name"] == "MessageAppend"
    assert event["uid"] == 6
    assert event["flags"] == ["\\Seen", "\\Draft"]
    assert event["subject_utf8"] == "Appended"
    assert txn["status"]["messages"] == 6


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (
            "+seen",
            [
                {"name": "FlagsClear", "flags": [], "keywords": [], "flags_old": ["\\Recent"], "keywords_old": []},
                {"name": "FlagsSet", "flags": ["\\Seen"], "keywords": []},
                {"name": "MessageRead"},
            ],
        ),
        (
            "+flagged answered",
            [
                {"name": "FlagsClear", "flags": [], "keywords": [], "flags_old": ["\\Seen", "\\Recent"],
                 "keywords_old": []},
                {"name": "FlagsSet", "flags": ["\\Answered", "\\Flagged"], "keywords": []},
            ],
        ),
        (
            "+keywords",
            [
                {"name": "FlagsClear", "flags": [], "keywords": [], "flags_old": [], "keywords_old": []},
                {"name": "FlagsSet", "flags": [], "keywords": ["$Work", "Custom1"]},
            ],
        ),
        (
            "-keyword",
            [
                {"name": "FlagsClear", "flags": [], "keywords": ["$Work"], "flags_old": [],
                 "keywords_old": ["$Work", "Custom1"]},
                {"name": "FlagsSet", "flags": [], "keywords": []},
            ],
        ),
        (
            "-seen",
            [
                {"name": "FlagsClear", "flags": ["\\Seen"], "keywords": [],
                 "flags_old": ["\\Answered", "\\Flagged", "\\Seen", "\\Recent"], "keywords_old": []},
            ],
        ),
        (
            "+deleted",
            [
                {"name": "FlagsClear", "flags": [], "keywords": [],
                 "flags_old": ["\\Answered", "\\Flagged", "\\Recent"], "keywords_old": []},
                {"name": "FlagsSet", "flags": ["\\Deleted"], "keywords": []},
                {"name": "MessageTrash"},
            ],
        ),
    ],
)  # fmt: skip
def test_store_gives_dovecots_flag_events(scenario: Scenario, label: str, expected: list[dict[str, Any]]) -> None:
    txn = only(scenario.results[label])
    uid_validity = txn["status"]["uidvalidity"]
    assert txn["events"] == [{"mailbox": "INBOX", "uid": 1, "uid_validity": uid_validity, **e} for e in expected]


def test_expunge_create_copy_move(scenario: Scenario) -> None:
    assert events_of(scenario.results["expunge"]) == [("INBOX", "MessageExpunge")]
    assert only(scenario.results["expunge"])["events"][0]["uid"] == 1
    assert events_of(scenario.results["create"]) == [("Work", "MailboxCreate")]
    copy = only(scenario.results["copy"])
    assert events_of([copy]) == [("Work", "MessageAppend")]
    assert copy["events"][0]["uid"] == 1 and copy["events"][0]["subject_utf8"] == "Grüße aus Köln"
    assert events_of(scenario.results["move"]) == [("Work", "MessageAppend"), ("INBOX", "MessageExpunge")]


def test_mailbox_operations(scenario: Scenario) -> None:
    assert events_of(scenario.results["subscribe"]) == [("Work", "MailboxSubscribe")]
    rename = only(scenario.results["rename"])
    assert rename["events"] == [{"name": "MailboxRename", "mailbox": "Projects", "mailbox_old": "Work"}]
    # the subscription stays on the old name, as in Dovecot, so UNSUBSCRIBE Work still fires
    assert events_of(scenario.results["unsubscribe"]) == [("Work", "MailboxUnsubscribe")]
    # deleting a mailbox with messages expunges them first
    assert events_of(scenario.results["delete"]) == [
        ("Projects", "MessageExpunge"),
        ("Projects", "MessageExpunge"),
        ("Projects", "MailboxDelete"),
    ]
    assert "status" not in only(scenario.results["subscribe"])
