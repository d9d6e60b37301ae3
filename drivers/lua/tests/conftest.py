"""Shared test helpers: a real HTTP endpoint on 127.0.0.1, scripts written to tmp files, and
a recorder script that logs every call a Lua script receives."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

SCRIPTS = Path(__file__).parent / "scripts"
#: The mail user of the tests that run a real Dovecot.
USERNAME = "alice@example.com"


def skip_without_dovecot() -> pytest.MarkDecorator:
    """Skip where Dovecot is not installed, with how to install it; under CI=true never skip."""
    from push_notification.testing.dovecot import DovecotUnavailable, dovecot_binary

    try:
        dovecot_binary()
        missing = None
    except DovecotUnavailable as exc:
        missing = str(exc)
    return pytest.mark.skipif(missing is not None and os.environ.get("CI") != "true", reason=missing or "")


#: Lua: a deterministic dump of any value, numbers via tostring() so floats show as 42.0.
SERIALIZE = r"""
local function ser(v)
  if type(v) == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. ser(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end
"""

#: A script with every handler; each call is logged as "CALL <what> <table>".
RECORDER = (
    SERIALIZE
    + r"""
function dovecot_lua_notify_begin_txn(user)
  dovecot.i_info("CALL begin_txn " .. user.username)
  return {user = user}
end
function dovecot_lua_notify_end_txn(ctx, success)
  dovecot.i_info("CALL end_txn " .. tostring(success))
end
"""
    + "".join(
        f'function dovecot_lua_notify_event_{name}(ctx, event)\n  dovecot.i_info("CALL {name} " .. ser(event))\nend\n'
        for name in (
            "flags_clear",
            "flags_set",
            "mailbox_create",
            "mailbox_delete",
            "mailbox_rename",
            "mailbox_subscribe",
            "mailbox_unsubscribe",
            "message_append",
            "message_expunge",
            "message_new",
            "message_read",
            "message_trash",
        )
    )
)


@pytest.fixture
def write_script(tmp_path: Path) -> Callable[[str], str]:
    """Write Lua source to a file and return its path."""
    counter = iter(range(1000))

    def write(source: str) -> str:
        path = tmp_path / f"script{next(counter)}.lua"
        path.write_text(source)
        return str(path)

    return write


@pytest.fixture
def lua_calls(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The "CALL ..." lines scripts logged, in order."""
    caplog.set_level(logging.DEBUG)

    def calls() -> list[str]:
        return [r.getMessage()[5:] for r in caplog.records if r.getMessage().startswith("CALL ")]

    return calls


@dataclass
class Sink:
    """A real HTTP endpoint recording each request; ``delay`` slows every answer."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    reply: str | bytes = "ok"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    record = Sink()

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        record.requests.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": list(request.headers.items()),
                "body": raw.decode("utf-8", errors="replace"),
                "raw": raw,
            }
        )
        if record.delay:
            await asyncio.sleep(record.delay)
        if isinstance(record.reply, bytes):
            return web.Response(status=record.status, body=record.reply)
        return web.Response(status=record.status, text=record.reply)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    record.url = f"http://127.0.0.1:{port}/push"
    yield record
    await runner.cleanup()
