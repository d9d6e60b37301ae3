"""The event model: the 12 RFC 5423 events Dovecot provides, typed and checked."""

from __future__ import annotations

import pytest
from push_notification.errors import EventError, UnsupportedEventError
from push_notification.events import EVENT_TYPES, MessageNew, event_from_dict, event_type

DOVECOT_ORDER = [
    "FlagsClear", "FlagsSet", "MailboxCreate", "MailboxDelete", "MailboxRename", "MailboxSubscribe",
    "MailboxUnsubscribe", "MessageAppend", "MessageExpunge", "MessageNew", "MessageRead", "MessageTrash",
]  # fmt: skip


def test_exactly_the_twelve_supported_events_in_dovecots_order() -> None:
    assert list(EVENT_TYPES) == DOVECOT_ORDER


@pytest.mark.parametrize(
    ("name", "handler"),
    [("Login", "authentication"), ("Logout", "authentication"), ("QuotaExceed", "quota"), ("QuotaWithin", "quota")],
)
def test_unsupported_events_are_refused_with_who_handles_them(name: str, handler: str) -> None:
    with pytest.raises(UnsupportedEventError) as info:
        event_type(name)
    message = str(info.value)
    assert "not supported by the notification framework" in message
    assert handler in message


def test_event_names_match_case_insensitively_as_in_dovecot() -> None:
    assert event_type("messagenew") is MessageNew


def test_unknown_event_lists_the_supported_ones() -> None:
    with pytest.raises(EventError, match="unknown event 'Vacation'; supported events: FlagsClear"):
        event_type("Vacation")


@pytest.mark.parametrize(
    ("typed", "meant"), [("MessageNeu", "MessageNew"), ("messagenwe", "MessageNew"), ("FlagSet", "FlagsSet")]
)
def test_a_misspelt_event_is_named_with_the_event_meant(typed: str, meant: str) -> None:
    with pytest.raises(EventError, match=rf"unknown event '{typed}' \(did you mean '{meant}'\?\); supported events"):
        event_type(typed)


def test_a_long_unknown_name_is_refused_without_a_guess() -> None:
    with pytest.raises(EventError) as info:
        event_type("MessageNew" * 10_000)
    assert "did you mean" not in str(info.value)


def test_message_new_carries_raw_and_decoded_headers() -> None:
    event = event_from_dict(
        {
            "name": "MessageNew", "mailbox": "INBOX", "uid": 7, "uid_validity": 1700000000,
            "from": "=?utf-8?q?=C3=84?= <alice@barfoo.org>", "from_address": "alice@barfoo.org",
            "from_display_name": "Ä", "subject": "=?utf-8?q?p=C3=A4iv=C3=A4?=", "subject_utf8": "päivä",
            "date": 1716000000, "tz": -330, "flags": ["\\Seen", "\\Recent"], "keywords": ["$Work"],
        }
    )  # fmt: skip
    assert isinstance(event, MessageNew)
    assert event.from_ == "=?utf-8?q?=C3=84?= <alice@barfoo.org>"
    assert event.subject_utf8 == "päivä"
    assert event.tz == -330
    assert event.flags == ("\\Seen", "\\Recent")
    assert event.to_dict()["from"] == event.from_


def test_flags_are_reported_in_dovecots_bit_order() -> None:
    event = event_from_dict(
        {"name": "FlagsSet", "mailbox": "INBOX", "uid": 1, "uid_validity": 1, "flags": ["\\Draft", "\\seen"]}
    )
    assert event.flags == ("\\Seen", "\\Draft")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "MessageNew", "mailbox": "INBOX", "uid": 1}, "missing required field(s) uid_validity"),
        ({"name": "MessageRead", "mailbox": "INBOX", "uid": -1, "uid_validity": 1}, "outside 0..4294967295"),
        ({"name": "MessageRead", "mailbox": "INBOX", "uid": "x", "uid_validity": 1}, "expected an integer"),
        ({"name": "MailboxCreate", "mailbox": "INBOX", "colour": "red"}, "unknown field 'colour'"),
        (
            {"name": "FlagsSet", "mailbox": "INBOX", "uid": 1, "uid_validity": 1, "flags": ["$Work"]},
            "unknown system flag",
        ),
        ({"name": "MailboxRename", "mailbox": "A"}, "missing required field(s) mailbox_old"),
        ({"mailbox": "INBOX"}, "event has no 'name'"),
        ({"name": "Login", "mailbox": "INBOX"}, "not supported"),
    ],
)
def test_malformed_events_are_one_clear_line(data: dict, message: str) -> None:
    with pytest.raises(EventError) as info:
        event_from_dict(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
