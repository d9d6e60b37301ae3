"""What a script receives: the calls Dovecot makes, in Dovecot's order, with Dovecot's tables."""

from __future__ import annotations

import pytest
from conftest import RECORDER
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_lua import LuaDriver

UIDV = "1700000000.0"

EXPECTED = {
    "FlagsClear": (
        make_event("FlagsClear", uid=7, flags=["\\Seen"], flags_old=["\\Seen", "\\Recent"]),
        "flags_clear",
        '{flags={1="\\\\Seen"},flags_old={1="\\\\Seen",2="\\\\Recent"},keywords={},keywords_old={},'
        f'mailbox="INBOX",name="FlagsClear",uid=7.0,uid_validity={UIDV}}}',
    ),
    "FlagsSet": (
        make_event("FlagsSet", uid=7, flags=["\\Answered", "\\Flagged"], keywords=["$Work"]),
        "flags_set",
        '{flags={1="\\\\Answered",2="\\\\Flagged"},keywords={1="$Work"},'
        f'mailbox="INBOX",name="FlagsSet",uid=7.0,uid_validity={UIDV}}}',
    ),
    "MailboxCreate": (
        make_event("MailboxCreate", mailbox="Work"),
        "mailbox_create",
        '{mailbox="Work",name="MailboxCreate"}',
    ),
    "MailboxDelete": (
        make_event("MailboxDelete", mailbox="Work"),
        "mailbox_delete",
        '{mailbox="Work",name="MailboxDelete"}',
    ),
    "MailboxRename": (
        make_event("MailboxRename", mailbox="Archive", mailbox_old="Projects"),
        "mailbox_rename",
        '{mailbox="Archive",mailbox_old="Projects",name="MailboxRename"}',
    ),
    "MailboxSubscribe": (
        make_event("MailboxSubscribe", mailbox="Entwürfe"),
        "mailbox_subscribe",
        '{mailbox="Entwürfe",name="MailboxSubscribe"}',
    ),
    "MailboxUnsubscribe": (
        make_event("MailboxUnsubscribe", mailbox="Work"),
        "mailbox_unsubscribe",
        '{mailbox="Work",name="MailboxUnsubscribe"}',
    ),
    "MessageExpunge": (
        make_event("MessageExpunge", uid=7),
        "message_expunge",
        f'{{mailbox="INBOX",name="MessageExpunge",uid=7.0,uid_validity={UIDV}}}',
    ),
    "MessageRead": (
        make_event("MessageRead", uid=7),
        "message_read",
        f'{{mailbox="INBOX",name="MessageRead",uid=7.0,uid_validity={UIDV}}}',
    ),
    "MessageTrash": (
        make_event("MessageTrash", uid=7),
        "message_trash",
        f'{{mailbox="INBOX",name="MessageTrash",uid=7.0,uid_validity={UIDV}}}',
    ),
}

SAVED_FIELDS = {
    "from": "=?utf-8?q?=C3=84?= <alice@barfoo.org>",
    "to": '"Multi, Part" <bob@example.com>',
    "subject": "Test =?utf-8?q?p=C3=A4iv=C3=A4=C3=A4?=",
    "subject_utf8": "Test päivää",
    "from_address": "alice@barfoo.org",
    "from_display_name": "Ä",
    "to_address": "bob@example.com",
    "to_display_name": "Multi, Part",
    "date": 1716000000,
    "tz": 120,
    "snippet": "Hey guys This is only a test",
    "message_id": "<m1@example.org>",
    "flags": ["\\Draft", "\\Seen"],
    "keywords": ["$Work"],
}
SAVED_TABLE = (
    'date=1716000000.0,flags={1="\\\\Seen",2="\\\\Draft"},from="=?utf-8?q?=C3=84?= <alice@barfoo.org>",'
    'from_address="alice@barfoo.org",from_display_name="Ä",keywords={1="$Work"},mailbox="INBOX",'
    'message_id="<m1@example.org>",name="{name}",snippet="Hey guys This is only a test",'
    'subject="Test päivää",to="\\"Multi, Part\\" <bob@example.com>",to_address="bob@example.com",'
    'to_display_name="Multi, Part",tz=120.0,uid=42.0,uid_validity=1700000000.0'
)
for _name, _hook in (("MessageNew", "message_new"), ("MessageAppend", "message_append")):
    EXPECTED[_name] = (
        make_event(_name, uid=42, **SAVED_FIELDS),
        _hook,
        "{" + SAVED_TABLE.replace("{name}", _name) + "}",
    )


def test_every_event_is_covered() -> None:
    assert len(EXPECTED) == 12


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_handler_receives_dovecots_event_table(name, write_script, lua_calls) -> None:
    event, hook, table = EXPECTED[name]
    async with DriverHarness(LuaDriver, {"file": write_script(RECORDER)}) as harness:
        await harness.send(make_transaction(event, user="alice@example.com"))
    assert lua_calls() == ["begin_txn alice@example.com", f"{hook} {table}", "end_txn true"]


