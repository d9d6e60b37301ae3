"""Every config mistake is one ConfigError line naming file, line, the thing and the fix."""

from __future__ import annotations

import os
from pathlib import Path
from textwrap import dedent

import pytest
from push_notification.config import load_config, parse_config
from push_notification.errors import ConfigError

SOURCE = "/etc/pn.conf"
DLOG = "push_notification dlog { }\n"


def error(text: str, source: str = SOURCE) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(dedent(text), source)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- syntax ----------------------------------------------------------------------------


def test_a_block_that_is_never_closed() -> None:
    assert (
        error("""\
        log_level = info

        push_notification ox1 {
          driver = ox
        push_notification ox2 {
          driver = ox
        }
        """)
        == f"{SOURCE}:3: push_notification ox1: missing '}}' (block opened here is never closed)"
    )


def test_a_closing_brace_without_a_block() -> None:
    assert error(DLOG + "}\n") == f"{SOURCE}:2: unexpected '}}' (no block is open here; remove it)"


def test_text_after_a_closing_brace() -> None:
    assert error("push_notification dlog {\n} driver = x\n") == (
        f"{SOURCE}:2: unexpected text after '}}' (put it on its own line)"
    )


def test_settings_on_the_block_header_line() -> None:
    assert error("push_notification ox { driver = ox }\n") == (
        f"{SOURCE}:1: cannot parse block header 'push_notification ox {{ driver = ox }}' "
        "(write 'type [name] {' and put each setting on its own line)"
    )


def test_a_line_that_is_neither_setting_nor_block() -> None:
    assert error(DLOG + "listen 127.0.0.1:8425\n") == (
        f"{SOURCE}:2: expected 'name = value', 'type [name] {{' or '}}' but got 'listen 127.0.0.1:8425'"
    )


def test_a_malformed_line_never_shows_a_url_password() -> None:
    assert error("push_notification ox {\n  ox_url http://login:s3cret@host/notify\n}\n") == (
        f"{SOURCE}:2: expected 'name = value', 'type [name] {{' or '}}' but got 'ox_url http://login:***@host/notify'"
    )


def test_a_value_without_a_name() -> None:
    assert error(DLOG + "= 127.0.0.1:8425\n") == f"{SOURCE}:2: missing setting name before '=' (write 'name = value')"


def test_an_unclosed_quote() -> None:
    assert error('push_notification ox {\n  url = "http://x/\n}\n') == (
        f"{SOURCE}:2: missing closing \" in value of 'url' (close the quote or remove it)"
    )


def test_text_after_a_quoted_value() -> None:
    assert error("push_notification ox {\n  url = 'http://x/' extra\n}\n") == (
        f"{SOURCE}:2: unexpected text after the quoted value of 'url' (put the whole value inside the quotes)"
    )


def test_an_unknown_directive() -> None:
    assert (
        error(DLOG + "!inclde other.conf\n")
        == f"{SOURCE}:2: unknown directive '!inclde' (use !include or !include_try)"
    )


def test_include_without_a_file_name() -> None:
    assert error(DLOG + "!include\n") == f"{SOURCE}:2: !include needs a file name (e.g. !include conf.d/*.conf)"


# --- top level -------------------------------------------------------------------------


def test_a_misspelt_daemon_setting_gets_a_suggestion() -> None:
    assert error(DLOG + "\n\nlsiten = 127.0.0.1:8425\n") == (
        f"{SOURCE}:4: unknown setting 'lsiten' (did you mean 'listen'? known: listen, log_level, log_format, "
        "ingress_token, driver_timeout, state_dir, metadata_path, queue, queue_path, queue_retry_deadline, "
        "queue_retry_delay, queue_retry_max_delay, queue_fsync, spool_dir, spool_max_size, max_pending, event_loop, "
        "devices_path, device_expiry)"
    )


def test_a_dovecot_setting_is_explained() -> None:
    message = error("mail_plugins = $mail_plugins notify push_notification\n" + DLOG)
    assert message.startswith(
        f"{SOURCE}:1: unknown setting 'mail_plugins' (this file is the push-notification daemon's config, "
        "not dovecot.conf; top-level settings are listen, log_level,"
    )
    assert message.endswith("driver settings go in 'push_notification NAME { }' or 'plugin { }')")


