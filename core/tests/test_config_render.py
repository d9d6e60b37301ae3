"""``check-config`` output: the effective config in Dovecot syntax, with every secret masked."""

from __future__ import annotations

from textwrap import dedent

from push_notification.config import DaemonConfig, load_config, parse_config, render_effective
from push_notification.config.render import format_time, masked, quote

SOURCE = "/etc/pn.conf"


def parse(text: str) -> DaemonConfig:
    return parse_config(dedent(text), SOURCE)


def comparable(config: DaemonConfig) -> object:
    """What must survive a render and re-parse: daemon values and each instance's settings."""
    instances = [
        (
            item.name,
            item.driver,
            item.timeout,
            item.settings.as_dict(),
            {k: s.as_dict() for k, s in item.settings.sections.items()},
        )
        for item in config.instances
    ]
    daemon = {name: value for name, value in vars(config).items() if name not in ("instances", "source")}
    return daemon, instances


def test_effective_config_shows_defaults_and_normalised_instances() -> None:
    text = render_effective(
        parse("""\
        listen = 127.0.0.1:9000
        push_notification ox1 {
          driver = OX
          push_notification_ox_url = http://example.com/notify
          ox_cache_ttl = 10secs
        }
        """)
    )
    assert text.startswith(f"# push-notification effective configuration from {SOURCE}\n")
    assert "\nlisten = 127.0.0.1:9000  # ingress HTTP address" in text
    assert "\nlog_level = info  # " in text
    assert "\nmax_pending = 100000  # " in text
    assert "\nspool_dir =   # " in text
    assert text.endswith(
        f"push_notification ox1 {{  # defined at {SOURCE}:2\n"
        "  driver = ox\n"
        "  driver_timeout = 30s\n"
        "  url = http://example.com/notify\n"
        "  cache_ttl = 10secs\n"
        "}\n"
    )


def test_23_drivers_are_shown_as_the_equivalent_24_blocks() -> None:
    text = render_effective(
        parse("""\
        plugin {
          push_notification_driver = ox:url=http://a/ user_from_metadata
          push_notification_driver2 = dlog
          mail_log_events = delete
        }
        """)
    )
    assert "\nplugin {\n  mail_log_events = delete\n}\n" in text
    assert f"\npush_notification ox {{  # defined at {SOURCE}:2\n  driver = ox\n" in text
    assert "\n  user_from_metadata = \n" in text
    assert (
        f"\npush_notification dlog {{  # defined at {SOURCE}:3\n  driver = dlog\n  driver_timeout = 30s\n}}\n" in text
    )


def test_secrets_are_masked() -> None:
    text = render_effective(
        parse("""\
        ingress_token = t0ps3cret
        plugin {
          push_notification_driver = ox:url=http://login:oxpass@host:8009/notify
          mail_crypt_private_password = cryptpass
        }
        push_notification webhook {
          url = https://user:hookpass@hooks.example/x
          api_key = k3y
          auth_token = tok3n
          client_secret = s3cr3t
          keywords = $Label1
          lua_settings {
            push_lua_url = http://a:luapass@x/
            password = luapw
          }
        }
        """)
    )
    for secret in ("t0ps3cret", "oxpass", "cryptpass", "hookpass", "k3y", "tok3n", "s3cr3t", "luapass", "luapw"):
        assert secret not in text
    assert "\ningress_token = ***  # " in text
    assert "  url = http://login:***@host:8009/notify\n" in text
    assert "  url = https://user:***@hooks.example/x\n" in text
    assert "  api_key = ***\n  auth_token = ***\n  client_secret = ***\n" in text
    assert "  keywords = $Label1\n" in text
    assert "  mail_crypt_private_password = ***\n" in text
    assert "    push_lua_url = http://a:***@x/\n    password = ***\n" in text


def test_an_unset_token_is_shown_empty() -> None:
    assert "\ningress_token =   # " in render_effective(load_config(None))


def test_the_rendered_text_parses_back_to_the_same_config() -> None:
    config = parse("""\
        listen = [::1]:9000
        log_format = json
        driver_timeout = 1500ms
        state_dir = /srv/pn
        spool_dir = /var/spool/pn
        plugin {
          push_notification_driver = ox:url=http://a/ cache_lifetime=30s
          mail_log_events = delete expunge
        }
        push_notification hook {
          driver = webhook
          driver_timeout = 2 mins
          quoted = "  # spaces and a hash  "
          quote = "say \\"hi\\""
          backslash = "C:\\\\"
          lua_settings {
            n = 1
          }
        }
        """)
    assert config.instances[1].settings["backslash"].text == "C:\\"
    again = parse_config(render_effective(config), "<rendered>")
    assert comparable(again) == comparable(config)


def test_value_helpers() -> None:
    assert quote("plain value") == "plain value"
    assert quote(" padded") == '" padded"'
    assert quote('"starts quoted') == '"\\"starts quoted"'
    assert quote("a # b") == '"a # b"'
    assert quote("ends\\") == '"ends\\\\"'
    assert (format_time(30.0), format_time(0.5), format_time(1.5), format_time(120.0)) == (
        "30s",
        "500ms",
        "1500ms",
        "120s",
    )
    assert masked("url", "http://u:p@h/") == "http://u:***@h/"
    assert masked("url", "not a url") == "not a url"
    assert masked("monkey", "banana") == "banana"
    assert masked("ssl_client_key", "/etc/key.pem") == "***"
    assert masked("token", "") == ""


def test_header_blocks_with_credentials_are_masked() -> None:
    text = render_effective(
        parse_config(
            "push_notification hook {\n  driver = webhook\n  webhook_headers {\n"
            "    Authorization = Bearer tk_live_123\n    X-Gotify-Key = abc\n    X-Title = Mail\n  }\n}\n"
        )
    )
    assert "tk_live_123" not in text and "abc" not in text
    assert "X-Title = Mail" in text
