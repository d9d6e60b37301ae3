"""The luarocks modules scripts ``require``, provided by the driver with the behaviour of the
real ones (lua-cjson 2.1, json-lua, LuaSocket 3.0)."""

from __future__ import annotations

import asyncio
import json

from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_lua import LuaDriver


def start(write_script, body: str) -> None:
    """Run ``body`` at load time, with ``out(v)`` logging ``CALL v``."""
    script = "local function out(v) dovecot.i_info('CALL ' .. tostring(v)) end\n" + body

    async def run() -> None:
        async with DriverHarness(LuaDriver, {"file": write_script(script)}):
            pass

    asyncio.run(run())


def test_cjson_encodes_numbers_like_lua_cjson(write_script, lua_calls) -> None:
    start(
        write_script,
        'local cjson = require "cjson"\n'
        "out(cjson.encode({uid = 42.0}))\n"
        "out(cjson.encode({1.5, 2, 'a/b', true, cjson.null}))\n"
        "out(cjson.encode({}))\n"
        "out(cjson.encode('ä\\n'))\n",
    )
    assert lua_calls() == ['{"uid":42}', '[1.5,2,"a\\/b",true,null]', "{}", '"ä\\n"']


def test_cjson_decodes_to_floats_and_null(write_script, lua_calls) -> None:
    start(
        write_script,
        'local cjson = require "cjson"\n'
        'local t = cjson.decode(\'{"a": [1, 2.5], "b": null, "c": "x"}\')\n'
        "out(math.type(t.a[1]) .. ' ' .. t.a[1] .. ' ' .. t.a[2] .. ' ' .. tostring(t.b == cjson.null) .. ' ' .. t.c)\n"
        "local ok, err = pcall(cjson.decode, '{bad')\nout(ok)\n"
        "local safe = require 'cjson.safe'\nout(select(2, safe.decode('{bad')) ~= nil)\n",
    )
    assert lua_calls() == ["float 1.0 2.5 true x", "false", "true"]


def test_cjson_rejects_what_lua_cjson_rejects(write_script, lua_calls) -> None:
    start(
        write_script,
        'local cjson = require "cjson"\n'
        "out(select(2, pcall(cjson.encode, {[{}] = 1})))\n"
        "out(select(2, pcall(cjson.encode, {[1] = 1, [100] = 2})))\n",
    )
    calls = lua_calls()
    assert calls[0].endswith("Cannot serialise table: table key must be a number or string")
    assert calls[1].endswith("Cannot serialise table: excessively sparse array")


def test_json_lua_encodes_with_sorted_keys_and_lua_numbers(write_script, lua_calls) -> None:
    start(
        write_script,
        'local JSON = require "JSON"\n'
        "out(JSON:encode({b = 1, a = 42.0, c = {}}))\n"
        'local t = JSON:decode(\'{"n": 7, "x": null, "l": [1, "two"]}\')\n'
        "out(math.type(t.n) .. ' ' .. tostring(t.x) .. ' ' .. t.l[2])\n",
    )
    assert lua_calls() == ['{"a":42.0,"b":1,"c":[]}', "integer nil two"]


def test_socket_url_matches_luasocket(write_script, lua_calls) -> None:
    start(
        write_script,
        'local url = require "socket.url"\n'
        "out(url.escape('Bob <bob@example.org> ä_1'))\n"
        "out(url.unescape('a%20b%2Fc'))\n"
        "local p = url.parse('http://u:pw@example.org:8080/a/b?x=1#f')\n"
        "out(p.scheme .. ' ' .. p.host .. ' ' .. p.port .. ' ' .. p.user .. ' ' .. p.password .. ' ' .. p.path"
        " .. ' ' .. p.query .. ' ' .. p.fragment)\n"
        "out(url.build(p))\n",
    )
    assert lua_calls() == [
        "Bob%20%3cbob%40example%2eorg%3e%20%c3%a4_1",
        "a b/c",
        "http example.org 8080 u pw /a/b x=1 f",
        "http://u:pw@example.org:8080/a/b?x=1#f",
    ]


async def run_at_end_txn(write_script, body: str) -> None:
    """Run ``body`` (after ``local http = require "socket.http"``) in a script's end_txn."""
    script = (
        'local http = require "socket.http"\n'
        "function dovecot_lua_notify_begin_txn(user) return {} end\n"
        "function dovecot_lua_notify_event_message_new(ctx, e) end\n"
        f"function dovecot_lua_notify_end_txn(ctx, success)\n{body}\nend\n"
    )
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))


async def test_socket_http_sends_luasockets_headers(write_script, lua_calls, sink) -> None:
    await run_at_end_txn(
        write_script,
        f'  local body, code, headers, status = http.request("{sink.url}", "a=1")\n'
        '  dovecot.i_info("CALL " .. body .. " " .. math.type(code) .. " " .. status)',
    )
    assert lua_calls() == ["ok integer HTTP/1.1 200 OK"]
    headers = dict(sink.requests[0]["headers"])
    assert headers["User-Agent"] == "LuaSocket 3.0.0"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["TE"] == "trailers"
    assert "Date" not in headers


