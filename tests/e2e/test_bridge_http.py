"""The http transport: POST to the ingress, and the spool whenever the ingress fails."""

from __future__ import annotations

import time

from e2e_support import BridgedDovecot, recording_server, require_dovecot
from push_notification.testing.net import free_port
from push_notification.transaction import transaction_from_dict

require_dovecot()

MAIL = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: over http\r\n\r\nHello\r\n"
TOKEN = "s3cret-ingress-token"


def test_each_transaction_is_one_post_with_the_bearer_token_and_nothing_is_spooled() -> None:
    with recording_server() as ingress, BridgedDovecot("http", url=ingress.url, token=TOKEN) as dovecot:
        assert [code for code, _ in dovecot.deliver(MAIL, ["alice@example.com", "bob@example.com"])] == [250, 250]
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        requests = list(ingress.requests)
        assert dovecot.take_spool() == []
        assert dovecot.log_errors() == []
    assert {r.method for r in requests} == {"POST"}
    assert {r.path for r in requests} == {"/v1/transactions"}
    assert {r.headers["Authorization"] for r in requests} == {f"Bearer {TOKEN}"}
    assert {r.headers["Content-Type"] for r in requests} == {"application/json"}
    txns = [transaction_from_dict(r.json()) for r in requests]
    delivered = [(t.user.username, t.events[0].name) for t in txns]
    # first delivery: both INBOXes are created; then alice's second delivery
    assert delivered == [
        ("alice@example.com", "MailboxCreate"),
        ("alice@example.com", "MessageNew"),
        ("bob@example.com", "MailboxCreate"),
        ("bob@example.com", "MessageNew"),
        ("alice@example.com", "MessageNew"),
    ]


def test_an_ingress_error_spools_the_transaction_and_the_delivery_still_succeeds() -> None:
    with recording_server(status=500) as ingress, BridgedDovecot("http", url=ingress.url, token=TOKEN) as dovecot:
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        spooled = dovecot.take_spool()
        warnings = dovecot.log_lines("push-notification-bridge")
    assert [t["events"][0]["name"] for t in spooled] == ["MailboxCreate", "MessageNew"]
    # after the first failure the bridge spools directly for a while (http_pause_secs)
    assert len(ingress.requests) == 1
    # the spooled copy keeps the id the ingress saw, so a receiver can de-duplicate
    assert spooled[0]["id"] == ingress.requests[0].json()["id"]
    assert len(warnings) == 1
    assert "500 Internal Server Error" in warnings[0] and "spooling for the next 10s" in warnings[0]
    assert TOKEN not in warnings[0]


def test_a_daemon_that_is_not_listening_costs_a_refused_connect_and_the_spool() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/transactions"
    with BridgedDovecot("http", url=url, token=TOKEN) as dovecot:
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        assert len(dovecot.take_spool()) == 2
        assert dovecot.log_lines("Error:") == []


def test_a_hanging_ingress_is_given_up_after_the_timeout() -> None:
    with (
        recording_server(delay=3.0) as ingress,
        BridgedDovecot(
            "http",
            url=ingress.url,
            token=TOKEN,
            timeout_msecs=300,
            plugin={"push_notification_bridge_http_pause_secs": "0"},
        ) as dovecot,
    ):
        dovecot.set_metadata("alice@example.com", "/private/x", "y")  # INBOX exists before we time
        dovecot.take_spool()
        started = time.monotonic()
        assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        elapsed = time.monotonic() - started
        spooled = dovecot.take_spool()
    assert [t["events"][0]["name"] for t in spooled] == ["MessageNew"]
    assert elapsed < 2.0, f"delivery took {elapsed:.2f}s with a 300 ms bridge timeout"


def test_after_a_timeout_the_next_deliveries_spool_at_once() -> None:
    with (
        recording_server(delay=3.0) as ingress,
        BridgedDovecot("http", url=ingress.url, token=TOKEN, timeout_msecs=300) as dovecot,
    ):
        dovecot.set_metadata("alice@example.com", "/private/x", "y")  # doveadm's INBOX creation: one timeout
        assert len(dovecot.take_spool()) == 1
        started = time.monotonic()
        for _ in range(3):
            assert [code for code, _ in dovecot.deliver(MAIL)] == [250]
        elapsed = time.monotonic() - started
        spooled = dovecot.take_spool()
    assert [t["events"][0]["name"] for t in spooled] == ["MessageNew"] * 3
    assert len(ingress.requests) == 1
    assert elapsed < 0.9, f"3 deliveries took {elapsed:.2f}s while the ingress was paused"


def test_a_missing_spool_never_fails_a_delivery_and_says_what_to_do() -> None:
    with BridgedDovecot() as dovecot:
        for sub in ("new", "tmp"):
            (dovecot.spool / sub).rmdir()
        replies = dovecot.deliver(MAIL, ["alice@example.com", "bob@example.com"])
        errors = dovecot.wait_for_log("push-notification-bridge", count=4)
    assert [code for code, _ in replies] == [250, 250]
    assert len(errors) == 4  # INBOX creation and delivery, per user
    assert all("cannot write" in line and "dovecot-config" in line for line in errors)
