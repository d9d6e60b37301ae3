"""Transactions: one user, one mailbox, Dovecot's call order; the JSON form of the ingress."""

from __future__ import annotations

import pytest
from push_notification.errors import EventError
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import transaction_from_dict


def test_events_of_a_message_come_in_dovecots_order_whatever_order_they_were_sent() -> None:
    txn = make_transaction(
        make_event("MessageRead", uid=1),
        make_event("FlagsSet", uid=1, flags=["\\Seen"]),
        make_event("FlagsClear", uid=1),
    )
    assert [e.name for e in txn.messages[0].events] == ["FlagsClear", "FlagsSet", "MessageRead"]


def test_hook_calls_group_events_by_message() -> None:
    txn = make_transaction(make_event("MessageExpunge", uid=1), make_event("MessageExpunge", uid=2))
    assert [name for name, _ in txn.hook_calls] == ["process_msg", "message_expunge", "process_msg", "message_expunge"]


def test_a_mailbox_operation_gets_process_mbox() -> None:
    txn = make_transaction(make_event("MailboxCreate", mailbox="Work"))
    assert [name for name, _ in txn.hook_calls] == ["process_mbox", "mailbox_create"]


def test_a_rolled_back_transaction_carries_no_events() -> None:
    with pytest.raises(EventError, match="rolled-back"):
        make_transaction(make_event("MessageExpunge"), success=False)
    assert make_transaction(success=False).hook_calls == ()


def test_events_must_belong_to_the_transactions_mailbox() -> None:
    with pytest.raises(EventError, match="differs from the transaction's mailbox"):
        make_transaction(make_event("MessageExpunge", mailbox="Work"), mailbox="INBOX")


def test_json_round_trip_keeps_everything() -> None:
    txn = make_transaction(
        make_event("MessageNew", uid=5, subject="Hi", flags=["\\Recent"]),
        metadata={"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},
        status={"messages": 5, "recent": 1, "unseen": 2, "uidvalidity": 1700000000, "uidnext": 6},
    )
    again = transaction_from_dict(txn.to_dict())
    assert again == txn


def test_events_may_leave_out_the_mailbox_of_their_transaction() -> None:
    txn = transaction_from_dict({"user": {"username": "bob"}, "mailbox": "Work", "events": [{"name": "MailboxCreate"}]})
    assert txn.events[0].mailbox == "Work"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"user": {"username": "a"}}, "'mailbox' must be a non-empty string"),
        ({"mailbox": "INBOX"}, "'user' must be an object"),
        ({"user": "a", "mailbox": "INBOX", "events": {}}, "'events' must be a list"),
        ({"user": "a", "mailbox": "INBOX", "events": [{"name": "Nope"}]}, "event 1: unknown event 'Nope'"),
        ({"user": "a", "mailbox": "INBOX", "success": "yes"}, "'success' must be true or false"),
        ({"user": "a", "mailbox": "INBOX", "extra": 1}, "unknown field(s) 'extra'"),
        ({"user": "a", "mailbox": "INBOX", "metadata": {"k": 1}}, "'metadata' must map"),
        ({"user": "a", "mailbox": "INBOX", "status": {"messages": 1}}, "status.recent"),
        ({"user": {"username": "a", "uid": "x"}, "mailbox": "INBOX"}, "user.uid: expected an integer"),
    ],
)
def test_malformed_transactions_are_one_clear_line(data: object, message: str) -> None:
    with pytest.raises(EventError) as info:
        transaction_from_dict(data)
    assert message in str(info.value)
