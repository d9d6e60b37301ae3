"""Template mistakes stop the instance at start-up, with the setting and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from push_notification.errors import ConfigError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_webhook import WebhookDriver

URL = "http://127.0.0.1:9/hook"


def start(**settings: object) -> DriverHarness:
    return DriverHarness(WebhookDriver, {"url": URL, **settings})


def test_a_syntax_error_names_the_setting_and_line() -> None:
    body = '{"user": "{{ user }}",\n "subject": "{{ event.subject }"}'
    with pytest.raises(ConfigError) as err:
        start(body=body)
    message = str(err.value)
    assert message.startswith("<defaults>: push_notification test: setting 'body': template error at line 2:")
    assert "unexpected '}'" in message
    assert "\n" not in message


def test_a_syntax_error_in_a_body_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "body.j2"
    path.write_text('{\n  "user": {{ user | json }},\n  {% if event.name %}\n  "x": 1\n}\n')
    with pytest.raises(ConfigError, match=rf"setting 'body_file': template error in {path} at line 3: .*'endif'"):
        start(body_file=str(path))


def test_an_unknown_variable_is_caught_at_start_up_with_its_line() -> None:
    with pytest.raises(
        ConfigError, match=r"setting 'body': template fails for FlagsClear at line 2: .*'usr' is undefined"
    ):
        start(body="{\n{{ usr }}\n}")


def test_an_unknown_event_field_is_caught_for_the_events_that_lack_it() -> None:
    with pytest.raises(
        ConfigError, match=r"setting 'url': template fails for MailboxCreate at line 1: .*no attribute 'uid'"
    ):
        start(url="http://127.0.0.1:9/{{ event.uid }}")
    start(url="http://127.0.0.1:9/{{ event.uid }}", events="MessageNew MessageRead")


def test_the_sandbox_refuses_unsafe_attributes_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"setting 'body': .*SecurityError.*unsafe"):
        start(body="{{ user.__class__.__mro__ }}")


def test_a_header_template_error_names_the_header() -> None:
    with pytest.raises(ConfigError, match=r"setting 'X-Mail-User': template error at line 1"):
        start(headers={"X-Mail-User": "{{ user"})


def test_a_url_that_renders_without_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"setting 'url': .*http:// or https://"):
        start(url="ntfy.example.com/{{ user }}")


def test_an_unknown_preset_or_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"setting 'preset': unknown preset 'pushover' \(use one of: json, ntfy"):
        start(preset="pushover")
    with pytest.raises(ConfigError, match=r"setting 'topic': unknown setting"):
        start(topic="only-ntfy-has-topics")


async def test_a_template_failing_on_real_data_skips_that_event_only(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Passes the start-up check (the sample has a subject), fails when a mail has none.
    body = "{{ event.subject.upper() }}"
    async with DriverHarness(WebhookDriver, {"url": endpoint.url, "body": body, "events": "MessageNew"}) as harness:
        await harness.send(
            make_transaction(make_event("MessageNew", uid=1), make_event("MessageNew", uid=2, subject="hello"))
        )
    assert [r.body for r in endpoint.received] == [b"HELLO"]
    assert "MessageNew (webhook-id " in caplog.text
    assert "template body: line 1: UndefinedError" in caplog.text
