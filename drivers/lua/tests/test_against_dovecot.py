"""The same official script, run by a real Dovecot 2.3.19 (its own Lua driver, Debian's
LuaSocket) on an LMTP delivery and by this driver on the equivalent transaction, sends the same
requests."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from conftest import SCRIPTS, USERNAME, skip_without_dovecot
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.testing.dovecot import Dovecot
from push_notification.transaction import User

LUASOCKET = Path("/usr/share/lua/5.4/socket/url.lua")
pytestmark = [
    skip_without_dovecot(),
    pytest.mark.skipif(
        not LUASOCKET.exists() and os.environ.get("CI") != "true",
        reason="Dovecot's own Lua needs Debian's lua-socket for the official scripts (apt-get install lua-socket)",
    ),
]

MESSAGE = (
    "From: =?utf-8?q?=C3=84?= <alice@barfoo.org>\r\n"
    'To: "Multi, Part" <bob@example.com>\r\n'
    "Subject: Test =?utf-8?q?p=C3=A4iv=C3=A4=C3=A4?=\r\n"
    "Date: Sat, 18 May 2024 04:40:00 +0200\r\n"
    "Message-ID: <m1@example.org>\r\n"
    "\r\n"
    "Hey guys\r\n"
    "This is only a test\r\n"
)

#: What the Dovecot bridge sends for that delivery.
DELIVERY = make_transaction(
    make_event(
        "MessageNew",
        uid=1,
        subject="Test =?utf-8?q?p=C3=A4iv=C3=A4=C3=A4?=",
        subject_utf8="Test päivää",
        from_address="alice@barfoo.org",
        from_display_name="Ä",
        to_address="bob@example.com",
        to_display_name="Multi, Part",
        date=1716000000,
        tz=120,
        snippet="Hey guys This is only a test",
        message_id="<m1@example.org>",
        **{"from": "=?utf-8?q?=C3=84?= <alice@barfoo.org>", "to": '"Multi, Part" <bob@example.com>'},
    ),
    user=User(username=USERNAME, service="lmtp"),
)


async def dovecot_requests(script: str, sink) -> list[dict]:
    """Run ``script`` in a real Dovecot on one LMTP delivery; the requests it sent."""
    server = Dovecot(users=(USERNAME,), plugin={"push_lua_url": sink.url})
    script_path = server.root / "push.lua"
    shutil.copy(SCRIPTS / script, script_path)
    script_path.chmod(0o644)
    server.plugin["push_notification_driver"] = f"lua:file={script_path}"
    with server:
        await asyncio.to_thread(server.deliver, MESSAGE, USERNAME)
        for _ in range(200):
            if sink.requests:
                break
            await asyncio.sleep(0.05)
        assert sink.requests, f"Dovecot sent nothing:\n{server.log_text()}"
        assert "Error" not in server.log_text(), server.log_text()
    requests = list(sink.requests)
    sink.requests.clear()
    return requests


async def our_requests(script: str, sink) -> list[dict]:
    settings = {"file": str(SCRIPTS / script)}
    async with DriverHarness("lua", settings, plugin_env={"push_lua_url": sink.url}) as harness:
        await harness.send(DELIVERY)
    return list(sink.requests)


async def test_dovecot_http_client_example_sends_what_dovecot_sends(sink) -> None:
    theirs = await dovecot_requests("example_23_http_client.lua", sink)
    ours = await our_requests("example_23_http_client.lua", sink)
    assert [(r["method"], r["path"], r["raw"]) for r in ours] == [(r["method"], r["path"], r["raw"]) for r in theirs]
    # lib-http's header order; only the Date value differs
    assert [name for name, _ in ours[0]["headers"]] == [name for name, _ in theirs[0]["headers"]]
    assert [(n, v) for n, v in ours[0]["headers"] if n not in ("Date", "Host")] == [
        (n, v) for n, v in theirs[0]["headers"] if n not in ("Date", "Host")
    ]


async def test_socket_http_example_sends_what_dovecot_sends(sink) -> None:
    theirs = await dovecot_requests("example_23_socket_http.lua", sink)
    ours = await our_requests("example_23_socket_http.lua", sink)
    assert [(r["method"], r["path"], r["raw"]) for r in ours] == [(r["method"], r["path"], r["raw"]) for r in theirs]
    # LuaSocket sends its headers in hash order: compare them as a set
    assert dict(ours[0]["headers"]) == dict(theirs[0]["headers"])


async def test_event_code_example_sends_what_dovecot_sends(sink) -> None:
    theirs = await dovecot_requests("example_23_event_code.lua", sink)
    # Dovecot's second request reports the mailbox status it saw; the bridge's snapshot of the
    # same moment gives our run those numbers.
    state = dict(pair.split("=") for pair in theirs[-1]["body"].split("&"))
    status = {k: int(float(state[k])) for k in ("messages", "recent", "unseen")}
    snapshot = make_transaction(*DELIVERY.events, user=DELIVERY.user, status={**status, "uidvalidity": 1, "uidnext": 2})
    async with DriverHarness("lua", {"file": str(SCRIPTS / "example_23_event_code.lua")},
                             plugin_env={"push_lua_url": sink.url}) as harness:  # fmt: skip
        await harness.send(snapshot)
    ours = list(sink.requests)
    assert [r["raw"] for r in ours] == [r["raw"] for r in theirs]
    assert len(ours) == 2
    assert [[n for n, _ in r["headers"]] for r in ours] == [[n for n, _ in r["headers"]] for r in theirs]