async def test_missing_headers_give_empty_strings_and_absent_keys(write_script, lua_calls) -> None:
    event = make_event("MessageNew", uid=3)
    async with DriverHarness(LuaDriver, {"file": write_script(RECORDER)}) as harness:
        await harness.send(make_transaction(event))
    assert lua_calls()[1] == (
        'message_new {date=-1.0,flags={},from="",from_address="",from_display_name="",keywords={},'
        'mailbox="INBOX",name="MessageNew",to="",to_address="",to_display_name="",tz=0.0,uid=3.0,'
        "uid_validity=1700000000.0}"
    )


async def test_raw_subject_is_decoded_when_no_utf8_form_was_sent(write_script, lua_calls) -> None:
    event = make_event("MessageNew", subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=")
    script = RECORDER + 'function dovecot_lua_notify_event_message_new(ctx, e) dovecot.i_info("CALL " .. e.subject) end'
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(event))
    assert lua_calls()[1] == "Grüße"


async def test_numbers_are_floats_as_in_dovecot(write_script, lua_calls) -> None:
    script = (
        "function dovecot_lua_notify_begin_txn(user) return {} end\n"
        "function dovecot_lua_notify_end_txn(ctx, success) end\n"
        "function dovecot_lua_notify_event_message_read(ctx, e)\n"
        '  dovecot.i_info("CALL " .. math.type(e.uid) .. " " .. tostring(e.uid))\nend\n'
    )
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageRead", uid=42)))
    assert lua_calls() == ["float 42.0"]


async def test_seen_flag_change_calls_clear_set_read_in_dovecots_order(write_script, lua_calls) -> None:
    # `STORE 1 +FLAGS (\Seen)`: the bridge sends the three events in any order.
    txn = make_transaction(
        make_event("MessageRead", uid=1),
        make_event("FlagsSet", uid=1, flags=["\\Seen"]),
        make_event("FlagsClear", uid=1, flags_old=["\\Recent"]),
    )
    async with DriverHarness(LuaDriver, {"file": write_script(RECORDER)}) as harness:
        await harness.send(txn)
    assert [c.split(" ")[0] for c in lua_calls()] == [
        "begin_txn",
        "flags_clear",
        "flags_set",
        "message_read",
        "end_txn",
    ]


async def test_rollback_calls_only_begin_and_end_false(write_script, lua_calls) -> None:
    async with DriverHarness(LuaDriver, {"file": write_script(RECORDER)}) as harness:
        await harness.send(make_transaction(success=False))
    assert lua_calls() == ["begin_txn alice", "end_txn false"]


async def test_only_defined_handlers_are_called_but_begin_and_end_always(write_script, lua_calls) -> None:
    script = RECORDER.split("function dovecot_lua_notify_event_flags_clear")[0] + (
        'function dovecot_lua_notify_event_message_new(ctx, e) dovecot.i_info("CALL new") end\n'
    )
    txn = make_transaction(make_event("FlagsSet", uid=1, flags=["\\Seen"]), make_event("MessageRead", uid=1))
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(txn)
    # As Dovecot: a transaction with any event reaches begin/end, even with no matching handler.
    assert lua_calls() == ["begin_txn alice", "end_txn true"]


async def test_script_without_event_handlers_gets_no_calls(write_script, lua_calls) -> None:
    script = RECORDER.split("function dovecot_lua_notify_event_flags_clear")[0]
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    assert lua_calls() == []


async def test_missing_begin_txn_is_dovecots_error_and_no_events(write_script, lua_calls, caplog) -> None:
    script = 'function dovecot_lua_notify_event_message_new(ctx, e) dovecot.i_info("CALL new") end\n'
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    assert lua_calls() == []
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        "push_notification test: dovecot_lua_notify_begin_txn failed: Missing function dovecot_lua_notify_begin_txn"
    ]


async def test_missing_end_txn_is_dovecots_error_after_the_events(write_script, lua_calls, caplog) -> None:
    script = (
        "function dovecot_lua_notify_begin_txn(user) return {} end\n"
        'function dovecot_lua_notify_event_message_new(ctx, e) dovecot.i_info("CALL new") end\n'
    )
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    assert lua_calls() == ["new"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "push_notification test: dovecot_lua_notify_end_txn failed: Missing function dovecot_lua_notify_end_txn"
    ]


async def test_begin_txn_result_is_the_context_of_every_call(write_script, lua_calls) -> None:
    script = (
        "function dovecot_lua_notify_begin_txn(user) return {count = 0} end\n"
        "function dovecot_lua_notify_event_message_new(ctx, e) ctx.count = ctx.count + 1 end\n"
        'function dovecot_lua_notify_end_txn(ctx, success) dovecot.i_info("CALL " .. ctx.count) end\n'
    )
    txn = make_transaction(make_event("MessageNew", uid=1), make_event("MessageNew", uid=2))
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(txn, txn)
    assert lua_calls() == ["2", "2"]
