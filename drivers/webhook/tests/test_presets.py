"""Each preset against an endpoint that checks what the real service expects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from push_notification.errors import ConfigError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_webhook import WebhookDriver

NEW_MAIL = make_event(
    "MessageNew",
    uid=42,
    **{"from": "=?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>"},
    from_address="jurgen@example.org",
    from_display_name="Jürgen",
    subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
    subject_utf8="Grüße & <Küsse>",
    snippet="Hello Alice",
)


def bad(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


async def ntfy_server(request: web.Request, received: Any) -> web.StreamResponse:
    """https://docs.ntfy.sh/publish/#publish-as-json"""
    if request.method != "POST" or request.path != "/":
        return web.json_response({"error": "JSON must be published to the root URL"}, status=404)
    try:
        body = json.loads(received.body)
    except ValueError:
        return bad("invalid JSON")
    if not isinstance(body.get("topic"), str) or not body["topic"]:
        return bad("topic missing")
    if not isinstance(body.get("message"), str):
        return bad("message must be a string")
    if not isinstance(body.get("priority", 3), int) or not 1 <= body.get("priority", 3) <= 5:
        return bad("priority must be 1-5")
    if not all(isinstance(t, str) for t in body.get("tags", [])):
        return bad("tags must be strings")
    return web.json_response({"id": "abc", "event": "message", "topic": body["topic"]})


async def test_ntfy_publishes_json_to_the_server_root(endpoint: Any) -> None:
    endpoint.handler = ntfy_server
    settings = {"preset": "ntfy", "url": endpoint.url, "topic": "mail-{{ user | replace('@', '-') }}"}
    async with DriverHarness(WebhookDriver, settings) as harness:
        await harness.send(make_transaction(NEW_MAIL, user="alice@example.com"))
    assert harness.plugin.delivered == 1
    (got,) = endpoint.received
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert got.json() == {
        "topic": "mail-alice-example.com",
        "title": "New mail from Jürgen",
        "message": "Grüße & <Küsse>",
        "priority": 3,
        "tags": ["email"],
    }


async def test_ntfy_needs_a_topic(endpoint: Any) -> None:
    with pytest.raises(ConfigError, match="setting 'topic': is required"):
        DriverHarness(WebhookDriver, {"preset": "ntfy", "url": endpoint.url})


async def gotify_server(request: web.Request, received: Any) -> web.StreamResponse:
    """https://gotify.net/api-docs#/message/createMessage"""
    if request.method != "POST" or request.path != "/message":
        return web.json_response({"error": "Not Found"}, status=404)
    if request.headers.get("X-Gotify-Key") != "AppToken.123":
        return web.json_response({"error": "Unauthorized", "errorCode": 401}, status=401)
    body = json.loads(received.body)
    if not isinstance(body.get("message"), str) or not body["message"]:
        return bad("message is required")
    if not isinstance(body.get("priority", 0), int):
        return bad("priority must be an integer")
    return web.json_response({"id": 1, "appid": 1, **body})


async def test_gotify_posts_to_message_with_the_application_token(endpoint: Any) -> None:
    endpoint.handler = gotify_server
    settings = {"preset": "gotify", "url": endpoint.url + "/", "token": "AppToken.123", "priority": "8"}
    async with DriverHarness(WebhookDriver, settings) as harness:
        await harness.send(make_transaction(NEW_MAIL))
    assert harness.plugin.delivered == 1
    (got,) = endpoint.received
    assert got.json() == {"title": "New mail from Jürgen", "message": "Grüße & <Küsse>", "priority": 8}


