"""The JSON body OX App Suite expects, byte for byte as Dovecot builds it.

Dovecot writes this JSON by hand, so the key order is fixed (``user``, ``event``,
``folder``, ``imap-uidvalidity``, ``imap-uid``, then ``from``, ``subject``, ``snippet``,
``unseen`` when known) and so is the escaping (2.3's ``json_append_escaped``): ``\\b \\f \\n
\\r \\t \\" \\\\``, other control characters as lower-case ``\\u00xx``, U+2028/U+2029 escaped,
``/`` and DEL and other non-ASCII written raw as UTF-8.
"""

from __future__ import annotations

import re

from push_notification.events import MessageNew

#: Longest snippet Dovecot makes (``BODY_SNIPPET_MAX_CHARS``), in characters.
SNIPPET_MAX_CHARS = 200
UINT32_MAX = 0xFFFFFFFF

_ESCAPES: dict[int, str] = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", 0x2028: "\\u2028", 0x2029: "\\u2029"})
# Lone surrogates (undecodable bytes smuggled through surrogateescape) are invalid UTF-8:
# Dovecot writes U+FFFD for each invalid byte.
_ESCAPES.update({i: "\ufffd" for i in range(0xD800, 0xE000)})
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f\u2028\u2029\ud800-\udfff]')
# Dovecot's snippet whitespace: ASCII blanks only (a no-break space stays, as observed).
_WHITESPACE_RUN = re.compile("[ \t\r\n\f\v]+")
_UNCLEAN = re.compile("[\t\r\n\f\v]|  |^ ")


def json_string(text: str) -> str:
    """``text`` as a JSON string literal, escaped as Dovecot escapes it."""
    if _NEEDS_ESCAPE.search(text) is None:
        return f'"{text}"'
    return f'"{text.translate(_ESCAPES)}"'


def clean_snippet(snippet: str) -> str:
    """At most 200 characters, whitespace runs collapsed to one space, no leading blanks.

    The sender normally already made it so (Dovecot's snippet is); this only guards the
    endpoint against a sender that did not.
    """
    if len(snippet) <= SNIPPET_MAX_CHARS and _UNCLEAN.search(snippet) is None:
        return snippet
    return _WHITESPACE_RUN.sub(" ", snippet).lstrip(" ")[:SNIPPET_MAX_CHARS]


def build_payload(user: str, event: MessageNew, unseen: int | None) -> bytes:
    """The request body for one new message (``unseen`` is ``None`` when not known)."""
    parts = [
        '{"user":',
        json_string(user),
        ',"event":"messageNew","folder":',
        json_string(event.mailbox),
        f',"imap-uidvalidity":{event.uid_validity & UINT32_MAX},"imap-uid":{event.uid & UINT32_MAX}',
    ]
    if event.from_ is not None:
        parts += (',"from":', json_string(event.from_))
    if event.subject is not None:
        parts += (',"subject":', json_string(event.subject))
    if event.snippet is not None:
        parts += (',"snippet":', json_string(clean_snippet(event.snippet)))
    if unseen is not None:
        parts.append(f',"unseen":{min(max(unseen, 0), UINT32_MAX)}')
    parts.append("}")
    return "".join(parts).encode("utf-8")
