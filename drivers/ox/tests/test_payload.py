"""What OX receives for a new message in INBOX: the request, field for field with Dovecot."""

from __future__ import annotations

import base64
import json
from typing import Any

from ox_testkit import LOGIN, PASSWORD, PATH, OxEndpoint, activated, harness
from push_notification.events import Event
from push_notification.testing import make_event, make_transaction

SEED_FROM = "=?utf-8?q?=C3=84?= <alice@barfoo.org>"
SEED_SUBJECT = "Test =?utf-8?q?p=C3=A4iv=C3=A4=C3=A4?="


def seed_event(**fields: Any) -> Event:
    values: dict[str, Any] = {
        "uid": 2345,
        "uid_validity": 123412341,
        "from_": SEED_FROM,
        "subject": SEED_SUBJECT,
        "snippet": "Hey guys This is only a test...",
    }
    values.update(fields)
    return make_event("MessageNew", **values)


STATUS = {"messages": 5, "recent": 1, "unseen": 2, "uidvalidity": 123412341, "uidnext": 2346}


async def test_the_seed_example_is_sent_as_dovecot_sends_it(ox_endpoint: OxEndpoint) -> None:
    store = activated("alice", value="user=4@464646669")
    settings = {"url": ox_endpoint.url(), "user_from_metadata": "yes"}
    async with harness(settings, metadata=store) as h:
        await h.send(make_transaction(seed_event(), user="alice", status=STATUS))
    [request] = ox_endpoint.received
    assert ox_endpoint.rejected == []
    assert request.body == (
        b'{"user":"4@464646669","event":"messageNew","folder":"INBOX",'
        b'"imap-uidvalidity":123412341,"imap-uid":2345,'
        b'"from":"=?utf-8?q?=C3=84?= <alice@barfoo.org>",'
        b'"subject":"Test =?utf-8?q?p=C3=A4iv=C3=A4=C3=A4?=",'
        b'"snippet":"Hey guys This is only a test...","unseen":2}'
    )


async def test_request_is_a_put_with_json_content_type_and_basic_auth_from_the_url(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(), user="alice"))
    [request] = ox_endpoint.received
    assert request.method == "PUT"
    assert request.path == PATH
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
    assert "Date" in request.headers
    # Dovecot sends no User-Agent (nor Accept) to OX.
    assert "User-Agent" not in request.headers
    assert "Accept" not in request.headers


async def test_no_authorization_header_without_user_and_password_in_the_url(ox_endpoint: OxEndpoint) -> None:
    ox_endpoint.require_auth = False
    async with harness({"url": ox_endpoint.url(login=None, password=None)}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(), user="alice"))
    [request] = ox_endpoint.received
    assert "Authorization" not in request.headers


async def test_user_is_the_mail_user_unless_user_from_metadata(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(), user="alice"))
    assert ox_endpoint.bodies[0]["user"] == "alice"


async def test_user_from_metadata_takes_the_metadata_user(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url(), "user_from_metadata": "yes"}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(), user="alice"))
    assert ox_endpoint.bodies[0]["user"] == "11@3"


async def test_bare_user_from_metadata_of_dovecot_23_turns_it_on(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url(), "user_from_metadata": ""}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(), user="alice"))
    assert ox_endpoint.bodies[0]["user"] == "11@3"


async def test_user_from_metadata_no_means_off_unlike_dovecot_23(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url(), "user_from_metadata": "no"}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(), user="alice"))
    assert ox_endpoint.bodies[0]["user"] == "alice"


async def test_non_ascii_mime_encoded_from_and_subject_pass_through_raw(ox_endpoint: OxEndpoint) -> None:
    sender = "=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>"
    subject = "=?utf-8?b?w4RwZmVs?= und Grüße"
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(from_=sender, subject=subject), user="alice"))
    [request] = ox_endpoint.received
    assert request.json["from"] == sender
    assert request.json["subject"] == subject
    # raw UTF-8 on the wire, not \u escapes
    assert "und Grüße".encode() in request.body


async def test_long_snippet_is_cut_to_200_characters_without_newlines(ox_endpoint: OxEndpoint) -> None:
    words = " ".join(f"wörd{i:03d}" for i in range(60))
    snippet = "  Hello\n\n  there\t" + words
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(seed_event(snippet=snippet), user="alice"))
    sent = ox_endpoint.bodies[0]["snippet"]
    assert len(sent) == 200
    assert sent.startswith("Hello there wörd000 wörd001")
    assert "\n" not in sent and "  " not in sent


async def test_missing_headers_snippet_and_status_are_left_out(ox_endpoint: OxEndpoint) -> None:
    event = make_event("MessageNew", uid=7, uid_validity=99)
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(event, user="alice"))
    assert ox_endpoint.received[0].body == (
        b'{"user":"alice","event":"messageNew","folder":"INBOX","imap-uidvalidity":99,"imap-uid":7}'
    )


async def test_numbers_are_unsigned_32_bit(ox_endpoint: OxEndpoint) -> None:
    event = make_event("MessageNew", uid=4294967295, uid_validity=4294967295)
    status = {**STATUS, "unseen": 4294967295}
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(event, user="alice", status=status))
    body = ox_endpoint.bodies[0]
    assert (body["imap-uidvalidity"], body["imap-uid"], body["unseen"]) == (4294967295, 4294967295, 4294967295)


async def test_each_new_message_of_a_transaction_is_its_own_request(ox_endpoint: OxEndpoint) -> None:
    events = [seed_event(uid=uid) for uid in (10, 11, 12)]
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(*events, user="alice", status=STATUS))
    assert sorted(body["imap-uid"] for body in ox_endpoint.bodies) == [10, 11, 12]
    assert all(json.loads(r.body)["unseen"] == 2 for r in ox_endpoint.received)
