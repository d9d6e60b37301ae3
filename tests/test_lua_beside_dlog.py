"""The lua driver in the real daemon, configured as Dovecot admins write it, beside dlog: a
script whose handler errors is logged with its file and line while dlog gets everything."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

UIDV = 1700000000

SCRIPT = """\
function script_init(settings)
  dovecot.i_info("lua-test: init url=" .. tostring(settings.push_lua_url))
  return 0
end
function dovecot_lua_notify_begin_txn(user)
  return {user = user, url = user:plugin_getenv("push_lua_url")}
end
function dovecot_lua_notify_event_flags_set(ctx, event)
  local missing = nil
  return missing.field
end
function dovecot_lua_notify_event_message_read(ctx, event)
  dovecot.i_info("lua-test: read uid=" .. tostring(event.uid) .. " url=" .. ctx.url)
end
function dovecot_lua_notify_end_txn(ctx, success)
  dovecot.i_info("lua-test: end " .. tostring(success))
end
"""


def post(url: str, txn: dict) -> int:
    request = urllib.request.Request(f"{url}/v1/transactions", data=json.dumps(txn).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


CONFIGS = {
    "2.4": (
        "push_notification dlog { }\n"
        "push_notification lua1 {\n"
        "  driver = lua\n"
        "  lua_file = {script}\n"
        "  lua_settings {\n    push_lua_url = http://127.0.0.1:9/push\n  }\n"
        "}\n"
    ),
    "2.3": (
        "plugin {\n"
        "  push_notification_driver = dlog\n"
        "  push_notification_driver2 = lua:file={script}\n"
        "  push_lua_url = http://127.0.0.1:9/push\n"
        "}\n"
    ),
}


@pytest.mark.parametrize("version", sorted(CONFIGS))
def test_erroring_lua_handler_beside_a_healthy_dlog_instance(version, start_daemon, tmp_path: Path) -> None:
    script = tmp_path / "push.lua"
    script.write_text(SCRIPT)
    daemon = start_daemon(CONFIGS[version].replace("{script}", str(script)))
    expected_init = "http://127.0.0.1:9/push" if version == "2.4" else "nil"  # 2.3 has no lua_settings
    daemon.wait_for_log(f"lua-test: init url={expected_init}")
    seen = {
        "user": {"username": "alice"},
        "mailbox": "INBOX",
        "events": [
            {"name": "FlagsClear", "uid": 1, "uid_validity": UIDV, "flags_old": ["\\Recent"]},
            {"name": "FlagsSet", "uid": 1, "uid_validity": UIDV, "flags": ["\\Seen"]},
            {"name": "MessageRead", "uid": 1, "uid_validity": UIDV},
        ],
    }
    assert post(daemon.url, seen) == 202
    log = daemon.wait_for_log("lua-test: end true")
    log = daemon.wait_for_log("dlog: Called end_txn push_notification plugin hook.")
    assert (
        f"dovecot_lua_notify_event_flags_set failed: {script}:10: attempt to index a nil value (local 'missing')" in log
    )
    assert "lua-test: read uid=1.0 url=http://127.0.0.1:9/push" in log
    assert "dlog: FlagsSet: Seen flag set" in log
    assert "dlog: MessageRead: Message was flagged as seen" in log
    assert "Traceback" not in log
