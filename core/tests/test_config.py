"""The config reader: both Dovecot forms, key normalisation, value syntax, daemon settings, includes."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from textwrap import dedent

import pytest
from push_notification.config import DEFAULT_CONFIG_TEXT, DaemonConfig, InstanceConfig, load_config, parse_config
from push_notification.config.daemon import DAEMON_SETTINGS, default_state_dir
from push_notification.settings import Value

SOURCE = "/etc/pn.conf"


def parse(text: str) -> DaemonConfig:
    return parse_config(dedent(text), SOURCE)


def instance(config: DaemonConfig, name: str) -> InstanceConfig:
    return next(item for item in config.instances if item.name == name)


# --- 2.4 named blocks -----------------------------------------------------------------


def test_a_24_block_names_an_instance_and_its_driver() -> None:
    config = parse("""\
        push_notification ox1 {
          driver = ox
          ox_url = http://example.com/foo
        }
        """)
    (ox1,) = config.instances
    assert (ox1.name, ox1.driver, ox1.where) == ("ox1", "ox", f"{SOURCE}:1")
    assert ox1.settings.instance == "ox1"
    assert ox1.settings.where == f"{SOURCE}:1"
    assert ox1.settings["url"] == Value("http://example.com/foo", SOURCE, 3)


def test_the_driver_defaults_to_the_block_name_and_is_lower_cased() -> None:
    config = parse("""\
        push_notification dlog { }
        push_notification Ox {
        }
        push_notification other {
          push_notification_driver = DLOG
        }
        """)
    assert [(item.name, item.driver) for item in config.instances] == [
        ("dlog", "dlog"),
        ("Ox", "ox"),
        ("other", "dlog"),
    ]


def test_an_empty_driver_falls_back_to_the_block_name() -> None:
    config = parse("push_notification dlog {\n  driver =\n}\n")
    assert config.instances[0].driver == "dlog"


def test_keys_lose_their_push_notification_and_driver_prefixes() -> None:
    config = parse("""\
        push_notification ox {
          push_notification_ox_url = http://a/
          ox_cache_ttl = 10secs
          user_from_metadata = yes
          http_client_request_timeout = 2s
          ssl_client_require_valid_cert = no
          push_notification_http_client_max_idle_time = 5s
        }
        """)
    assert instance(config, "ox").settings.as_dict() == {
        "url": "http://a/",
        "cache_ttl": "10secs",
        "user_from_metadata": "yes",
        "http_client_request_timeout": "2s",
        "ssl_client_require_valid_cert": "no",
        "http_client_max_idle_time": "5s",
    }


def test_nested_blocks_become_sections_with_their_keys_verbatim() -> None:
    config = parse("""\
        push_notification lua {
          lua_file = /etc/dovecot/push.lua
          lua_settings {
            push_lua_url = http://example.com/
            lua_extra = 1
          }
        }
        """)
    lua = instance(config, "lua")
    assert lua.settings.as_dict() == {"file": "/etc/dovecot/push.lua"}
    section = lua.settings.section("settings")
    assert section is not None
    assert section.instance == "lua/settings"
    assert section.where == f"{SOURCE}:3"
    assert section["push_lua_url"] == Value("http://example.com/", SOURCE, 4)
    assert section.as_dict() == {"push_lua_url": "http://example.com/", "lua_extra": "1"}


def test_a_later_line_wins_as_in_dovecot() -> None:
    config = parse("""\
        log_level = debug
        log_level = error
        push_notification ox {
          url = http://first/
          ox_url = http://second/
        }
        """)
    assert config.log_level == "error"
    assert instance(config, "ox").settings["url"].text == "http://second/"


def test_a_name_line_equal_to_the_block_name_is_accepted() -> None:
    config = parse("push_notification ox1 {\n  driver = ox\n  push_notification_name = ox1\n}\n")
    assert instance(config, "ox1").settings.as_dict() == {}


def test_settings_from_the_file_read_as_dovecot_types() -> None:
    config = parse("""\
        push_notification webhook {
          enabled = yes
          ttl = 2 mins
          max_body = 10k
          retries = 3
          timeout_msecs = 1500
        }
        """)
    settings = instance(config, "webhook").settings
    assert settings.get_bool("enabled", False) is True
    assert settings.get_time("ttl", 0) == 120
    assert settings.get_size("max_body", 0) == 10 * 1024
    assert settings.get_int("retries", 0) == 3
    assert settings.get_msecs("timeout_msecs", 0) == 1.5
    settings.check_unknown()


# --- 2.3 plugin { } form ---------------------------------------------------------------


def test_23_driver_strings_become_instances_named_after_their_driver() -> None:
    config = parse("""\
        plugin {
          push_notification_driver = ox:url=http://login:pass@host:8009/notify user_from_metadata cache_lifetime=30s
          push_notification_driver2 = dlog
          push_notification_driver3 = OX:url=http://other/
          mail_log_events = delete expunge
        }
        """)
    assert [(item.name, item.driver, item.where) for item in config.instances] == [
        ("ox", "ox", f"{SOURCE}:2"),
        ("dlog", "dlog", f"{SOURCE}:3"),
        ("ox2", "ox", f"{SOURCE}:4"),
    ]
    ox = instance(config, "ox").settings
    assert ox.as_dict() == {
        "url": "http://login:pass@host:8009/notify",
        "user_from_metadata": "",
        "cache_lifetime": "30s",
    }
    assert ox["url"] == Value("http://login:pass@host:8009/notify", SOURCE, 2)
    assert config.plugin_env == {"mail_log_events": "delete expunge"}


def test_23_later_duplicate_arguments_win() -> None:
    config = parse("plugin {\n  push_notification_driver = ox:url=http://a/ url=http://b/\n}\n")
    assert instance(config, "ox").settings["url"].text == "http://b/"


def test_23_reading_stops_at_the_first_empty_driver_key() -> None:
    config = parse("plugin {\n  push_notification_driver = dlog\n  push_notification_driver2 =\n}\n")
    assert [item.name for item in config.instances] == ["dlog"]


def test_23_legacy_backend_keys_are_read_when_no_driver_key_is_set() -> None:
    config = parse("""\
        plugin {
          push_notification_backend = dlog
          push_notification_backend2 = ox:url=http://x/
        }
        """)
    assert [(item.name, item.driver) for item in config.instances] == [("dlog", "dlog"), ("ox", "ox")]
    assert config.plugin_env == {}


def test_plugin_blocks_merge_and_the_later_line_wins() -> None:
    config = parse("""\
        plugin {
          push_notification_driver = ox:url=http://a/
          mail_log_fields = uid
        }
        plugin {
          push_notification_driver = dlog
          push_notification_driver2 = ox:url=http://b/
        }
        """)
    assert [(item.name, item.where) for item in config.instances] == [("dlog", f"{SOURCE}:6"), ("ox", f"{SOURCE}:7")]
    assert config.plugin_env == {"mail_log_fields": "uid"}


def test_23_and_24_instances_coexist_in_file_order() -> None:
    config = parse("""\
        push_notification first {
          driver = dlog
        }
        plugin {
          push_notification_driver = ox:url=http://a/
        }
        push_notification last {
          driver = dlog
        }
        """)
    assert [item.name for item in config.instances] == ["first", "ox", "last"]


# --- value syntax ----------------------------------------------------------------------


def test_quoted_values_comments_and_continuation_lines() -> None:
    config = parse("""\
        # a comment line
        push_notification webhook {   # comment after a block header
          a = "quoted # not a comment"  # a comment
          b = 'single \\'quoted\\''
          c = "back\\\\slash and \\"quote\\""
          d = http://host/path#fragment
          e=no spaces
        \tf\t=\ttabs\t
          g = first part \\
              second part
          h = "  kept spaces  "
          i =
        }
        """)
    assert instance(config, "webhook").settings.as_dict() == {
        "a": "quoted # not a comment",
        "b": "single 'quoted'",
        "c": 'back\\slash and "quote"',
        "d": "http://host/path#fragment",
        "e": "no spaces",
        "f": "tabs",
        "g": "first part second part",
        "h": "  kept spaces  ",
        "i": "",
    }
    assert instance(config, "webhook").settings["g"].line == 9  # a continued line counts from its start
    assert instance(config, "webhook").settings["h"].line == 11


def test_a_quoted_block_name() -> None:
    config = parse('push_notification "ox-1" {\n  driver = ox\n}\n')
    assert instance(config, "ox-1").driver == "ox"


# --- daemon settings -------------------------------------------------------------------


def test_daemon_defaults() -> None:
    config = parse("push_notification dlog { }\n")
    state = default_state_dir()
    assert config.listen == "127.0.0.1:8425"
    assert (config.log_level, config.log_format, config.queue) == ("info", "text", "sqlite")
    assert config.ingress_token is None
    assert config.driver_timeout == 30.0
    assert config.instances[0].timeout == 30.0
    assert config.state_dir == state
    assert config.metadata_path == os.path.join(state, "metadata.sqlite")
    assert config.queue_path == os.path.join(state, "queue.sqlite")
    assert (config.spool_dir, config.max_pending) == (None, 100000)


def test_every_table_default_is_the_dataclass_default() -> None:
    defaults = {field.name: field.default for field in fields(DaemonConfig)}
    for setting in DAEMON_SETTINGS:
        if setting.default:
            assert setting.parse(setting.default) == defaults[setting.name], setting.name


def test_daemon_settings_are_read_and_normalised() -> None:
    config = parse("""\
        listen = [::1]:9000
        log_level = DEBUG
        log_format = json
        ingress_token = "s3cret token"
        driver_timeout = 2 mins
        state_dir = /srv/pn
        queue = sqlite
        spool_dir = /var/spool/pn
        max_pending = 50
        push_notification dlog { }
        """)
    assert config.listen == "[::1]:9000"
    assert (config.log_level, config.log_format, config.queue) == ("debug", "json", "sqlite")
    assert config.ingress_token == "s3cret token"
    assert config.driver_timeout == 120.0
    assert config.metadata_path == "/srv/pn/metadata.sqlite"
    assert config.queue_path == "/srv/pn/queue.sqlite"
    assert (config.spool_dir, config.max_pending) == ("/var/spool/pn", 50)


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:0", "127.1.2.3:80", ":8425", "localhost:8425", "[::1]:8425", "unix:/run/pn.sock"]
)
def test_listen_forms(listen: str) -> None:
    assert parse(f"listen = {listen}\npush_notification dlog {{ }}\n").listen == listen


def test_listening_beyond_this_host_is_fine_with_a_token() -> None:
    config = parse("listen = 0.0.0.0:8425\ningress_token = t\npush_notification dlog { }\n")
    assert (config.listen, config.ingress_token) == ("0.0.0.0:8425", "t")


def test_explicit_paths_override_state_dir_and_expand_home() -> None:
    config = parse("""\
        state_dir = ~/pn
        metadata_path = /data/meta.sqlite
        queue_path = ~/q.sqlite
        push_notification dlog { }
        """)
    assert config.state_dir == os.path.expanduser("~/pn")
    assert config.metadata_path == "/data/meta.sqlite"
    assert config.queue_path == os.path.expanduser("~/q.sqlite")


@pytest.mark.parametrize(
    ("text", "seconds"), [("10secs", 10), ("60 seconds", 60), ("2 mins", 120), ("500ms", 0.5), ("1h 30s", 3630)]
)
def test_driver_timeout_takes_dovecot_times(text: str, seconds: float) -> None:
    assert parse(f"driver_timeout = {text}\npush_notification dlog {{ }}\n").driver_timeout == seconds


def test_an_instance_may_override_the_driver_timeout_which_its_driver_never_sees() -> None:
    config = parse("""\
        driver_timeout = 10s
        push_notification slow {
          driver = webhook
          push_notification_driver_timeout = 2 mins
        }
        push_notification fast {
          driver = webhook
          driver_timeout = 500ms
        }
        push_notification dlog { }
        plugin {
          push_notification_driver = ox:url=http://a/ driver_timeout=1s
        }
        """)
    assert [(item.name, item.timeout) for item in config.instances] == [
        ("slow", 120.0),
        ("fast", 0.5),
        ("dlog", 10.0),
        ("ox", 1.0),
    ]
    assert all("driver_timeout" not in item.settings for item in config.instances)


# --- files and includes ----------------------------------------------------------------


def test_load_config_without_a_path_is_the_built_in_dlog_instance() -> None:
    config = load_config(None)
    assert config.source == "<built-in default>"
    assert [(item.name, item.driver) for item in config.instances] == [("dlog", "dlog")]
    assert "push_notification dlog" in DEFAULT_CONFIG_TEXT


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pn.conf"
    path.write_text("push_notification ox1 {\n  driver = ox\n}\n")
    config = load_config(path)
    assert config.source == str(path)
    assert config.instances[0].where == f"{path}:1"


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "ox.conf").write_text("!include ../more/ox_url.conf\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "ox_url.conf").write_text("ox_url = http://included/\n")
    (tmp_path / "pn.conf").write_text("push_notification ox {\n  !include conf.d/ox.conf\n}\n")
    url = instance(load_config(tmp_path / "pn.conf"), "ox").settings["url"]
    assert url == Value("http://included/", str(tmp_path / "more" / "ox_url.conf"), 1)


def test_include_globs_are_read_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "20-b.conf").write_text("push_notification b {\n  driver = dlog\n}\n")
    (tmp_path / "conf.d" / "10-a.conf").write_text("push_notification a {\n  driver = dlog\n}\nlog_level = debug\n")
    (tmp_path / "conf.d" / "ignored.txt").write_text("nonsense\n")
    (tmp_path / "pn.conf").write_text("log_level = error\n!include conf.d/*.conf\n")
    config = load_config(tmp_path / "pn.conf")
    assert [item.name for item in config.instances] == ["a", "b"]
    assert config.log_level == "debug"


def test_include_try_ignores_missing_files(tmp_path: Path) -> None:
    (tmp_path / "pn.conf").write_text(
        '!include_try\tmissing.conf\n!include_try "none/*.conf"\npush_notification dlog { }\n'
    )
    assert [item.name for item in load_config(tmp_path / "pn.conf").instances] == ["dlog"]


def test_include_try_reads_files_that_exist(tmp_path: Path) -> None:
    (tmp_path / "local.conf").write_text("push_notification dlog { }\n")
    (tmp_path / "pn.conf").write_text("!include_try local.conf\n")
    assert [item.name for item in load_config(tmp_path / "pn.conf").instances] == ["dlog"]
