"""HTTP behaviour: success, what is retried and what is not, timeouts, refused connections.

A failed request ends in one error line (status, reason, attempts; URL with the password
masked) and never in a traceback."""

from __future__ import annotations

import email.utils
import logging

import pytest
from ox_testkit import PASSWORD, OxEndpoint, Reply, activated, harness
from push_notification.errors import PermanentError, RetryableError
from push_notification.settings import Settings
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction
from push_notification_ox.config import read_config
from push_notification_ox.sender import Sender


def new_mail(uid: int = 1) -> Transaction:
    return make_transaction(make_event("MessageNew", uid=uid, subject="Hi"), user="alice")


def errors(logs: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in logs.records if r.levelname == "ERROR"]


async def test_500_then_200_is_retried_and_succeeds(ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture) -> None:
    ox_endpoint.replies = [Reply(500)]
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert ox_endpoint.received[0].body == ox_endpoint.received[1].body
    assert len(ox_endpoint.received) == 2
    assert errors(logs) == []
    assert any("Notification sent successfully: 200 OK" in r.getMessage() for r in logs.records)


async def test_400_is_not_retried_and_is_logged_once(ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture) -> None:
    ox_endpoint.replies = [Reply(400)]
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert len(ox_endpoint.received) == 1
    [line] = errors(logs)
    assert "PermanentError" in line
    assert "400 Bad Request (1 attempt in " in line
    assert f"http://login:***@127.0.0.1:{ox_endpoint.port}/" in line


