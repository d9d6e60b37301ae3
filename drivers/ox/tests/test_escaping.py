"""JSON escaping exactly as Dovecot 2.3's json_append_escaped."""

from __future__ import annotations

import json

import pytest
from push_notification.events import MessageNew
from push_notification.testing import make_event
from push_notification_ox.payload import build_payload, clean_snippet, json_string


def test_named_escapes_quote_and_backslash() -> None:
    assert json_string('a"b\\c\b\f\n\r\t') == '"a\\"b\\\\c\\b\\f\\n\\r\\t"'


def test_other_control_characters_are_lower_case_unicode_escapes() -> None:
    assert json_string("\x00\x01\x1f") == '"\\u0000\\u0001\\u001f"'


def test_line_and_paragraph_separators_are_escaped() -> None:
    assert json_string("a\u2028b\u2029") == '"a\\u2028b\\u2029"'


def test_slash_del_and_non_ascii_stay_raw() -> None:
    assert json_string("a/b\x7fÄ€😀") == '"a/b\x7fÄ€😀"'


def test_undecodable_bytes_become_replacement_characters() -> None:
    raw = b"Caf\xe9 cr\xe8me".decode("utf-8", "surrogateescape")
    assert json_string(raw) == '"Caf\ufffd cr\ufffdme"'


def test_payload_is_valid_json_whatever_the_header_holds() -> None:
    subject = 'He said "hi"\\\x02\n'
    event = make_event("MessageNew", subject=subject)
    assert isinstance(event, MessageNew)
    body = build_payload("alice", event, None)
    assert json.loads(body)["subject"] == subject


def test_clean_snippet_keeps_no_break_spaces_like_dovecot() -> None:
    assert clean_snippet("a\u00a0 \n b") == "a\u00a0 b"


def test_clean_snippet_leaves_a_clean_snippet_alone() -> None:
    assert clean_snippet("Hello Alice, see you tomorrow") == "Hello Alice, see you tomorrow"


TRICKY = ['say "hi"', "back\\slash", "tab\there", "bell\x07", "line\u2028sep", "caf\udce9", "del\x7f", "nbsp\u00a0"]
FIELDS = ("user", "mailbox", "from_", "subject", "snippet")


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("where", FIELDS)
def test_every_field_is_escaped_whichever_holds_what_needs_it(where: str, text: str) -> None:
    texts = {"user": "11@3", "mailbox": "INBOX", "from_": "Bob <b@example.org>", "subject": "Hi", "snippet": "Hey"}
    texts[where] = text
    event = make_event(
        "MessageNew",
        mailbox=texts["mailbox"],
        uid=7,
        uid_validity=42,
        from_=texts["from_"],
        subject=texts["subject"],
        snippet=texts["snippet"],
    )
    assert isinstance(event, MessageNew)
    fields = (
        f'{{"user":{json_string(texts["user"])},"event":"messageNew","folder":{json_string(texts["mailbox"])},'
        f'"imap-uidvalidity":42,"imap-uid":7,"from":{json_string(texts["from_"])},'
        f'"subject":{json_string(texts["subject"])},"snippet":{json_string(clean_snippet(texts["snippet"]))},'
        '"unseen":1}'
    )
    assert build_payload(texts["user"], event, 1) == fields.encode()


@pytest.mark.parametrize(
    ("snippet", "clean"),
    [
        ("  lead", "lead"),
        ("a  b", "a b"),
        ("a\tb", "a b"),
        ("a\x0bb", "a b"),
        ("x" * 205, "x" * 200),
        ("a\u00a0b", "a\u00a0b"),
    ],
)
def test_clean_snippet_collapses_ascii_blanks_only(snippet: str, clean: str) -> None:
    assert clean_snippet(snippet) == clean
