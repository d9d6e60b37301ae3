"""The ``user`` and mailbox objects a script gets from ``dovecot_lua_notify_begin_txn(user)``."""

from __future__ import annotations

import logging
from types import MappingProxyType

from conftest import SERIALIZE
from push_notification.server.metadata import MetadataStore
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.transaction import User
from push_notification_lua.host import LuaHost

ALICE = User(
    username="alice@example.com",
    service="imap",
    session_id="sess1",
    home="/home/alice",
    uid=1000,
    gid=1000,
    session_create_time=1716000000,
    extra=MappingProxyType({"admin": True, "quota": "1G"}),
)
STATUS = {"messages": 3, "recent": 1, "unseen": 2, "uidvalidity": 1700000000, "uidnext": 43}


def in_handler(body: str) -> str:
    """A script running ``body`` (with ``user``, ``event`` and ``out(...)``) in message_new."""
    return (
        SERIALIZE
        + "local function out(v) dovecot.i_info('CALL ' .. (type(v) == 'table' and ser(v) or tostring(v))) end\n"
        + "function dovecot_lua_notify_begin_txn(user) return {user = user} end\n"
        + "function dovecot_lua_notify_end_txn(ctx, success) end\n"
        + "function dovecot_lua_notify_event_message_new(ctx, event)\n  local user = ctx.user\n"
        + body
        + "\nend\n"
    )


async def run(write_script, body: str, *, settings=None, plugin_env=None, metadata=None, txn=None) -> None:
    config = {"file": write_script(in_handler(body)), **(settings or {})}
    async with DriverHarness("lua", config, plugin_env=plugin_env, metadata=metadata) as harness:
        await harness.send(txn or make_transaction(make_event("MessageNew", uid=5), user=ALICE, status=STATUS))


async def test_user_fields_are_dovecots(write_script, lua_calls) -> None:
    fields = [
        "username",
        "home",
        "uid",
        "gid",
        "service",
        "session_id",
        "session_create_time",
        "nonexistent",
        "anonymous",
        "autocreated",
        "mail_debug",
        "fuzzy_search",
        "dsyncing",
        "admin",
        "session_restored",
    ]
    await run(write_script, "".join(f"out(user.{f})\n" for f in fields) + "out(tostring(user))")
    assert lua_calls() == [
        "alice@example.com",
        "/home/alice",
        "1000.0",
        "1000.0",
        "imap",
        "sess1",
        "1716000000.0",
        "false",
        "false",
        "false",
        "false",
        "false",
        "false",
        "true",
        "false",
        "alice@example.com",
    ]


async def test_var_expand(write_script, lua_calls) -> None:
    await run(
        write_script,
        'out(user:var_expand("%u|%n|%d|%h|%s|%Ln|%{user}|%{userdb:quota}|100%%"))\nout(user:var_expand("%z %{nope}"))',
    )
    assert lua_calls() == [
        "alice@example.com|alice|example.com|/home/alice|imap|alice|alice@example.com|1G|100%",
        # what Dovecot 2.3.19 returns for unknown variables (observed on a running server)
        "UNSUPPORTED_VARIABLE_z UNSUPPORTED_VARIABLE_nope",
    ]


async def test_plugin_getenv_reads_instance_settings_then_plugin_block(write_script, lua_calls) -> None:
    await run(
        write_script,
        'out(user:plugin_getenv("push_lua_url"))\nout(user:plugin_getenv("mail_log_events"))\n'
        'out(user:plugin_getenv("nothing"))',
        settings={"settings": {"push_lua_url": "http://instance/"}},
        plugin_env={"push_lua_url": "http://global/", "mail_log_events": "delete"},
    )
    assert lua_calls() == ["http://instance/", "delete", "nil"]