async def test_500_on_every_attempt_gives_up_after_max_attempts(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    ox_endpoint.replies = [Reply(500)] * 3
    settings = {"url": ox_endpoint.url(), "http_client_request_max_attempts": 3}
    async with harness(settings, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert len(ox_endpoint.received) == 3
    [line] = errors(logs)
    assert "RetryableError" in line and "500 Internal Server Error (3 attempts in " in line


async def test_max_retries_of_dovecot_23_counts_retries_not_attempts(ox_endpoint: OxEndpoint) -> None:
    ox_endpoint.replies = [Reply(503)] * 5
    async with harness({"url": ox_endpoint.url(), "max_retries": 0}, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert len(ox_endpoint.received) == 1


async def test_408_and_429_are_retried(ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture) -> None:
    ox_endpoint.replies = [Reply(408), Reply(429, {"Retry-After": "0"})]
    async with harness(
        {"url": ox_endpoint.url(), "http_client_request_max_attempts": 3}, metadata=activated("alice")
    ) as h:
        await h.send(new_mail())
    assert len(ox_endpoint.received) == 3
    assert errors(logs) == []


async def test_each_attempt_carries_the_date_it_was_sent_at(ox_endpoint: OxEndpoint) -> None:
    # As Dovecot's lib-http: the Date of a request sent again is that of the new attempt.
    ox_endpoint.replies = [Reply(503, {"Retry-After": "1"})]
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(new_mail())
    first, second = (email.utils.parsedate_to_datetime(r.headers["Date"]) for r in ox_endpoint.received)
    assert (second - first).total_seconds() >= 1
    assert ox_endpoint.received[0].body == ox_endpoint.received[1].body


async def test_a_retry_after_longer_than_the_timeout_is_left_to_the_queue(ox_endpoint: OxEndpoint) -> None:
    ox_endpoint.replies = [Reply(503, {"Retry-After": "120"})]
    sender = Sender(read_config(Settings.from_dict("ox", {"url": ox_endpoint.url()})), _log(), "")
    try:
        with pytest.raises(RetryableError) as caught:
            await sender.put(b'{"user":"alice","event":"messageNew"}')
    finally:
        await sender.close()
    assert caught.value.retry_after == 120
    assert "503 Service Unavailable (1 attempt in " in str(caught.value)
    assert len(ox_endpoint.received) == 1


async def test_a_redirect_is_refused(ox_endpoint: OxEndpoint) -> None:
    ox_endpoint.replies = [Reply(302, {"Location": "/elsewhere"})]
    sender = Sender(read_config(Settings.from_dict("ox", {"url": ox_endpoint.url()})), _log(), "")
    try:
        with pytest.raises(PermanentError, match="302 Found \\(Redirect refused\\)"):
            await sender.put(b'{"user":"alice","event":"messageNew"}')
    finally:
        await sender.close()


async def test_an_endpoint_that_does_not_answer_times_out_per_attempt(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    ox_endpoint.replies = [Reply(delay=2.0), Reply(delay=2.0)]
    settings = {"url": ox_endpoint.url(), "http_client_request_timeout": "150ms"}
    async with harness(settings, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert len(ox_endpoint.received) == 2
    [line] = errors(logs)
    assert "Request timed out after 0.15s (2 attempts in " in line


async def test_timeout_msecs_of_dovecot_23_is_milliseconds(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    ox_endpoint.replies = [Reply(delay=2.0)]
    async with harness(
        {"url": ox_endpoint.url(), "timeout_msecs": 100, "max_retries": 0}, metadata=activated("alice")
    ) as h:
        await h.send(new_mail())
    [line] = errors(logs)
    assert "Request timed out after 0.1s (1 attempt in " in line


async def test_connection_refused_is_retried_then_reported(free_port: int, logs: pytest.LogCaptureFixture) -> None:
    url = f"http://login:{PASSWORD}@127.0.0.1:{free_port}/preliminary/http-notify/v1/notify"
    async with harness({"url": url}, metadata=activated("alice")) as h:
        await h.send(new_mail())
    [line] = errors(logs)
    assert f"connect(127.0.0.1:{free_port}) failed: Connection refused (2 attempts in " in line
    assert "\n" not in line


async def test_connections_are_kept_alive_between_notifications(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(new_mail(1), new_mail(2), new_mail(3))
    assert len(ox_endpoint.received) == 3
    assert {r.headers.get("Connection", "").lower() for r in ox_endpoint.received} == {"keep-alive"}
    assert len({r.peer for r in ox_endpoint.received}) == 1


async def test_a_retried_transaction_resends_only_what_failed(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    ox_endpoint.replies = [Reply(400)]
    txn = make_transaction(*(make_event("MessageNew", uid=uid) for uid in (1, 2)), user="alice")
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(txn)
        [line] = errors(logs)
        assert "1 of 2 notifications failed: UID 1: " in line
        await h.send(txn)  # what a durable queue does with a failed transaction
    assert [b["imap-uid"] for b in ox_endpoint.bodies] == [1, 2, 1]


def _log() -> logging.Logger:
    return logging.getLogger("push_notification.driver.ox")


@pytest.mark.parametrize("connections", [1, 3])
async def test_new_messages_of_one_transaction_use_up_to_max_parallel_connections(
    ox_endpoint: OxEndpoint, connections: int
) -> None:
    ox_endpoint.replies = [Reply(delay=0.2)] * 3
    txn = make_transaction(*(make_event("MessageNew", uid=uid) for uid in (1, 2, 3)), user="alice")
    settings = {"url": ox_endpoint.url(), "http_client_max_parallel_connections": connections}
    async with harness(settings, metadata=activated("alice")) as h:
        await h.send(txn)
    assert len(ox_endpoint.received) == 3
    assert ox_endpoint.max_in_flight == connections


async def test_a_rejected_login_says_what_to_check(ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture) -> None:
    async with harness({"url": ox_endpoint.url(password="wr0ng-pw")}, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert ox_endpoint.rejected == ["authorization"]
    [line] = errors(logs)
    assert "PermanentError" in line
    assert "401 Unauthorized (check the login and password in url) (1 attempt in " in line
    assert "wr0ng-pw" not in logs.text


async def test_what_succeeded_is_remembered_across_several_retries(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    ox_endpoint.replies = [Reply(400), Reply(200), Reply(400)]
    txn = make_transaction(*(make_event("MessageNew", uid=uid) for uid in (1, 2)), user="alice")
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(txn)
        await h.send(txn)
        await h.send(txn)
    assert [b["imap-uid"] for b in ox_endpoint.bodies] == [1, 2, 1, 1]