def test_a_dovecot_block_is_explained() -> None:
    assert error(DLOG + "protocol lmtp {\n  mail_plugins = notify push_notification\n}\n") == (
        f"{SOURCE}:2: unknown block 'protocol lmtp' (this file is the push-notification daemon's config, "
        "not dovecot.conf: it accepts 'push_notification NAME { }', 'plugin { }' and the daemon's settings)"
    )


def test_a_config_without_instances() -> None:
    assert error("log_level = debug\n") == (
        f"{SOURCE}: no push_notification instance is configured (add e.g. 'push_notification dlog {{ }}')"
    )


# --- daemon values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("listen = 127.0.0.1", "invalid address '127.0.0.1' for listen (use HOST:PORT, [IPv6]:PORT or unix:/path)"),
        ("listen = host:99999", "invalid address 'host:99999' for listen (use HOST:PORT, [IPv6]:PORT or unix:/path)"),
        ("listen = [::1:8425", "invalid address '[::1:8425' for listen (use HOST:PORT, [IPv6]:PORT or unix:/path)"),
        ("listen = [nope]:1", "invalid address '[nope]:1' for listen (use HOST:PORT, [IPv6]:PORT or unix:/path)"),
        (
            "listen = ::1:8425",
            "invalid address '::1:8425' for listen (put an IPv6 address in brackets, e.g. [::1]:8425)",
        ),
        ("listen = unix:", "invalid address 'unix:' for listen (use HOST:PORT, [IPv6]:PORT or unix:/path)"),
        ("log_level = verbose", "invalid log level 'verbose' for log_level (use one of: debug, info, warning, error)"),
        ("log_format = xml", "invalid log format 'xml' for log_format (use one of: text, json)"),
        ("driver_timeout = 10 parsecs", "invalid time '10 parsecs' for driver_timeout (use e.g. 10s, 2 mins, 500ms)"),
        ("driver_timeout = 0", "invalid time '0' for driver_timeout (must be more than 0, e.g. 30s)"),
        ("state_dir =", "invalid directory '' for state_dir (give a directory path)"),
        ("queue = redis", "invalid queue 'redis' for queue (use one of: memory, sqlite)"),
        ("max_pending = 0", "invalid number '0' for max_pending (use a whole number of at least 1)"),
        ("max_pending = lots", "invalid number 'lots' for max_pending (use a whole number of at least 1)"),
    ],
)
def test_invalid_daemon_values(line: str, message: str) -> None:
    assert error(f"{DLOG}\n{line}\n") == f"{SOURCE}:3: {message}"


@pytest.mark.parametrize("listen", ["0.0.0.0:8425", "[::]:8425", "192.0.2.1:8425", "mail.example.com:8425"])
def test_listening_beyond_this_host_needs_a_token(listen: str) -> None:
    assert error(f"{DLOG}listen = {listen}\n") == (
        f"{SOURCE}:2: listen = {listen} lets other hosts submit transactions; "
        "set ingress_token (or listen on 127.0.0.1, [::1] or a unix: socket)"
    )


def test_an_invalid_instance_timeout_points_at_its_line() -> None:
    assert error("push_notification ox1 {\n  driver = ox\n  driver_timeout = 10 parsecs\n}\n") == (
        f"{SOURCE}:3: invalid time '10 parsecs' for driver_timeout (use e.g. 10s, 2 mins, 500ms)"
    )


def test_an_invalid_23_instance_timeout_points_at_the_plugin_line() -> None:
    assert error("plugin {\n  push_notification_driver = ox:url=http://a/ driver_timeout=soon\n}\n") == (
        f"{SOURCE}:2: invalid time 'soon' for driver_timeout (use e.g. 10s, 2 mins, 500ms)"
    )


# --- 2.4 instances ---------------------------------------------------------------------


def test_a_duplicate_instance() -> None:
    assert error("""\
        push_notification ox1 {
          driver = ox
        }
        push_notification ox1 {
          driver = ox
        }
        """) == (
        f"{SOURCE}:4: duplicate push_notification instance 'ox1' (first defined at {SOURCE}:1; "
        "give each instance its own name)"
    )


