"""JSON escaping exactly as Dovecot 2.3's json_append_escaped."""

from __future__ import annotations

import json

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