async def test_gotify_with_a_wrong_token_is_a_permanent_failure(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.handler = gotify_server
    settings = {"preset": "gotify", "url": endpoint.url, "token": "wrong-token"}
    async with DriverHarness(WebhookDriver, settings) as harness:
        await harness.send(make_transaction(NEW_MAIL))
    assert len(endpoint.received) == 1  # 401 is not retried
    assert "401 Unauthorized" in caplog.text
    assert "wrong-token" not in caplog.text


async def slack_server(request: web.Request, received: Any) -> web.StreamResponse:
    """https://api.slack.com/messaging/webhooks: JSON with a text field, answers "ok"."""
    if request.method != "POST" or not request.path.startswith("/services/"):
        return web.Response(status=404, text="no_service")
    if request.content_type != "application/json":
        return web.Response(status=400, text="invalid_payload")
    body = json.loads(received.body)
    if not isinstance(body.get("text"), str) or not body["text"]:
        return web.Response(status=400, text="no_text")
    return web.Response(text="ok")


async def test_slack_sends_escaped_mrkdwn_text(endpoint: Any, caplog: pytest.LogCaptureFixture) -> None:
    endpoint.handler = slack_server
    url = endpoint.url + "/services/T000/B000/SecretPart"
    async with DriverHarness(WebhookDriver, {"preset": "slack", "url": url}) as harness:
        await harness.send(make_transaction(NEW_MAIL))
    assert harness.plugin.delivered == 1
    (got,) = endpoint.received
    assert got.path == "/services/T000/B000/SecretPart"
    assert got.json() == {"text": "*New mail from Jürgen*\nGrüße &amp; &lt;Küsse&gt;"}


async def test_slack_describes_other_events_in_one_line(endpoint: Any) -> None:
    endpoint.handler = slack_server
    url = endpoint.url + "/services/T000/B000/SecretPart"
    rename = make_event("MailboxRename", mailbox="Archive", mailbox_old="Projects")
    async with DriverHarness(WebhookDriver, {"preset": "slack", "url": url}) as harness:
        await harness.send(make_transaction(rename), make_transaction(make_event("MessageRead", uid=7)))
    texts = [r.json()["text"] for r in endpoint.received]
    assert texts == [
        "*MailboxRename in Archive*\nalice: Projects renamed to Archive",
        "*MessageRead in INBOX*\nalice: MessageRead, INBOX UID 7",
    ]


async def test_generic_json_is_the_standard_webhooks_payload(endpoint: Any) -> None:
    status = {"messages": 3, "recent": 1, "unseen": 2, "uidvalidity": 9, "uidnext": 43}
    txn = make_transaction(NEW_MAIL, id="txn1", status=status)
    async with DriverHarness(WebhookDriver, {"url": endpoint.url + "/hook"}) as harness:
        await harness.send(txn)
    (got,) = endpoint.received
    assert (got.method, got.path) == ("POST", "/hook")
    body = got.json()
    assert body["type"] == "MessageNew"
    assert body["timestamp"].endswith("Z")
    assert body["data"] == {
        "id": "txn1.0",
        "transaction": "txn1",
        "user": "alice",
        "service": "lmtp",
        "mailbox": "INBOX",
        "event": {
            "uid": 42,
            "uid_validity": 1700000000,
            "from": "=?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>",
            "subject": "=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
            "subject_utf8": "Grüße & <Küsse>",
            "from_address": "jurgen@example.org",
            "from_display_name": "Jürgen",
            "snippet": "Hello Alice",
            "flags": [],
            "keywords": [],
        },
        "status": {"messages": 3, "recent": 1, "unseen": 2, "uidvalidity": 9, "uidnext": 43},
    }


@pytest.mark.parametrize("preset, own", [("ntfy", {"topic": "mail"}), ("gotify", {"token": "t"}), ("slack", {})])
async def test_chat_and_phone_presets_skip_flag_events_that_change_nothing(
    endpoint: Any, preset: str, own: dict[str, str]
) -> None:
    """Dovecot fires FlagsClear with no flags on every flag change: no notification for it;
    a flag change that names a flag says which."""
    settings = {"preset": preset, "url": endpoint.url, **own}
    empty_clear = make_event("FlagsClear", uid=7, flags=[], keywords=[], flags_old=["\\Seen"])
    seen = make_event("FlagsSet", uid=7, flags=["\\Seen"])
    async with DriverHarness(WebhookDriver, settings) as harness:
        await harness.send(make_transaction(empty_clear, seen, user="alice@example.com"))
    (got,) = endpoint.received
    assert "alice@example.com: \\Seen set on INBOX UID 7" in got.body.decode().replace("\\\\", "\\")


async def test_the_json_preset_still_posts_every_event(endpoint: Any) -> None:
    empty_clear = make_event("FlagsClear", uid=7, flags=[], keywords=[])
    async with DriverHarness(WebhookDriver, {"url": endpoint.url}) as harness:
        await harness.send(make_transaction(empty_clear))
    assert len(endpoint.received) == 1
