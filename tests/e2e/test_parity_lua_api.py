"""The Lua API a published script leans on, as Dovecot 2.3.19 and 2.4 give it and as our Lua
driver does: one script (lua/api.lua) runs in Dovecot's own Lua driver and, through the bridge, in
ours, in the same test, on deliveries and an expunge.

Both must see the same `dovecot` (functions behind its metatable's ``__index``), the same user
and mailbox objects (``item`` userdata, metatable names), the same ``mbox:sync()`` then
``mbox:status()``; send the same bytes with LuaSocket to a URL carrying credentials (only the
port in ``Host`` masked; LuaSocket writes headers in hash order, so they are compared as a set of
exact lines); and write the same values into Dovecot's METADATA (ours through the doveadm API).
Dovecot logs "'dovecot_lua_notify_event_x' is not a function" for each event the bridge
registered that the script has no handler for (a Dovecot bug our driver does not copy).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BridgedDovecot, dovecot_missing, e2e_daemon, need, require_driver, wait_until
from push_notification.testing.dovecot import Dovecot
from push_notification.testing.dovecot24 import dovecot24_missing
from raw_http import RawRequest, raw_recorder

require_driver("lua")

SCRIPT = Path(__file__).parent / "lua" / "api.lua"
ALICE = "alice@example.com"
USERINFO = "Bearer:t0k%40en"  # LuaSocket unescapes the password: "t0k@en"
MAIL = "From: bob@example.org\r\nSubject: {}\r\n\r\nbody\r\n"


def lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def comparable(request: RawRequest) -> tuple[bytes, list[bytes], bytes]:
    headers = sorted(re.sub(rb"^(?i:host): 127\.0\.0\.1:\d+$", b"Host: 127.0.0.1:PORT", h) for h in request.headers)
    return request.request_line, headers, request.body


def dovecot_running_the_script(version: str, url: str) -> tuple[Dovecot, Path]:
    """A bridged Dovecot ``version`` with the script in its own Lua driver; where it writes."""
    dovecot: Dovecot
    if version == "2.3":
        need(dovecot_missing(), "Dovecot")
        dovecot = BridgedDovecot(doveadm_http=True)
    else:
        need(dovecot24_missing(), "Dovecot 2.4")
        from dovecot24_support import BridgedDovecot24

        dovecot = BridgedDovecot24(doveadm_http=True)
    out = dovecot.root / "out"  # writable by the mail processes' account
    out.mkdir()
    dovecot.chown_for_mail(out)
    script = dovecot.root / "share" / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    theirs_path = out / "dovecot.jsonl"
    settings = {"api_side": "dovecot", "api_out": dovecot.conf_path(theirs_path)}
    if version == "2.3":
        settings["api_url"] = url.replace("%", "%%")  # 2.3 %-expands plugin settings
        dovecot.plugin.update({"push_notification_driver2": f"lua:file={script}", **settings})
    else:
        settings["api_url"] = url
        lua_settings = "".join(f"    {key} = {value}\n" for key, value in settings.items())
        dovecot.extra_config += (
            f"push_notification api {{\n  driver = lua\n  lua_file = {dovecot.conf_path(script)}\n"
            f"  lua_settings {{\n{lua_settings}  }}\n}}\n"
        )
    return dovecot, theirs_path


@pytest.mark.parametrize("version", ["2.3", "2.4"])
def test_a_script_sees_and_sends_what_it_sees_and_sends_in_dovecot(tmp_path: Path, version: str) -> None:
    with raw_recorder() as theirs_http, raw_recorder() as ours_http:
        dovecot, theirs_path = dovecot_running_the_script(version, theirs_http.url("/push", USERINFO))
        ours_path = tmp_path / "ours.jsonl"
        daemon = e2e_daemon(
            tmp_path,
            f"push_notification api {{\n  driver = lua\n  lua_file = {SCRIPT}\n"
            "  doveadm_url = DOVEADM_URL\n  doveadm_api_key = DOVEADM_KEY\n"
            f"  lua_settings {{\n    api_side = ours\n    api_out = {ours_path}\n"
            f"    api_url = {ours_http.url('/push', USERINFO)}\n  }}\n}}\nspool_dir = {dovecot.spool}\n",  # type: ignore[attr-defined]
        )
        with dovecot:
            assert dovecot.doveadm_api_key is not None
            config = daemon.config.read_text().replace("DOVEADM_URL", dovecot.doveadm_http_url)
            daemon.config.write_text(config.replace("DOVEADM_KEY", dovecot.doveadm_api_key))
            with daemon:

                def step(action: Any) -> None:
                    action()
                    count = len(lines(theirs_path))
                    assert wait_until(lambda: len(lines(ours_path)) >= count, 15), daemon.log()[-3000:]

                step(lambda: dovecot.deliver(MAIL.format("one"), ALICE))
                step(lambda: dovecot.deliver(MAIL.format("two"), ALICE))
                imap = dovecot.imap(ALICE)
                imap.select("INBOX")
                step(lambda: (imap.uid("STORE", "1", "+FLAGS", r"(\Deleted)"), imap.expunge()))
                imap.logout()
                assert wait_until(lambda: len(ours_http.requests) >= len(theirs_http.requests), 10)
                metadata = {
                    (side, where): dovecot.doveadm(
                        "mailbox", "metadata", "get", "-u", ALICE, *where, f"/private/pn-test/{side}"
                    ).stdout.strip()
                    for side in ("dovecot", "ours")
                    for where in (("-s", ""), ("INBOX",))
                }
                errors = dovecot.log_lines(r"(Error|Fatal|Panic):(?!.*' is not a function)")
                daemon_log = daemon.log()
                theirs, ours = lines(theirs_path), lines(ours_path)
    assert [t["event"] for t in theirs] == ["MessageNew", "MessageNew", "MessageExpunge"]
    assert ours == theirs
    assert theirs[0] == {
        "event": "MessageNew",
        "dovecot_index_is_its_metatable": True,
        "dovecot_metatable_name": "dovecot",
        "i_info_raw": "nil",
        "i_info_via_index": "function",
        "storage_raw": "table",
        "http_raw": "table",
        "user_item": "userdata",
        "user_metatable_name": "struct mail_user",
        "mailbox_item": "userdata",
        "mailbox_metatable_name": "struct mailbox",
        "messages": 1,
        "unseen": 1,
        "uidnext": 2,
    }
    assert (theirs[-1]["messages"], theirs[-1]["uidnext"]) == (1, 3)  # after the expunge
    assert len(theirs_http.requests) == 3
    assert [comparable(r) for r in ours_http.requests] == [comparable(r) for r in theirs_http.requests]
    assert theirs_http.requests[0].header("authorization") == b"Basic QmVhcmVyOnQwa0Blbg=="  # Bearer:t0k@en
    assert metadata[("ours", ("-s", ""))] == metadata[("dovecot", ("-s", ""))] == "messages=1"
    assert metadata[("ours", ("INBOX",))] == metadata[("dovecot", ("INBOX",))] == "uidnext=3"
    assert errors == []
    assert not re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", daemon_log), daemon_log[-3000:]
