"""``mbox:sync()`` and ``mbox:status()`` for a mailbox other than the transaction's own ask the
running Dovecot through its doveadm HTTP API (a real Dovecot here)."""

from __future__ import annotations

import pytest
from conftest import USERNAME, skip_without_dovecot
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.testing.dovecot import Dovecot

pytestmark = skip_without_dovecot()

SCRIPT = """
function dovecot_lua_notify_begin_txn(user) return {user = user} end
function dovecot_lua_notify_end_txn(ctx, success) end
function dovecot_lua_notify_event_message_new(ctx, event)
  for _, name in ipairs({"Archive", "Nope"}) do
    local box = ctx.user:mailbox(name)
    local ok, s = pcall(function()
      box:sync()
      return box:status(dovecot.storage.STATUS_MESSAGES, dovecot.storage.STATUS_UNSEEN,
        dovecot.storage.STATUS_RECENT, dovecot.storage.STATUS_UIDVALIDITY, dovecot.storage.STATUS_UIDNEXT)
    end)
    box:free()
    if ok then
      dovecot.i_info("CALL " .. s.mailbox .. " " .. s.messages .. " " .. s.unseen .. " " .. s.uidvalidity
        .. " " .. s.uidnext)
    else
      dovecot.i_info("CALL " .. s)
    end
  end
end
"""

MESSAGE = "From: bob@example.org\nSubject: archived\n\nbody\n"


@pytest.fixture(scope="module")
def dovecot():
    with Dovecot(users=(USERNAME,), mail_plugins="", doveadm_http=True) as server:
        server.doveadm("mailbox", "create", "-u", USERNAME, "Archive")
        server.doveadm("save", "-u", USERNAME, "-m", "Archive", stdin=MESSAGE)
        server.doveadm("save", "-u", USERNAME, "-m", "Archive", stdin=MESSAGE)
        server.doveadm("flags", "add", "-u", USERNAME, "\\Seen", "mailbox", "Archive", "uid", "1")
        yield server


async def test_status_of_another_mailbox_comes_from_dovecot(dovecot, write_script, lua_calls) -> None:
    status = dovecot.doveadm("-f", "flow", "mailbox", "status", "-u", USERNAME, "uidvalidity", "Archive")
    uidvalidity = status.stdout
    settings = {
        "file": write_script(SCRIPT),
        "doveadm_url": dovecot.doveadm_http_url,
        "doveadm_api_key": dovecot.doveadm_api_key,
    }
    async with DriverHarness("lua", settings) as harness:
        await harness.send(make_transaction(make_event("MessageNew"), user=USERNAME))
    archive, nope = lua_calls()
    assert archive == f"Archive 2.0 1.0 {uidvalidity.split('=')[1].strip()}.0 3.0"
    assert "mailbox_sync(Nope) failed: doveadm API http://127.0.0.1:" in nope
    assert "exit code 68 (mailbox does not exist)" in nope


async def test_wrong_api_key_is_a_clear_lua_error_without_the_key(dovecot, write_script, lua_calls) -> None:
    settings = {"file": write_script(SCRIPT), "doveadm_url": dovecot.doveadm_http_url, "doveadm_api_key": "wrong-key"}
    async with DriverHarness("lua", settings) as harness:
        await harness.send(make_transaction(make_event("MessageNew"), user=USERNAME))
    archive, _ = lua_calls()
    assert archive.endswith("(check doveadm_api_key)")
    assert "wrong-key" not in archive
