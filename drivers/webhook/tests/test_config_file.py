"""The driver configured from a config file in Dovecot syntax, loaded by name as the daemon does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from push_notification.config import parse_config
from push_notification.dispatch import Dispatcher
from push_notification.errors import ConfigError
from push_notification.queue import MemoryQueue
from push_notification.server.daemon import build_instances
from push_notification.testing import make_event, make_transaction

CONFIG = """\
push_notification phone {
  driver = webhook
  webhook_preset = ntfy
  webhook_url = %(url)s
  webhook_topic = mail-{{ user | replace('@', '-') }}
  webhook_events = MessageNew
  webhook_headers {
    Authorization = Bearer tk_secret
    X-Mailbox = {{ mailbox }}
  }
}
"""


async def test_a_2_4_block_with_prefixed_keys_and_a_headers_section(endpoint: Any) -> None:
    config = parse_config(CONFIG % {"url": endpoint.url}, "/etc/pn.conf")
    dispatcher = Dispatcher(MemoryQueue(), build_instances(config, None))
    await dispatcher.start()
    await dispatcher.queue.put(make_transaction(make_event("MessageNew", subject_utf8="Hi"), user="a@example.com"))
    await dispatcher.queue.put(make_transaction(make_event("MessageRead")))
    await dispatcher.stop()
    (got,) = endpoint.received
    assert got.headers["Authorization"] == "Bearer tk_secret"
    assert got.headers["X-Mailbox"] == "INBOX"
    assert got.json()["topic"] == "mail-a-example.com"


def test_template_errors_point_at_the_config_line(tmp_path: Path) -> None:
    text = CONFIG.replace("replace('@', '-') }}", "replace('@', '-') }") % {"url": "https://ntfy.sh"}
    with pytest.raises(ConfigError) as err:
        build_instances(parse_config(text, "/etc/pn.conf"), None)
    assert str(err.value) == (
        "/etc/pn.conf:5: push_notification phone: setting 'topic': template error at line 1: unexpected '}'"
    )


def test_a_header_template_error_points_at_the_header_line() -> None:
    text = CONFIG.replace("{{ mailbox }}", "{{ mailbox.owner }}") % {"url": "https://ntfy.sh"}
    with pytest.raises(ConfigError, match=r"^/etc/pn.conf:9: push_notification phone/headers: setting 'X-Mailbox': "):
        build_instances(parse_config(text, "/etc/pn.conf"), None)
