"""Mails the bridge scenarios deliver on Dovecot 2.3 and on 2.4, and what the bridge must hand
over for the plain one: one statement of that expectation, checked on both versions."""

from __future__ import annotations

import calendar
from typing import Any

PLAIN = (
    "From: Bob Sender <bob@example.org>\r\n"
    "To: Alice <alice@example.com>\r\n"
    "Subject: Plain hello\r\n"
    "Date: Tue, 01 Oct 2024 10:00:00 +0200\r\n"
    "Message-ID: <plain@example.org>\r\n"
    "\r\n"
    "Hello Alice,\r\n\r\nsee   you tomorrow.\r\n"
)
MIME = (
    "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@example.org>\r\n"
    "To: alice@example.com\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
    "Date: Wed, 02 Oct 2024 10:00:00 -0530\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Sch=C3=B6ne Gr=C3=BC=C3=9Fe\r\n"
)


def plain_delivery_event(uid_validity: int) -> dict[str, Any]:
    """The MessageNew of ``PLAIN`` delivered as the first mail of an INBOX: raw and decoded
    headers, the snippet with its whitespace folded, the Date: as UTC epoch and its offset."""
    return {
        "name": "MessageNew",
        "mailbox": "INBOX",
        "uid": 1,
        "uid_validity": uid_validity,
        "from": "Bob Sender <bob@example.org>",
        "to": "Alice <alice@example.com>",
        "message_id": "<plain@example.org>",
        "snippet": "Hello Alice, see you tomorrow.",
        "from_address": "bob@example.org",
        "from_display_name": "Bob Sender",
        "to_address": "alice@example.com",
        "to_display_name": "Alice",
        "subject_utf8": "Plain hello",
        "date": calendar.timegm((2024, 10, 1, 8, 0, 0)),
        "tz": 120,
        "flags": [],
        "keywords": [],
    }


def first_mail_status(uid_validity: int) -> dict[str, int]:
    """The INBOX status snapshot after its first delivery."""
    return {"messages": 1, "recent": 1, "unseen": 1, "uidvalidity": uid_validity, "uidnext": 2}