def test_a_23_instance_clashing_with_a_24_block() -> None:
    assert error("""\
        push_notification ox {
        }
        plugin {
          push_notification_driver = ox:url=http://a/
        }
        """) == (
        f"{SOURCE}:4: duplicate push_notification instance 'ox' (first defined at {SOURCE}:1; "
        "give each instance its own name)"
    )


def test_a_block_without_a_name() -> None:
    assert error("push_notification {\n  driver = ox\n}\n") == (
        f"{SOURCE}:1: push_notification needs a name (write 'push_notification NAME {{')"
    )


def test_an_invalid_instance_name() -> None:
    assert error('push_notification "ox/1" {\n}\n') == (
        f"{SOURCE}:1: invalid push_notification name 'ox/1' (use letters, digits, '_', '.' and '-')"
    )


def test_an_invalid_driver_name() -> None:
    assert error("push_notification ox1 {\n  driver = o x\n}\n") == (
        f"{SOURCE}:2: invalid push_notification ox1: driver name 'o x' (use letters, digits, '_', '.' and '-')"
    )


def test_a_name_line_that_contradicts_the_block() -> None:
    assert error("push_notification ox1 {\n  driver = ox\n  name = ox2\n}\n") == (
        f"{SOURCE}:3: push_notification ox1: 'name' differs from the block name (remove it)"
    )


def test_a_named_nested_block() -> None:
    assert error("push_notification lua {\n  lua_settings main {\n  }\n}\n") == (
        f"{SOURCE}:2: push_notification lua: nested block 'lua_settings main' cannot have a name"
    )


# --- 2.3 plugin { } --------------------------------------------------------------------


def test_a_named_plugin_block() -> None:
    assert error("plugin ox {\n  push_notification_driver = ox\n}\n") == (
        f"{SOURCE}:1: 'plugin' takes no name (write 'plugin {{')"
    )


def test_a_block_inside_plugin() -> None:
    assert error("plugin {\n  push_notification_driver = dlog\n  ox {\n  }\n}\n") == (
        f"{SOURCE}:3: plugin {{ }} holds only 'key = value' lines, not 'ox {{'"
    )


def test_an_empty_23_driver_name_does_not_echo_the_secret() -> None:
    message = error("plugin {\n  push_notification_driver = :url=http://login:pass@host/\n}\n")
    assert message == (
        f"{SOURCE}:2: push_notification_driver: empty driver name "
        "(write DRIVER[:key=value ...], e.g. ox:url=http://host/notify)"
    )
    assert "pass@" not in message


def test_a_23_argument_without_a_name() -> None:
    assert error("plugin {\n  push_notification_driver = ox:url=http://a/ =secret\n}\n") == (
        f"{SOURCE}:2: push_notification_driver: an argument starts with '=' (write key=value)"
    )


def test_a_23_driver_after_a_gap() -> None:
    assert error("""\
        plugin {
          push_notification_driver = ox:url=http://a/
          push_notification_driver3 = dlog
        }
        """) == (
        f"{SOURCE}:3: push_notification_driver3 is never read because push_notification_driver2 is not set "
        "(Dovecot stops at the first gap; number the drivers without gaps)"
    )


def test_a_23_driver_without_the_first_one() -> None:
    assert error("plugin {\n  push_notification_driver2 = dlog\n}\n") == (
        f"{SOURCE}:2: push_notification_driver2 is never read because push_notification_driver is not set "
        "(Dovecot stops at the first gap; number the drivers without gaps)"
    )


@pytest.mark.parametrize(
    "key", ["push_notification_driver1", "push_notification_driver0", "push_notification_driver02"]
)
def test_a_23_driver_number_dovecot_never_reads(key: str) -> None:
    assert error(f"plugin {{\n  push_notification_driver = dlog\n  {key} = ox\n}}\n") == (
        f"{SOURCE}:3: {key} is never read (Dovecot reads push_notification_driver, then "
        "push_notification_driver2, push_notification_driver3, ...; rename it)"
    )


