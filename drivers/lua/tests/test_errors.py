"""Script mistakes: start-up errors are one line naming the script; runtime errors are logged
with the script's file and line and the transaction goes on."""

from __future__ import annotations

import asyncio

import pytest
from conftest import RECORDER
from push_notification.errors import ConfigError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_lua import LuaDriver


def start(settings, plugin_env=None) -> None:
    """Start the instance (main chunk, ``script_init``) and stop it, as the daemon does."""

    async def run() -> None:
        async with DriverHarness(LuaDriver, settings, plugin_env=plugin_env):
            pass

    asyncio.run(run())


def test_syntax_error_is_a_start_up_error_with_file_and_line(write_script) -> None:
    path = write_script("function dovecot_lua_notify_begin_txn(user)\n  return {\nend\n")
    with pytest.raises(ConfigError) as info:
        start({"file": path})
    message = str(info.value)
    assert f"push_notification test: lua script {path}: syntax error: {path}:3:" in message
    assert "\n" not in message


def test_error_in_the_main_chunk_is_a_start_up_error(write_script) -> None:
    path = write_script("local x = nil\nx.y = 1\n")
    with pytest.raises(ConfigError, match=rf"failed to run: {path}:2: attempt to index a nil value"):
        start({"file": path})


def test_unavailable_module_is_a_start_up_error_naming_it(write_script) -> None:
    path = write_script('local cjson = require "cjson"\n-- require "commented"\nlocal redis = require("redis")\n')
    with pytest.raises(ConfigError) as info:
        # found when the instance is built, before the script runs (so check-config reports it)
        DriverHarness(LuaDriver, {"file": path})
    assert f"{path}:3: module 'redis' is not available: the lua driver provides JSON, cjson," in str(info.value)


def test_pure_lua_modules_on_package_path_load(write_script, lua_calls, tmp_path) -> None:
    (tmp_path / "helper.lua").write_text("return {greet = function() return 'hi' end}\n")
    script = f'package.path = "{tmp_path}/?.lua;" .. package.path\n'
    script += 'local helper = require "helper"\ndovecot.i_info("CALL " .. helper.greet())\n'
    start({"file": write_script(script)})
    assert lua_calls() == ["hi"]


def test_script_init_must_not_fail(write_script) -> None:
    with pytest.raises(ConfigError, match=r"Script init failed: script_init\(\) returned 1, expected 0"):
        start({"file": write_script("function script_init() return 1 end\n")})
    with pytest.raises(ConfigError, match=r"script_init\(\) returned non-number"):
        start({"file": write_script("function script_init() return 'ok' end\n")})
    with pytest.raises(ConfigError, match=r"script_init\(\) failed: .*:1: boom"):
        start({"file": write_script("function script_init() error('boom') end\n")})


def test_script_init_gets_the_lua_settings_table(write_script, lua_calls) -> None:
    script = 'function script_init(settings) dovecot.i_info("CALL " .. settings.push_lua_url) end\n'
    start({"file": write_script(script), "settings": {"push_lua_url": "http://x/"}})
    assert lua_calls() == ["http://x/"]


def test_no_script_configured_is_dovecots_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="No file in config and no push_notification_lua_script_file set"):
        start({})
    with pytest.raises(ConfigError, match=r"setting 'file': Lua script /nope.lua does not exist"):
        start({"file": "/nope.lua"})


def test_23_script_file_setting_wins_over_file_argument(write_script, lua_calls) -> None:
    chosen = write_script('dovecot.i_info("CALL chosen")\n')
    other = write_script('dovecot.i_info("CALL other")\n')
    start({"file": other}, plugin_env={"push_notification_lua_script_file": chosen})
    assert lua_calls() == ["chosen"]


def test_unknown_setting_is_rejected(write_script) -> None:
    with pytest.raises(ConfigError, match="setting 'flie': unknown setting"):
        start({"file": write_script(""), "flie": "x"})


def test_doveadm_settings_come_together(write_script) -> None:
    with pytest.raises(ConfigError, match="setting 'doveadm_api_key': doveadm_url and doveadm_api_key"):
        start({"file": write_script(""), "doveadm_url": "http://127.0.0.1:1"})


