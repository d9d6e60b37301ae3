"""The Dovecot test harness starts a private instance and drives it like a client would."""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest
from e2e_support import require_dovecot
from push_notification.testing.dovecot import Dovecot, DovecotUnavailable

require_dovecot()

PLAIN = b"From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nHello\r\n"


def test_delivers_over_lmtp_to_two_recipients_and_answers_each() -> None:
    with Dovecot(plugin={"push_notification_driver": "dlog"}) as dovecot:
        replies = dovecot.deliver(PLAIN, ["alice@example.com", "bob@example.com"])
        assert [code for code, _ in replies] == [250, 250]
        assert dovecot.wait_for_log(r"lmtp\(bob@example.com\).*Message data: Mailbox \[INBOX\], UID \[1\]")
        assert dovecot.log_errors() == []


def test_imap_and_doveadm_act_on_the_same_mailboxes() -> None:
    with Dovecot(mail_plugins="") as dovecot:
        dovecot.deliver(PLAIN)
        imap = dovecot.imap("alice@example.com")
        assert imap.select("INBOX") == ("OK", [b"1"])
        imap.logout()
        dovecot.set_metadata("alice@example.com", "/private/vendor/vendor.dovecot/http-notify", "user=11@3")
        shown = dovecot.doveadm(
            "mailbox",
            "metadata",
            "get",
            "-u",
            "alice@example.com",
            "-s",
            "",
            "/private/vendor/vendor.dovecot/http-notify",
        )
        assert shown.stdout.strip() == "user=11@3"


def test_doveadm_http_answers_with_the_api_key() -> None:
    with Dovecot(mail_plugins="", doveadm_http=True) as dovecot:
        request = urllib.request.Request(
            dovecot.doveadm_http_url,
            headers={"Authorization": "X-Dovecot-API " + _b64(dovecot.doveadm_api_key or "")},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            commands = json.loads(response.read())
        assert any(command.get("command") == "mailboxList" for command in commands)


def test_stop_ends_every_dovecot_process_and_frees_the_ports() -> None:
    dovecot = Dovecot(mail_plugins="")
    with dovecot:
        pid = dovecot.pid
        assert dovecot.running
    assert not dovecot.running
    assert pid is not None
    assert not dovecot.root.exists()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_config_dovecot_refuses_is_one_line_with_dovecots_reason() -> None:
    dovecot = Dovecot(mail_plugins="", extra_config="no_such_setting = 1\n")
    with pytest.raises(DovecotUnavailable) as caught:
        dovecot.__enter__()
    message = str(caught.value)
    assert message.startswith("dovecot exited at start-up: ")
    assert "no_such_setting" in message and "\n" not in message
    assert not dovecot.root.exists()