def test_a_legacy_backend_next_to_a_driver() -> None:
    assert error("plugin {\n  push_notification_driver = dlog\n  push_notification_backend = ox\n}\n") == (
        f"{SOURCE}:3: push_notification_backend is ignored because push_notification_driver is set "
        "(backend is the legacy name; make it a push_notification_driverN line or remove it)"
    )


# --- files -----------------------------------------------------------------------------


def test_a_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.conf")
    assert str(caught.value) == (
        f"{tmp_path / 'nope.conf'}: cannot read config: No such file or directory (pass an existing file with -c)"
    )


def test_a_config_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "pn.conf").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "pn.conf")
    assert str(caught.value) == f"{tmp_path / 'pn.conf'}: not UTF-8 text (is this the config file?)"


def test_include_of_a_missing_file(tmp_path: Path) -> None:
    source = str(tmp_path / "pn.conf")
    assert error(DLOG + "!include missing.conf\n", source) == (
        f"{source}:2: !include: cannot read {tmp_path}/missing.conf: No such file or directory"
    )


def test_include_of_an_absolute_missing_file() -> None:
    assert error(DLOG + "!include /x\n") == f"{SOURCE}:2: !include: cannot read /x: No such file or directory"


def test_include_glob_matching_nothing(tmp_path: Path) -> None:
    source = str(tmp_path / "pn.conf")
    assert error(DLOG + "!include conf.d/*.conf\n", source) == (
        f"{source}:2: !include: no file matches {tmp_path}/conf.d/*.conf (fix the pattern or use !include_try)"
    )


def test_include_of_an_unreadable_path(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    source = str(tmp_path / "pn.conf")
    assert error(DLOG + "!include_try conf.d\n", source) == (
        f"{source}:2: !include_try: cannot read {tmp_path}/conf.d: Is a directory"
    )


def test_an_include_loop(tmp_path: Path) -> None:
    (tmp_path / "pn.conf").write_text(DLOG + "!include other.conf\n")
    (tmp_path / "other.conf").write_text("\n!include pn.conf\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "pn.conf")
    assert (
        str(caught.value) == f"{tmp_path}/other.conf:2: !include: {tmp_path}/pn.conf includes itself (remove the loop)"
    )


def test_errors_inside_included_files_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "ox.conf").write_text("push_notification ox {\n  driver = ox\n")
    (tmp_path / "pn.conf").write_text("!include ox.conf\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "pn.conf")
    assert str(caught.value) == (
        f"{tmp_path}/ox.conf:1: push_notification ox: missing '}}' (block opened here is never closed)"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_include_of_a_file_without_permission(tmp_path: Path) -> None:
    (tmp_path / "secret.conf").write_text(DLOG)
    (tmp_path / "secret.conf").chmod(0)
    source = str(tmp_path / "pn.conf")
    assert error("!include secret.conf\n", source) == (
        f"{source}:1: !include: cannot read {tmp_path}/secret.conf: Permission denied"
    )


def test_a_continued_last_line_is_still_checked() -> None:
    assert error(DLOG + "log_level = \\\n") == (
        f"{SOURCE}:2: invalid log level '' for log_level (use one of: debug, info, warning, error)"
    )


def test_includes_nested_too_deep(tmp_path: Path) -> None:
    for depth in range(25):
        (tmp_path / f"{depth}.conf").write_text(f"!include {depth + 1}.conf\n")
    (tmp_path / "25.conf").write_text(DLOG)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "0.conf")
    assert str(caught.value) == f"{tmp_path}/19.conf:1: !include: includes nest more than 20 deep (flatten them)"


def test_an_invalid_23_driver_name() -> None:
    assert error("plugin {\n  push_notification_driver = o/x:url=http://a/\n}\n") == (
        f"{SOURCE}:2: invalid push_notification_driver driver name 'o/x' (use letters, digits, '_', '.' and '-')"
    )


def test_include_of_a_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "blob.conf").write_bytes(b"\xff\xfe\x00")
    source = str(tmp_path / "pn.conf")
    assert error(DLOG + "!include blob.conf\n", source) == (
        f"{source}:2: !include: {tmp_path}/blob.conf is not UTF-8 text (save it as UTF-8 or leave it out of the pattern)"
    )
