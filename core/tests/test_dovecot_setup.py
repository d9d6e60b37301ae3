"""dovecot-config installs the bridge script and prints a snippet Dovecot accepts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from push_notification.dovecot.bytecode import compile_lua
from push_notification.dovecot.setup import (
    BYTECODE_NAME,
    FALLBACK_NAME,
    HTTP_BYTECODE_NAME,
    HTTP_SOURCE_NAME,
    SCRIPT_NAME,
    SOURCE_NAME,
    dovecot_config,
    fallback_source,
    install_script,
    loader_source,
    script_source,
)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(dovecot_config, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_installs_the_loader_the_source_and_the_bytecode_readable_by_every_mail_user(tmp_path: Path) -> None:
    code, out, _ = run("--install-dir", str(tmp_path / "share"), "--version", "2.3")
    share = tmp_path / "share"
    installed = share / SCRIPT_NAME
    assert code == 0
    assert installed.read_text() == loader_source()
    assert (share / SOURCE_NAME).read_text() == script_source()
    assert (share / FALLBACK_NAME).read_text() == fallback_source()
    if compile_lua("return 1", "probe") is not None:  # a Lua library (Dovecot's mail_lua links one) is here
        assert (share / BYTECODE_NAME).read_bytes().startswith(b"\x1bLua")
        assert (share / HTTP_BYTECODE_NAME).read_bytes().startswith(b"\x1bLua")
    assert "return function(id, body)" in (share / HTTP_SOURCE_NAME).read_text()
    for name in (SCRIPT_NAME, SOURCE_NAME, FALLBACK_NAME, BYTECODE_NAME, HTTP_SOURCE_NAME, HTTP_BYTECODE_NAME):
        if not (share / name).exists():
            continue
        assert stat.S_IMODE((share / name).stat().st_mode) == 0o644
    assert f"push_notification_driver = lua:file={installed}" in out


def test_without_a_lua_library_a_stale_bytecode_file_is_removed_so_the_source_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / BYTECODE_NAME).write_bytes(b"\x1bLua old")
    monkeypatch.setattr("push_notification.dovecot.setup.compile_lua", lambda source, name: None)
    install_script(tmp_path)
    assert not (tmp_path / BYTECODE_NAME).exists()
    assert not (tmp_path / HTTP_BYTECODE_NAME).exists()
    assert (tmp_path / SOURCE_NAME).read_text() == script_source()


def test_spool_transport_for_2_3_loads_the_plugins_and_the_bridge_for_every_service_that_changes_mail(
    tmp_path: Path,
) -> None:
    code, out, _ = run(
        "--no-install", "--version", "2.3", "--spool", "/srv/spool/", "--install-dir", "/opt/pn", "--mail-user", "mail"
    )
    assert code == 0
    for protocol in ("lmtp", "lda", "imap", "pop3", "doveadm"):
        assert (
            f"protocol {protocol} {{\n  mail_plugins = $mail_plugins notify push_notification mail_lua"
            " push_notification_lua\n  plugin {\n"
            f"    push_notification_driver = lua:file=/opt/pn/{SCRIPT_NAME}\n  }}\n}}\n" in out
        )
    assert "\nmail_plugins" not in out  # nothing global: services that change no mail never see the driver
    assert "push_notification_bridge_transport = spool" in out
    assert "push_notification_bridge_spool = /srv/spool\n" in out
    assert "install -d -o mail -g mail -m 2770 /srv/spool /srv/spool/tmp /srv/spool/new /srv/spool/bad" in out
    assert "spool_dir = /srv/spool" in out


def test_http_transport_for_2_4_puts_url_and_token_in_lua_settings() -> None:
    code, out, err = run(
        "--no-install", "--version", "2.4", "--transport", "http", "--url", "http://10.0.0.5:8425/v1/transactions",
        "--token", "tkn", "--mail-user", "mail",
    )  # fmt: skip
    assert code == 0
    assert err == ""
    assert "push_notification bridge {\n  driver = lua\n  lua_file = " in out
    assert "    transport = http\n" in out
    assert "    url = http://10.0.0.5:8425/v1/transactions\n" in out
    assert "    token = tkn\n" in out
    # one global list: 2.4 adds a filter's mail_plugins to it, so it reaches every service
    assert "\nmail_plugins {\n  notify = yes\n  push_notification = yes\n  mail_lua = yes\n" in out
    assert "protocol " not in out


def test_a_host_name_in_the_url_draws_a_warning_about_2_3_19_dns() -> None:
    code, _, err = run("--no-install", "--transport", "http", "--url", "http://push.example:8425/v1/transactions")
    assert code == 0
    assert "use the daemon's IP address" in err


def test_a_bad_url_is_one_line_naming_the_option() -> None:
    code, _, err = run("--no-install", "--transport", "http", "--url", "ftp://x")
    assert code == 2
    assert "--url" in err and "http:// or https:// URL" in err
    assert "Traceback" not in err


def test_an_unwritable_install_dir_is_one_line_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run("--install-dir", str(blocker / "sub"))
    assert code == 1
    assert "cannot install the bridge script" in err and "--install-dir" in err
    assert len(err.strip().splitlines()) == 1


def test_no_status_turns_the_snapshot_off() -> None:
    _, out, _ = run("--no-install", "--version", "2.3", "--no-status")
    assert "push_notification_bridge_status = no" in out


def test_no_metadata_turns_the_metadata_read_off() -> None:
    _, out, _ = run("--no-install", "--version", "2.4", "--no-metadata")
    assert "    metadata = no\n" in out
    _, default, _ = run("--no-install", "--version", "2.3")
    assert "push_notification_bridge_metadata" not in default  # the script's default: read it
