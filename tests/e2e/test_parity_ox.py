"""Dovecot's own ox driver → sink A and, in the same Dovecot run, bridge → daemon → our ox → sink B:
the same requests (method, path, Basic auth, content type, JSON keys, order and values).

Dovecot's Lua API gives the bridge only the decoded Subject, so ``subject`` is compared decoded
(Dovecot's raw ``=?utf-8?q?...?=`` value decoded with RFC 2047 rules); everything else as sent.
"""

from __future__ import annotations

import json
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

from e2e_support import (
    OX_KEY,
    BridgedDovecot,
    RecordingServer,
    e2e_daemon,
    recording_server,
    require_dovecot,
    require_driver,
    wait_until,
)

require_dovecot()

require_driver("ox")

ALICE, BOB = "alice@example.com", "bob@example.com"
OX_PATH = "/preliminary/http-notify/v1/notify"
MAILS = {
    "plain": "From: Bob Sender <bob@example.org>\r\nTo: alice@example.com\r\nSubject: Plain hello\r\n\r\nHi there\r\n",
    "mime": "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@example.org>\r\nTo: alice@example.com\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    'Tab\there, "quotes" and \\ backslash, ü\r\n',
    "alternative": "From: n@example.org\r\nTo: alice@example.com\r\nSubject: Alt\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
    "plain part\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n",
    "long": "From: long@example.org\r\nTo: alice@example.com\r\nSubject: Long\r\n\r\n"
    + " ".join(f"word{i:04}" for i in range(300))
    + "\r\n",
    "no subject": "From: quiet@example.org\r\nTo: alice@example.com\r\n\r\nno subject here\r\n",
}


def comparable(request: Any) -> dict[str, Any]:
    """What must match between Dovecot's request and ours (subject decoded, see the docstring)."""
    body = json.loads(request.body)
    if "subject" in body:
        body["subject"] = str(make_header(decode_header(body["subject"])))
    return {
        "method": request.method,
        "path": request.path,
        "authorization": request.headers.get("Authorization"),
        "content-type": request.headers.get("Content-Type"),
        "keys": list(body),
        "body": body,
    }


def wait_for(sink: RecordingServer, count: int) -> None:
    assert wait_until(lambda: len(sink.requests) >= count, 10), f"{len(sink.requests)} of {count} requests arrived"


def test_our_ox_sends_what_dovecots_ox_sends(tmp_path: Path) -> None:
    with recording_server(status=200) as sink_a, recording_server(status=200) as sink_b:
        dovecot = BridgedDovecot(
            plugin={"push_notification_driver2": f"ox:url=http://login:pass@127.0.0.1:{sink_a.port}{OX_PATH}"}
        )
        daemon = e2e_daemon(
            tmp_path,
            "push_notification ox {\n  driver = ox\n"
            f"  ox_url = http://login:pass@127.0.0.1:{sink_b.port}{OX_PATH}\n}}\n"
            f"spool_dir = {dovecot.spool}\n",
        )
        with daemon, dovecot:
            dovecot.set_metadata(ALICE, OX_KEY, "user=11@3")
            dovecot.set_metadata(BOB, OX_KEY, "user=12@3")
            expected = 0
            for mail in MAILS.values():
                dovecot.deliver(mail, [ALICE])
                expected += 1
            dovecot.deliver(MAILS["plain"], [ALICE, BOB])
            expected += 2
            imap = dovecot.imap(ALICE)  # APPEND and flag changes send nothing, in either
            imap.append("INBOX", None, None, b"Subject: appended\r\n\r\nx\r\n")
            imap.select("INBOX")
            imap.uid("STORE", "1", "+FLAGS", r"(\Seen)")
            imap.logout()
            dovecot.deliver(MAILS["plain"], [ALICE])  # unseen reflects the \Seen above
            expected += 1
            wait_for(sink_a, expected)
            wait_for(sink_b, expected)
            errors = dovecot.log_errors()
    theirs = sorted((comparable(r) for r in sink_a.requests), key=lambda c: (c["body"]["user"], c["body"]["imap-uid"]))
    ours = sorted((comparable(r) for r in sink_b.requests), key=lambda c: (c["body"]["user"], c["body"]["imap-uid"]))
    assert len(theirs) == expected
    differences = [(o, t) for o, t in zip(ours, theirs, strict=False) if o != t]
    assert not differences, (
        f"{len(differences)} differ; first:\n ours    {differences[0][0]}\n Dovecot {differences[0][1]}"
    )
    assert len(ours) == len(theirs)
    assert errors == []