async def test_socket_http_sends_basic_credentials_from_the_urls_userinfo(write_script, lua_calls, sink) -> None:
    url = sink.url.replace("http://", "http://Bearer:t0k%40en@")
    await run_at_end_txn(
        write_script,
        f'  http.request{{url = "{url}", headers = {{["x-custom"] = "1", ["content-type"] = "text/plain"}}}}\n'
        '  dovecot.i_info("CALL " .. require("socket.headers").canonic["te"])',
    )
    assert lua_calls() == ["TE"]
    headers = sink.requests[0]["headers"]
    assert ("Authorization", "Basic QmVhcmVyOnQwa0Blbg==") in headers  # Bearer:t0k@en, as LuaSocket
    assert ("Content-Type", "text/plain") in headers and ("x-custom", "1") in headers  # as LuaSocket writes them


async def test_socket_http_get_and_post_against_a_real_endpoint(write_script, lua_calls, sink) -> None:
    sink.reply = '{"ok": true}'
    script = (
        'local http = require "socket.http"\nlocal ltn12 = require "ltn12"\nlocal cjson = require "cjson"\n'
        "function dovecot_lua_notify_begin_txn(user) return {} end\n"
        "function dovecot_lua_notify_event_message_new(ctx, e) end\n"
        "function dovecot_lua_notify_end_txn(ctx, success)\n"
        f'  local body, code, headers = http.request("{sink.url}?q=1")\n'
        '  dovecot.i_info("CALL " .. code .. " " .. tostring(cjson.decode(body).ok) .. " " .. headers["content-type"])\n'
        "  local out = {}\n"
        f'  local ok, code2 = http.request{{url = "{sink.url}", method = "PUT",'
        " source = ltn12.source.string(cjson.encode({uid = e})), sink = ltn12.sink.table(out),"
        ' headers = {["content-type"] = "application/json", ["content-length"] = 2}}\n'
        '  dovecot.i_info("CALL " .. ok .. " " .. code2 .. " " .. table.concat(out))\n'
        '  local r, err = http.request("http://127.0.0.1:1/")\n'
        '  dovecot.i_info("CALL " .. tostring(r) .. " " .. err)\n'
        "end\n"
    )
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    assert lua_calls() == [
        "200 true text/plain; charset=utf-8",
        '1 200 {"ok": true}',
        "nil connection refused",
    ]
    assert [(r["method"], r["path"], r["body"]) for r in sink.requests] == [
        ("GET", "/push?q=1", ""),
        ("PUT", "/push", "{}"),
    ]
    assert json.loads(sink.requests[1]["body"]) == {}


async def test_dovecot_http_client_request_response(write_script, lua_calls, sink) -> None:
    sink.status = 404
    script = (
        "function dovecot_lua_notify_begin_txn(user) return {} end\n"
        "function dovecot_lua_notify_event_message_new(ctx, e) end\n"
        "function dovecot_lua_notify_end_txn(ctx, success)\n"
        "  local client = dovecot.http.client({user_agent = 'pn-test', request_timeout_msecs = 2000})\n"
        f'  local rq = client:request({{url = "{sink.url}", method = "POST"}})\n'
        '  rq:add_header("X-Token", "t1")\n  rq:add_header("X-Drop", "d")\n  rq:remove_header("x-drop")\n'
        '  rq:set_payload("hello")\n  local r = rq:submit()\n'
        '  dovecot.i_info("CALL " .. r:status() .. " " .. r:reason() .. " " .. r:payload() .. " [" .. r:header("X-None") .. "]")\n'
        '  local bad = client:request({url = "http://127.0.0.1:1/"}):submit()\n'
        '  dovecot.i_info("CALL " .. bad:status())\n'
        '  local ok, err = pcall(client.request, client, {method = "GET"})\n'
        '  dovecot.i_info("CALL " .. err)\n'
        "end\n"
    )
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    calls = lua_calls()
    assert calls[:2] == ["404 Not Found ok []", "9003"]
    assert calls[2].endswith("cannot create request: url not specified")
    (request,) = sink.requests
    headers = dict(request["headers"])
    assert (request["method"], request["body"], headers["X-Token"], headers["User-Agent"]) == (
        "POST",
        "hello",
        "t1",
        "pn-test",
    )
    assert "X-Drop" not in headers
    # the order a running Dovecot 2.3.19 sends them in
    assert [name for name, _ in request["headers"]] == [
        "Host",
        "Date",
        "User-Agent",
        "Expect",
        "Content-Length",
        "Connection",
        "X-Token",
    ]


async def test_binary_bodies_cross_unchanged(write_script, lua_calls, sink) -> None:
    sink.reply = b"\xff\x00ok"
    script = (
        "function dovecot_lua_notify_begin_txn(user) return {} end\n"
        "function dovecot_lua_notify_event_message_new(ctx, e) end\n"
        "function dovecot_lua_notify_end_txn(ctx, success)\n"
        f'  local rq = dovecot.http.client({{}}):request({{url = "{sink.url}", method = "PUT"}})\n'
        '  rq:set_payload("\\255\\0abc")\n'
        "  local p = rq:submit():payload()\n"
        '  dovecot.i_info("CALL " .. #p .. " " .. string.byte(p, 1) .. " " .. string.byte(p, 2))\n'
        "end\n"
    )
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    assert sink.requests[0]["raw"] == b"\xff\x00abc"
    assert lua_calls() == ["4 255 0"]
