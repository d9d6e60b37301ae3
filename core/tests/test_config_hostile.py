"""Any config text, however broken or hostile, is a config or one ConfigError line; an error
never shows what a wrong file or a malformed line holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from push_notification.config import parse_config, render_effective
from push_notification.errors import ConfigError

DLOG = "push_notification dlog { }\n"


def config_error(text: str, source: str = "/etc/pn.conf") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_blocks_nested_thousands_deep_are_one_error() -> None:
    text = DLOG + "push_notification x {\n" + "a {\n" * 3000 + "}\n" * 3001
    assert config_error(text) == "/etc/pn.conf:22: blocks nest more than 20 deep (close some with '}')"


@pytest.mark.parametrize(
    "line",
    ["driver_timeout = " + "9" * 400, "queue_retry_deadline = 1" + "0" * 400 + " days", "max_pending = " + "9" * 5000],
)
def test_absurd_numbers_are_one_error(line: str) -> None:
    assert "/etc/pn.conf:2: invalid " in config_error(DLOG + line + "\n")


def test_absurd_numbers_in_an_instance_are_one_error() -> None:
    text = "push_notification dlog {\n  driver_timeout = " + "9" * 400 + "\n}\n"
    assert "/etc/pn.conf:2: invalid time" in config_error(text)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/proc/self"])
def test_an_include_of_anything_but_a_regular_file_is_one_error(target: str) -> None:
    message = config_error(f"{DLOG}!include_try {target}\n")
    assert message == f"/etc/pn.conf:2: !include_try: {target}: not a regular file (name a config file)"


def test_an_include_path_with_a_nul_byte_is_one_error() -> None:
    message = config_error(f"{DLOG}!include {{ }}\x00\n")
    assert message == "/etc/pn.conf:2: !include: the file name contains a NUL byte (remove it)"


def test_a_fifo_include_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.conf")
    source = str(tmp_path / "pn.conf")
    assert config_error(f"{DLOG}!include pipe.conf\n", source).endswith(
        "pipe.conf: not a regular file (name a config file)"
    )


def test_a_huge_include_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with (tmp_path / "big.conf").open("wb") as file:
        file.truncate(64 << 20)
    message = config_error(f"{DLOG}!include big.conf\n", str(tmp_path / "pn.conf"))
    assert message.endswith("big.conf: larger than 4 MiB (is this the config file?)")


def test_an_included_file_that_is_not_config_never_shows_its_content(tmp_path: Path) -> None:
    (tmp_path / "shadow").write_text("root:$6$s3cr3tHash$abc:19000:0:99999:7:::\nAPI_KEY=abcdef0123\n")
    message = config_error(f"{DLOG}!include shadow\n", str(tmp_path / "pn.conf"))
    assert message == f"{tmp_path}/shadow:1: expected 'name = value', 'type [name] {{' or '}}' (is a '=' missing?)"
    assert "s3cr3tHash" not in message


@pytest.mark.parametrize(
    "line",
    ["ingress_token s3cret", "ingress_token: s3cret", 'ingress_token "s3cret"', "s3cret {{ x", "$6$s3cret=1"],
)
def test_a_malformed_line_never_echoes_its_value(line: str) -> None:
    assert "s3cret" not in config_error(f"{DLOG}{line}\n")


# --- every text: property-based ------------------------------------------------------------

_TOKENS = [
    "push_notification", "plugin", "dlog", "ox", "webhook", "lua", "driver", "=", " = ", "{", "}", " { }", "\n",
    "\\\n", '"', "'", "\\", "#", " ", "!include", "!include_try", "/dev/zero", "/etc/passwd", "*.conf",
    "driver_timeout", "max_pending", "listen", "ingress_token", "queue", "sqlite", "memory", "log_level",
    "push_notification_driver", "push_notification_driver2", "ox:url=http://u:p/#?@h/", "url", "http://a:b@h/",
    "9" * 400, "1.5", "ms", "days", "-1", "0", "yes", "\x00", "\ud800", "é", "lua_settings", "headers",
]  # fmt: skip
_texts = st.lists(st.sampled_from(_TOKENS) | st.text(max_size=4), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=_texts)
def test_every_text_is_a_config_or_one_config_error_line(text: str) -> None:
    try:
        config = parse_config(text, "/etc/pn.conf")
    except ConfigError as exc:
        # An error inside an included file (say, /etc/passwd) names that file and its line.
        assert "\n" not in str(exc) and str(exc).startswith(("/etc/", "/dev/"))
        return
    rendered = render_effective(config)
    assert rendered.startswith("# push-notification effective configuration")
