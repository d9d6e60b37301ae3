"""The retrying HTTP sender every HTTP driver shares, against a real aiohttp server on 127.0.0.1.

A 2xx is returned; transient failures (408, 429, 5xx, refused connections, timeouts) are
tried again up to ``max_attempts``; a ``Retry-After`` is waited for in place only up to the
policy's limit, a longer one is left to the queue; other 4xx and redirects are never retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest
from aiohttp import web
from push_notification.errors import DriverError, PermanentError, RetryableError
from push_notification.http import (
    Failure,
    HttpClientSettings,
    HttpPermanentError,
    HttpRequest,
    HttpResponse,
    HttpRetryableError,
    HttpSender,
    Part,
    PartialDeliveries,
    RequestBuilder,
    RetryPolicy,
    combined_error,
    parse_retry_after,
    safe_url,
)
from push_notification.testing.loopback import loopback_server


@dataclass
class Endpoint:
    """Answers each request with the next scripted (status, headers), then 200 "ok"."""

    url: str = ""
    base: str = ""
    replies: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    #: Scripted statuses per path, used before ``replies``.
    by_path: dict[str, list[int]] = field(default_factory=dict)
    #: (monotonic time, headers) of every request received.
    received: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.append((time.monotonic(), dict(request.headers)))
        self.paths.append(request.path)
        scripted = self.by_path.get(request.path)
        if scripted:
            status, headers = scripted.pop(0), dict[str, str]()
        else:
            status, headers = self.replies.pop(0) if self.replies else (200, {})
        return web.Response(status=status, headers=headers, text=f"answer {len(self.received)}")


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    async with loopback_server(ep.handle) as base:
        ep.base = base
        ep.url = f"{base}/push/s3cret-path?token=t0k"
        yield ep


def settings(max_attempts: int, timeout: float) -> HttpClientSettings:
    return HttpClientSettings(
        request_timeout=timeout, max_attempts=max_attempts, max_parallel_connections=1, ssl_context=None
    )


async def send(
    request: HttpRequest | RequestBuilder,
    policy: RetryPolicy | None = None,
    *,
    max_attempts: int = 3,
    timeout: float = 2.0,
) -> HttpResponse | HttpRetryableError | HttpPermanentError:
    """Send with a new sender; the outcome is the response or the error raised."""
    sender = HttpSender(settings(max_attempts, timeout), policy)
    try:
        return await sender.send(request)
    except (HttpRetryableError, HttpPermanentError) as exc:
        return exc
    finally:
        await sender.close()


def ok(outcome: object) -> bool:
    return isinstance(outcome, HttpResponse) and outcome.status == 200


async def test_a_2xx_is_returned_with_its_body(endpoint: Endpoint) -> None:
    response = await send(HttpRequest("POST", endpoint.url, b"{}"))
    assert isinstance(response, HttpResponse) and (response.status, response.body) == (200, b"answer 1")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_transient_statuses_are_tried_again(endpoint: Endpoint, status: int) -> None:
    endpoint.replies = [(status, {})]
    response = await send(HttpRequest("POST", endpoint.url))
    assert ok(response)
    assert len(endpoint.received) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
async def test_other_4xx_and_redirects_are_permanent_at_the_first_attempt(endpoint: Endpoint, status: int) -> None:
    endpoint.replies = [(status, {"Location": "/elsewhere"})] * 3
    error = await send(HttpRequest("POST", endpoint.url))
    assert isinstance(error, HttpPermanentError) and error.status == status
    assert "(1 attempt in " in str(error)
    assert len(endpoint.received) == 1


async def test_spent_attempts_end_in_a_retryable_error_naming_status_and_attempts(endpoint: Endpoint) -> None:
    endpoint.replies = [(503, {})] * 3
    error = await send(HttpRequest("PUT", endpoint.url))
    assert isinstance(error, HttpRetryableError) and error.status == 503
    assert str(error).startswith(f"PUT {safe_url(endpoint.url)}: 503 Service Unavailable (3 attempts in ")
    assert "s3cret-path" not in str(error) and "t0k" not in str(error)


async def test_a_short_retry_after_is_waited_for_in_place(endpoint: Endpoint) -> None:
    endpoint.replies = [(429, {"Retry-After": "1"})]
    response = await send(HttpRequest("POST", endpoint.url))
    assert ok(response)
    (first, _), (second, _) = endpoint.received
    assert second - first >= 0.95


async def test_a_retry_after_as_an_http_date_is_honoured(endpoint: Endpoint) -> None:
    endpoint.replies = [(503, {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)})]
    response = await send(HttpRequest("POST", endpoint.url))
    assert ok(response)
    (first, _), (second, _) = endpoint.received
    assert second - first >= 0.9  # the date has one-second resolution


async def test_a_retry_after_beyond_the_policy_limit_is_left_to_the_queue(endpoint: Endpoint) -> None:
    endpoint.replies = [(503, {"Retry-After": "120"})]
    error = await send(HttpRequest("POST", endpoint.url), RetryPolicy(max_wait_in_place=10))
    assert isinstance(error, HttpRetryableError) and error.retry_after == 120
    assert len(endpoint.received) == 1


async def test_the_last_attempt_passes_its_retry_after_on_to_the_queue(endpoint: Endpoint) -> None:
    endpoint.replies = [(429, {"Retry-After": "0"}), (429, {"Retry-After": "3"})]
    error = await send(HttpRequest("POST", endpoint.url), max_attempts=2)
    assert isinstance(error, HttpRetryableError) and error.retry_after == 3


async def test_each_attempt_gets_a_freshly_built_request(endpoint: Endpoint) -> None:
    endpoint.replies = [(500, {}), (500, {})]
    built: list[int] = []

    def build(attempt: int) -> HttpRequest:
        built.append(attempt)
        return HttpRequest("POST", endpoint.url, b"x", {"X-Attempt": str(attempt)})

    response = await send(build)
    assert ok(response)
    assert built == [1, 2, 3]
    assert [headers["X-Attempt"] for _, headers in endpoint.received] == ["1", "2", "3"]


async def test_a_refused_connection_is_retried_then_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await send(HttpRequest("POST", f"http://127.0.0.1:{port}/"), max_attempts=2)
    assert isinstance(error, HttpRetryableError)
    assert f"connect(127.0.0.1:{port}) failed: Connection refused (2 attempts in " in str(error)


async def test_an_endpoint_that_does_not_answer_times_out_per_attempt() -> None:
    stalled = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await stalled.wait()
        return web.Response()

    async with loopback_server(never) as base:
        error = await send(HttpRequest("POST", base + "/"), timeout=0.1)
        stalled.set()  # lets the server shut down
    assert isinstance(error, HttpRetryableError)
    assert "Request timed out after 0.1s (3 attempts in " in str(error)


async def test_a_status_hint_names_what_to_check(endpoint: Endpoint) -> None:
    endpoint.replies = [(401, {})]
    policy = RetryPolicy(status_hints={401: "check the token"})
    error = await send(HttpRequest("POST", endpoint.url, label="Sending to the endpoint"), policy)
    assert str(error).startswith("Sending to the endpoint: 401 Unauthorized (check the token) (1 attempt in ")


def test_backoff_doubles_up_to_the_cap_with_jitter_below_it() -> None:
    policy = RetryPolicy(backoff_first=0.1, backoff_max=2.0, jitter=0.5)
    for attempt, full in [(1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (10, 2.0)]:
        waits = {policy.backoff(attempt) for _ in range(50)}
        assert all(full / 2 <= wait <= full for wait in waits)
        assert len(waits) > 1  # spread, so instances that failed together do not retry together
    assert replace(policy, jitter=0.0).backoff(3) == 0.4


@pytest.mark.parametrize(
    ("failure", "attempt", "wait"),
    [
        (Failure("500", retryable=True, status=500), 3, None),  # attempts spent
        (Failure("400", retryable=False, status=400), 1, None),
        (Failure("408", retryable=True, status=408), 1, 0.0),  # at once, as Dovecot
        (Failure("503", retryable=True, retry_after=2.0, status=503), 1, 2.0),
        (Failure("503", retryable=True, retry_after=5.0, status=503), 1, None),  # to the queue
        (Failure("certificate", retryable=True, in_place=False), 1, None),
    ],
)
def test_the_policy_says_how_long_to_wait_or_to_stop(failure: Failure, attempt: int, wait: float | None) -> None:
    assert RetryPolicy(max_wait_in_place=2.0).next_wait(failure, attempt, max_attempts=3) == wait


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 0 ", 0.0), ("soon", None), ("", None), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_a_future_http_date() -> None:
    wait = parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert wait is not None and 28 <= wait <= 30


def test_safe_url_keeps_only_scheme_host_and_port() -> None:
    assert safe_url("https://u:p@push.example.com:8443/a/b?c=d") == "https://push.example.com:8443/..."
    assert safe_url("http://ntfy.example.com") == "http://ntfy.example.com/"


# ---------------------------------------------------------------- partial deliveries


async def deliver(
    endpoint: Endpoint, partial: PartialDeliveries, paths: list[str], *, ordered: bool
) -> DriverError | None:
    """One transaction ``t1`` with a request per path, sent as a driver does at ``end_txn``."""
    sender = HttpSender(settings(max_attempts=1, timeout=2.0))
    parts: list[Part] = [
        (path, f"part {path}", functools.partial(sender.send, HttpRequest("POST", endpoint.base + path)))
        for path in paths
    ]
    try:
        await partial.send("t1", parts, ordered=ordered)
    except DriverError as exc:
        return exc
    finally:
        await sender.close()
    return None


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_retried_transaction_sends_only_what_did_not_get_through(endpoint: Endpoint, ordered: bool) -> None:
    endpoint.by_path = {"/b": [503]}
    partial = PartialDeliveries()
    error = await deliver(endpoint, partial, ["/a", "/b", "/c"], ordered=ordered)
    assert isinstance(error, RetryableError)
    assert await deliver(endpoint, partial, ["/a", "/b", "/c"], ordered=ordered) is None  # the queue's retry
    first_round = ["/a", "/b"] if ordered else ["/a", "/b", "/c"]
    second_round = ["/b", "/c"] if ordered else ["/b"]
    assert endpoint.paths == first_round + second_round
    assert len(partial) == 0  # delivered in full: nothing left to remember


async def test_in_order_a_retryable_failure_stops_the_rest_so_nothing_overtakes_it(endpoint: Endpoint) -> None:
    endpoint.by_path = {"/a": [503]}
    error = await deliver(endpoint, PartialDeliveries(), ["/a", "/b", "/c"], ordered=True)
    assert isinstance(error, RetryableError)
    assert str(error).startswith("1 of 3 notifications failed, 2 more not attempted: part /a: POST ")
    assert endpoint.paths == ["/a"]


async def test_in_order_a_permanent_failure_fails_that_request_only(endpoint: Endpoint) -> None:
    endpoint.by_path = {"/a": [400]}
    error = await deliver(endpoint, PartialDeliveries(), ["/a", "/b"], ordered=True)
    assert isinstance(error, PermanentError)
    assert endpoint.paths == ["/a", "/b"]


async def test_what_succeeded_is_remembered_across_several_retries(endpoint: Endpoint) -> None:
    endpoint.by_path = {"/a": [400, 400, 200], "/c": [503]}
    partial = PartialDeliveries()
    outcomes = [await deliver(endpoint, partial, ["/a", "/b", "/c"], ordered=True) for _ in range(3)]
    assert [type(outcome) for outcome in outcomes] == [RetryableError, PermanentError, type(None)]
    assert endpoint.paths == ["/a", "/b", "/c", "/a", "/c", "/a"]


async def test_the_memory_of_partial_deliveries_is_bounded_oldest_first(endpoint: Endpoint) -> None:
    endpoint.by_path = {"/b": [503] * 10}
    partial = PartialDeliveries(limit=2)
    sender = HttpSender(settings(max_attempts=1, timeout=2.0))
    try:
        for txn in ("t1", "t2", "t3"):
            parts: list[Part] = [
                (path, "", functools.partial(sender.send, HttpRequest("POST", endpoint.base + path)))
                for path in ("/a", "/b")
            ]
            with pytest.raises(RetryableError):
                await partial.send(txn, parts, ordered=False)
        assert len(partial) == 2
        endpoint.paths.clear()
        with pytest.raises(RetryableError):
            await partial.send("t1", parts, ordered=False)  # forgotten: sent whole again
    finally:
        await sender.close()
    assert sorted(endpoint.paths) == ["/a", "/b"]


def test_a_combined_error_is_retryable_if_any_part_is_with_the_longest_retry_after() -> None:
    failures: list[tuple[str, DriverError]] = [
        ("UID 1", PermanentError("400 Bad Request")),
        ("UID 2", RetryableError("503", retry_after=30)),
        ("UID 3", RetryableError("429", retry_after=5)),
        ("UID 4", RetryableError("500")),
    ]
    error = combined_error(failures, total=6)
    assert isinstance(error, RetryableError) and error.retry_after == 30
    assert str(error) == "4 of 6 notifications failed: UID 1: 400 Bad Request; UID 2: 503; UID 3: 429; and 1 more"
    lone = PermanentError("404")
    assert combined_error([("UID 1", lone)], total=1) is lone


class ReasonPolicy(RetryPolicy):
    """A policy reading the error reason in the body, as an APNs or FCM driver's does."""

    def classify(self, response: HttpResponse) -> Failure | None:
        failure = RetryPolicy.classify(self, response)
        if failure is not None and b"TooManyProviderTokenUpdates" in response.body:
            return replace(failure, retryable=True, retry_after=60.0)
        return failure


async def test_a_policy_may_read_the_body_and_the_error_keeps_the_answer() -> None:
    async def reason(request: web.Request) -> web.Response:
        text = '{"reason":"TooManyProviderTokenUpdates"}' if request.path == "/busy" else '{"reason":"Unregistered"}'
        return web.json_response(text=text, status=403 if request.path == "/busy" else 410)

    async with loopback_server(reason) as base:
        busy = await send(HttpRequest("POST", base + "/busy"), ReasonPolicy())
        gone = await send(HttpRequest("POST", base + "/gone"), ReasonPolicy())
    assert isinstance(busy, HttpRetryableError) and busy.retry_after == 60.0
    assert isinstance(gone, HttpPermanentError) and gone.status == 410
    assert gone.response is not None and gone.response.body == b'{"reason":"Unregistered"}'
