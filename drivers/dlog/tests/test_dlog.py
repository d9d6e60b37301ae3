"""The dlog driver writes Dovecot 2.3.19's lines for every hook and event."""

from __future__ import annotations

import logging

import pytest
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_dlog import DlogDriver, event_lines

UIDV = 1700000000


def dlog_lines(caplog: pytest.LogCaptureFixture, instance: str = "test") -> list[str]:
    prefix = f"{instance}: "
    return [r.getMessage()[len(prefix) :] for r in caplog.records if r.getMessage().startswith(prefix)]


@pytest.mark.parametrize(
    ("name", "fields", "expected"),
    [
        ("MailboxCreate", {}, ["MailboxCreate: Mailbox was created"]),
        ("MailboxDelete", {}, ["MailboxDelete: Mailbox was deleted"]),
        ("MailboxRename", {"mailbox_old": "Projects"}, ["MailboxRename: Mailbox was renamed (old name: Projects)"]),
        ("MailboxSubscribe", {}, ["MailboxSubscribe: Mailbox was subscribed to"]),
        ("MailboxUnsubscribe", {}, ["MailboxUnsubscribe: Mailbox was unsubscribed from"]),
        ("MessageExpunge", {}, ["MessageExpunge: Message was expunged"]),
        ("MessageRead", {}, ["MessageRead: Message was flagged as seen"]),
        ("MessageTrash", {}, ["MessageTrash: Message was marked as deleted"]),
        (
            "FlagsSet",
            {"flags": ["\\Seen", "\\Draft", "\\Answered", "\\Flagged", "\\Deleted"], "keywords": ["$Work", "Custom1"]},
            [
                "FlagsSet: Answered flag set",
                "FlagsSet: Flagged flag set",
                "FlagsSet: Deleted flag set",
                "FlagsSet: Seen flag set",
                "FlagsSet: Draft flag set",
                "FlagsSet: Keyword set [$Work]",
                "FlagsSet: Keyword set [Custom1]",
            ],
        ),
        ("FlagsSet", {}, []),
        (
            "FlagsClear",
            {
                "flags": ["\\Answered", "\\Flagged"],
                "keywords": ["$Work"],
                "flags_old": ["\\Answered", "\\Flagged", "\\Recent"],
            },
            [
                "FlagsClear: Answered flag cleared",
                "FlagsClear: Flagged flag cleared",
                "FlagsClear: Keyword clear [$Work]",
            ],
        ),
        ("FlagsClear", {"flags_old": ["\\Seen"]}, []),
        (
            "MessageNew",
            {
                "from": "=?utf-8?q?=C3=84?= <alice@barfoo.org>",
                "to": "bob@example.org",
                "subject": "Test =?utf-8?q?p=C3=A4iv=C3=A4=C3=A4?=",
                "snippet": "Hey guys This is only a test...",
                "date": 1716000000,
                "tz": 120,
            },
            [
                "MessageNew: Date [2024-05-18T04:40:00+02:00]",
                "MessageNew: From [=?utf-8?q?=C3=84?= <alice@barfoo.org>]",
                "MessageNew: Snippet [Hey guys This is only a test...]",
                "MessageNew: Subject [Test =?utf-8?q?p=C3=A4iv=C3=A4=C3=A4?=]",
                "MessageNew: To [bob@example.org]",
            ],
        ),
        (
            "MessageAppend",
            {"subject_utf8": "Grüße", "date": 0, "tz": -330},
            [
                "MessageAppend: Date [1969-12-31T18:30:00-05:30]",
                "MessageAppend: Subject [Grüße]",
            ],
        ),
        ("MessageNew", {}, []),
    ],
)
def test_each_event_has_dovecots_lines(name: str, fields: dict, expected: list[str]) -> None:
    assert event_lines(make_event(name, **fields)) == expected


async def test_a_flag_change_logs_the_whole_transaction_in_dovecots_order(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon runs at log level "error": dlog still writes, as Dovecot's i_debug does.
    monkeypatch.setattr(logging.getLogger(), "level", logging.ERROR)
    txn = make_transaction(
        make_event("MessageRead", uid=1, uid_validity=UIDV),
        make_event("FlagsSet", uid=1, uid_validity=UIDV, flags=["\\Seen"]),
        make_event("FlagsClear", uid=1, uid_validity=UIDV, flags_old=["\\Recent"]),
    )
    async with DriverHarness(DlogDriver) as harness:
        await harness.send(txn)
    assert dlog_lines(caplog) == [
        "Called init push_notification plugin hook.",
        "Called begin_txn push_notification plugin hook.",
        "Called process_msg push_notification plugin hook.",
        f"Message data: Mailbox [INBOX], UID [1], UIDVALIDITY [{UIDV}]",
        "FlagsSet: Seen flag set",
        "MessageRead: Message was flagged as seen",
        "Called end_txn push_notification plugin hook.",
        "Called deinit push_notification plugin hook.",
        "Called cleanup push_notification plugin hook.",
    ]


async def test_mailbox_operations_log_process_mbox(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with DriverHarness(DlogDriver, instance="d") as harness:
        await harness.send(make_transaction(make_event("MailboxRename", mailbox="Archive", mailbox_old="Projects")))
    assert dlog_lines(caplog, "d")[1:5] == [
        "Called begin_txn push_notification plugin hook.",
        "Called process_mbox push_notification plugin hook.",
        "Mailbox data: Mailbox [Archive]",
        "MailboxRename: Mailbox was renamed (old name: Projects)",
    ]


async def test_each_message_of_a_transaction_gets_its_own_process_msg(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    txn = make_transaction(*(make_event("MessageExpunge", uid=uid, uid_validity=UIDV) for uid in (3, 4)))
    async with DriverHarness(DlogDriver) as harness:
        await harness.send(txn)
    lines = dlog_lines(caplog)
    assert lines[2:8] == [
        "Called process_msg push_notification plugin hook.",
        f"Message data: Mailbox [INBOX], UID [3], UIDVALIDITY [{UIDV}]",
        "MessageExpunge: Message was expunged",
        "Called process_msg push_notification plugin hook.",
        f"Message data: Mailbox [INBOX], UID [4], UIDVALIDITY [{UIDV}]",
        "MessageExpunge: Message was expunged",
    ]


async def test_a_rolled_back_transaction_logs_only_begin_and_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with DriverHarness(DlogDriver) as harness:
        await harness.send(make_transaction(success=False))
    assert dlog_lines(caplog)[1:3] == [
        "Called begin_txn push_notification plugin hook.",
        "Called end_txn push_notification plugin hook.",
    ]


async def test_options_are_logged_like_dovecots_config_string(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with DriverHarness(DlogDriver, {"xyz": ""}):
        pass
    assert "Config string for dlog push_notification driver: xyz" in dlog_lines(caplog)


async def test_driver_loads_by_name_through_its_entry_point(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with DriverHarness("dlog", instance="byname") as harness:
        await harness.send(make_transaction(make_event("MailboxCreate", mailbox="Work")))
    assert "MailboxCreate: Mailbox was created" in dlog_lines(caplog, "byname")