async def test_metadata_round_trip_through_the_daemons_store(write_script, lua_calls) -> None:
    store = MetadataStore()
    store.set("alice@example.com", "/private/existing", "1")
    await run(
        write_script,
        'user:metadata_set("/private/flag", "on")\n'
        'out(user:metadata_get("/private/flag"))\n'
        'out(select("#", user:metadata_get("/private/flag", "/private/none", "/private/existing")))\n'
        'out(user:metadata_list("/private/"))\n'
        'user:metadata_unset("/private/existing")\n'
        'local box = user:mailbox("INBOX")\nbox:metadata_set("/shared/comment", "hi")\n'
        'out(box:metadata_get("/shared/comment"))\nout(box:metadata_list("/shared/"))',
        metadata=store,
    )
    assert lua_calls() == ["on", "3", '{/private/existing="1",/private/flag="on"}', "hi", '{/shared/comment="hi"}']
    assert store.get("alice@example.com", "/private/flag") == "on"
    assert store.get("alice@example.com", "/private/existing") is None
    assert store.get("alice@example.com", "/shared/comment", mailbox="INBOX") == "hi"


async def test_metadata_forwarded_with_the_transaction_is_readable(write_script, lua_calls) -> None:
    txn = make_transaction(
        make_event("MessageNew"),
        user=ALICE,
        metadata={"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},
    )
    await run(write_script, 'out(user:metadata_get("/private/vendor/vendor.dovecot/http-notify"))', txn=txn)
    assert lua_calls() == ["user=11@3"]


async def test_metadata_key_must_be_private_or_shared(write_script, lua_calls) -> None:
    await run(write_script, 'local ok, err = pcall(user.metadata_get, user, "/vendor/x")\nout(err)')
    (message,) = lua_calls()
    assert message.endswith(".lua:20: Invalid key prefix, must be /private/ or /shared/")


async def test_mailbox_object_and_status_of_the_transactions_mailbox(write_script, lua_calls) -> None:
    await run(
        write_script,
        "local box = user:mailbox(event.mailbox)\nbox:open()\nbox:sync()\n"
        "out(box.vname .. ' ' .. box.name .. ' ' .. tostring(box))\n"
        "local s = box:status(dovecot.storage.STATUS_MESSAGES, dovecot.storage.STATUS_RECENT,"
        " dovecot.storage.STATUS_UNSEEN, dovecot.storage.STATUS_UIDVALIDITY, dovecot.storage.STATUS_UIDNEXT)\n"
        "out(s.mailbox .. ' ' .. s.messages .. ' ' .. s.recent .. ' ' .. s.unseen .. ' ' .. s.uidvalidity"
        " .. ' ' .. s.uidnext)\nbox:close()\nbox:free()",
    )
    assert lua_calls() == ["INBOX INBOX INBOX", "INBOX 3.0 1.0 2.0 1700000000.0 43.0"]


async def test_status_of_another_mailbox_without_doveadm_names_the_settings(write_script, lua_calls) -> None:
    await run(
        write_script,
        'local ok, err = pcall(function() local s = user:mailbox("Archive"):status(dovecot.storage.STATUS_UNSEEN);'
        " return s end)\nout(err)",
    )
    (message,) = lua_calls()
    assert message.endswith(
        "mailbox status for 'Archive' is unknown: only the transaction's own mailbox comes with the"
        " transaction; set doveadm_url and doveadm_api_key so the lua driver can ask Dovecot"
    )
    assert ".lua:" in message


async def test_storage_constants_are_dovecots(write_script, lua_calls) -> None:
    await run(
        write_script,
        "local s = dovecot.storage\n"
        "out(s.STATUS_MESSAGES .. ' ' .. s.STATUS_UNSEEN .. ' ' .. s.STATUS_HIGHESTPVTMODSEQ)\n"
        "out(s.MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT_SERVER)\n"
        "out(dovecot.has_flag(s.STATUS_MESSAGES + s.STATUS_UNSEEN, s.STATUS_UNSEEN))",
    )
    assert lua_calls() == ["1.0 16.0 8192.0", "vendor/vendor.dovecot/pvt/server/", "true"]


async def test_dovecot_event_logs_with_prefix_and_fields(write_script, caplog) -> None:
    await run(
        write_script,
        'local e = dovecot.event()\ne:set_name("lua_notify_mail_finished")\ne:append_log_prefix("push: ")\n'
        'e:add_str("mailbox", event.mailbox)\ne:add_int("result_code", 200)\ne:log_warning("sent")',
    )
    (record,) = [r for r in caplog.records if r.getMessage() == "push: sent"]
    assert record.levelname == "WARNING"
    assert record.lua_event == "lua_notify_mail_finished"  # type: ignore[attr-defined]
    assert record.lua_fields == {"mailbox": "INBOX", "result_code": 200}  # type: ignore[attr-defined]


async def test_dovecots_functions_live_behind_its_metatables_index_as_in_dovecot(write_script, lua_calls) -> None:
    await run(
        write_script,
        "local meta = getmetatable(dovecot)\n"
        "out(tostring(meta.__index == meta) .. ' ' .. meta.__name .. ' ' .. type(rawget(dovecot, 'i_info'))"
        " .. ' ' .. type(meta.__index.i_info) .. ' ' .. type(rawget(dovecot, 'storage'))"
        " .. ' ' .. type(rawget(dovecot, 'http')))",
    )
    assert lua_calls() == ["true dovecot nil function table table"]


async def test_user_and_mailbox_carry_an_opaque_item_and_dovecots_metatable_names(write_script, lua_calls) -> None:
    await run(
        write_script,
        'local box = user:mailbox("INBOX")\n'
        "out(type(user.item) .. ' ' .. getmetatable(user).__name .. ' ' .. type(box.item)"
        " .. ' ' .. getmetatable(box).__name)",
    )
    assert lua_calls() == ["userdata struct mail_user userdata struct mailbox"]


async def test_metadata_set_without_the_doveadm_api_stays_in_the_daemon_and_says_so_once(
    write_script, lua_calls, caplog
) -> None:
    store = MetadataStore()
    await run(
        write_script,
        'user:metadata_set("/private/a", "1")\nuser:metadata_set("/private/b", "2")\nout(user:metadata_get("/private/b"))',
        metadata=store,
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert lua_calls() == ["2"]
    assert warnings == [
        "user:metadata_set: Dovecot does not see METADATA the lua driver writes without the doveadm API;"
        " kept in the daemon's metadata store only; set doveadm_url and doveadm_api_key so the lua driver"
        " can ask Dovecot and write it there"
    ]


def test_metadata_set_with_neither_a_store_nor_the_doveadm_api_names_both() -> None:
    host = LuaHost(
        log=logging.getLogger("test"), settings={}, plugin_env={}, metadata=None, doveadm=None, script="x.lua"
    )
    ok, message = host.metadata_set("alice@example.com", "", "/private/a", "1")
    assert not ok
    assert message == (
        "no metadata store is configured for the daemon (metadata_path), and Dovecot's METADATA is out of"
        " reach: set doveadm_url and doveadm_api_key so the lua driver can ask Dovecot"
    )


async def test_status_of_the_transactions_mailbox_without_a_snapshot_says_why_and_how(write_script, lua_calls) -> None:
    txn = make_transaction(make_event("MessageNew", uid=5), user=ALICE)  # no status
    await run(
        write_script, 'local ok, err = pcall(user:mailbox("INBOX").status, user:mailbox("INBOX"), 1)\nout(err)', txn=txn
    )
    (message,) = lua_calls()
    assert message.endswith(
        "mailbox status for 'INBOX' is unknown: this transaction came without a status snapshot (the Dovecot"
        " bridge takes one for transactions on messages unless its status setting is no); set doveadm_url"
        " and doveadm_api_key so the lua driver can ask Dovecot"
    )


async def test_sync_without_the_doveadm_api_keeps_the_snapshot_taken_from_a_synced_view(
    write_script, lua_calls
) -> None:
    await run(write_script, 'local box = user:mailbox("INBOX")\nbox:sync()\nout(box:status(1).messages)')
    assert lua_calls() == ["3.0"]
