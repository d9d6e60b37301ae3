"""The official Dovecot example scripts (tests/scripts, verbatim) run unchanged against a real
endpoint and send what they send in Dovecot; so does a script in the style admins publish."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from conftest import SCRIPTS
from push_notification.server.metadata import MetadataStore
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.transaction import User

ALICE = User(username="alice@example.com", service="lmtp", home="/home/alice")
STATUS = {"messages": 3, "recent": 1, "unseen": 2, "uidvalidity": 1700000000, "uidnext": 43}


def delivery() -> Any:
    event = make_event(
        "MessageNew",
        uid=42,
        subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        subject_utf8="Grüße",
        snippet="Hello Alice, see you tomorrow",
        from_address="bob@example.org",
        **{"from": "Bob <bob@example.org>", "to": "alice@example.com"},
    )
    return make_transaction(event, user=ALICE, status=STATUS)


def config(version: str, script: str, url: str) -> dict[str, Any]:
    """The instance settings and plugin env each Dovecot config form gives the driver."""
    if version == "2.3":
        return {"settings": {"file": str(SCRIPTS / script)}, "plugin_env": {"push_lua_url": url}}
    return {"settings": {"file": str(SCRIPTS / script), "settings": {"push_lua_url": url}}}


SIMPLE_BODY = (
    "from=Bob%20%3cbob%40example%2eorg%3e&to=alice%40example%2ecom&subject=Gr%c3%bc%c3%9fe"
    "&snippet=Hello%20Alice%2c%20see%20you%20tomorrow&user=alice%40example%2ecom"
)


@pytest.mark.parametrize(
    ("version", "script"),
    [
        ("2.3", "example_23_socket_http.lua"),
        ("2.3", "example_23_http_client.lua"),
        ("2.4", "example_24_http_client.lua"),
    ],
)
async def test_simple_examples_post_the_form_per_message(version, script, sink) -> None:
    cfg = config(version, script, sink.url)
    async with DriverHarness("lua", cfg["settings"], plugin_env=cfg.get("plugin_env")) as harness:
        await harness.send(delivery())
    assert [(r["method"], r["path"], r["body"]) for r in sink.requests] == [("POST", "/push", SIMPLE_BODY)]


async def test_socket_http_example_sends_a_form_content_type(sink) -> None:
    cfg = config("2.3", "example_23_socket_http.lua", sink.url)
    async with DriverHarness("lua", cfg["settings"], plugin_env=cfg["plugin_env"]) as harness:
        await harness.send(delivery())
    headers = {k.lower(): v for k, v in sink.requests[0]["headers"]}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["content-length"] == str(len(SIMPLE_BODY))


async def test_simple_example_logs_remote_errors(sink, caplog) -> None:
    sink.status = 500
    cfg = config("2.3", "example_23_socket_http.lua", sink.url)
    async with DriverHarness("lua", cfg["settings"], plugin_env=cfg["plugin_env"]) as harness:
        await harness.send(delivery())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["lua-push: Remote error 500 handling push notification"]


EVENT_CODE_BODIES = [
    "mailbox=INBOX&from=Bob%20%3cbob%40example%2eorg%3e&subject=Gr%c3%bc%c3%9fe",
    # Dovecot's status numbers are floats, so tostring() gives "1.0"
    "mailbox=INBOX&recent=1.0&unseen=2.0&messages=3.0",
]


@pytest.mark.parametrize(
    ("version", "script"),
    [
        ("2.3", "example_23_event_code.lua"),
        ("2.3", "example_23_socket_http_event_code.lua"),
        ("2.4", "example_24_event_code.lua"),
    ],
)
async def test_event_code_examples_post_messages_then_mailbox_states(version, script, sink, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = config(version, script, sink.url)
    async with DriverHarness("lua", cfg["settings"], plugin_env=cfg.get("plugin_env")) as harness:
        await harness.send(delivery())
    assert [r["body"] for r in sink.requests] == EVENT_CODE_BODIES
    for request in sink.requests:
        assert ("Content-Type", "application/x-www-form-url.escaped") in [(k.title(), v) for k, v in request["headers"]]
    infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO" and r.name.endswith(".test")]
    if "socket_http" not in script:
        assert infos == ["Mail notify status 200", "Mailbox notify status 200"]


async def test_admin_style_script_honours_metadata_opt_in(sink) -> None:
    store = MetadataStore()
    settings = {"file": str(SCRIPTS / "admin_style.lua")}
    env = {"push_url": sink.url}
    async with DriverHarness("lua", settings, plugin_env=env, metadata=store) as harness:
        await harness.send(delivery())
        assert sink.requests == []
        store.set("alice@example.com", "/private/vendor/vendor.example/push-optin", "yes")
        await harness.send(delivery())
    assert len(sink.requests) == 1
    assert json.loads(sink.requests[0]["body"]) == {
        "user": "alice@example.com",
        "events": [
            {
                "event": "MessageNew",
                "mailbox": "INBOX",
                "uid": 42,
                "subject": "Grüße",
                "from": "bob@example.org",
                "messages": 3,
                "unseen": 2,
            }
        ],
    }
    assert store.get("alice@example.com", "/private/vendor/vendor.example/push-last") == "ok"