async def test_runtime_error_is_logged_with_file_and_line_and_the_transaction_goes_on(
    write_script, lua_calls, caplog
) -> None:
    script = RECORDER + (
        "function dovecot_lua_notify_event_flags_set(ctx, event)\n  local missing = nil\n  return missing.field\nend\n"
    )
    path = write_script(script)
    txn = make_transaction(make_event("FlagsSet", uid=1, flags=["\\Seen"]), make_event("MessageRead", uid=1))
    async with DriverHarness(LuaDriver, {"file": path}) as harness:
        await harness.send(txn, txn)
    assert [c.split(" ")[0] for c in lua_calls()] == ["begin_txn", "message_read", "end_txn"] * 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    line = len(script.splitlines()) - 1
    assert (
        errors
        == [
            f"push_notification test: dovecot_lua_notify_event_flags_set failed: {path}:{line}:"
            " attempt to index a nil value (local 'missing')"
        ]
        * 2
    )


async def test_error_in_begin_txn_skips_the_transaction(write_script, lua_calls, caplog) -> None:
    script = RECORDER + "function dovecot_lua_notify_begin_txn(user) error('no backend') end\n"
    line = len(script.splitlines())
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    assert lua_calls() == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"push_notification test: dovecot_lua_notify_begin_txn failed: {harness.plugin.script}:{line}: no backend"
    ]


@pytest.mark.parametrize(
    "expression",
    ["os.execute", "io.popen", "os.exit", "package.loadlib", "python", "package.loaded.python", "debug.getregistry"],
)
def test_sandbox_removes_process_spawning_by_default(expression, write_script, lua_calls) -> None:
    start({"file": write_script(f'dovecot.i_info("CALL " .. tostring({expression}))\n')})
    assert lua_calls() == ["nil"]


def test_sandbox_no_restores_os_execute(write_script, lua_calls, tmp_path) -> None:
    marker = tmp_path / "ran"
    script = f'dovecot.i_info("CALL " .. tostring(os.execute("touch {marker}")))\n'
    start({"file": write_script(script), "sandbox": "no"})
    assert lua_calls() == ["true"]
    assert marker.exists()


def test_scripts_cannot_reach_python_internals(write_script, lua_calls) -> None:
    script = (
        "local ok, err = pcall(function() return dovecot.i_info.__globals end)\n"
        'dovecot.i_info("CALL " .. tostring(ok))\n'
    )
    start({"file": write_script(script)})
    assert lua_calls() == ["false"]


def test_luajit_runtime_runs_the_same_script(write_script, lua_calls) -> None:
    pytest.importorskip("lupa.luajit21")
    start({"file": write_script('dovecot.i_info("CALL " .. _VERSION)\n'), "runtime": "luajit"})
    assert lua_calls() == ["Lua 5.1"]


async def test_script_deinit_runs_when_the_instance_stops(write_script, lua_calls) -> None:
    script = 'function script_deinit() dovecot.i_info("CALL deinit") end\n'
    async with DriverHarness(LuaDriver, {"file": write_script(script)}):
        assert lua_calls() == []
    assert lua_calls() == ["deinit"]


def test_unknown_runtime_is_rejected(write_script) -> None:
    with pytest.raises(ConfigError, match="setting 'runtime': unknown Lua runtime 'lua53'; use lua54 or luajit"):
        start({"file": write_script(""), "runtime": "lua53"})


async def test_require_of_an_unavailable_module_in_a_handler_is_logged_naming_it(write_script, caplog) -> None:
    # a computed name escapes the start-up check; the runtime error still names the module
    script = RECORDER + "function dovecot_lua_notify_event_message_new(ctx, e) local m = require('re' .. 'dis') end\n"
    async with DriverHarness(LuaDriver, {"file": write_script(script)}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "dovecot_lua_notify_event_message_new failed:" in error
    assert "module 'redis' is not available: the lua driver provides JSON, cjson" in error
