"""Timeouts and retries, as the OX driver: transient failures are retried, other 4xx never."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from push_notification.errors import PermanentError, RetryableError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.testing.net import free_port
from push_notification_webhook import WebhookDriver
from push_notification_webhook.sender import safe_url

NEW = make_event("MessageNew")


async def run(endpoint: Any, settings: dict[str, str] | None = None, url: str | None = None) -> Exception | None:
    url = url or f"{endpoint.url if endpoint else ''}/hook"
    async with DriverHarness(WebhookDriver, {"url": url, **(settings or {})}) as harness:
        driver = harness.plugin
        txn = make_transaction(NEW)
        assert driver.begin_txn(txn)
        driver.event(txn, NEW)
        try:
            await driver.end_txn(txn, True)
        except (RetryableError, PermanentError) as exc:
            return exc
    return None


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_transient_statuses_are_retried(endpoint: Any, status: int) -> None:
    endpoint.responses = [(status, {})]
    assert await run(endpoint) is None
    assert len(endpoint.received) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 410])
async def test_other_client_errors_are_permanent_and_not_retried(endpoint: Any, status: int) -> None:
    endpoint.responses = [(status, {})] * 3
    error = await run(endpoint, {"max_retries": "3"})
    assert isinstance(error, PermanentError)
    assert f": {status} " in str(error) and "(1 attempt in" in str(error)
    assert len(endpoint.received) == 1


async def test_attempts_run_out_into_a_retryable_error(endpoint: Any) -> None:
    endpoint.responses = [(500, {})] * 5
    error = await run(endpoint, {"http_client_request_max_attempts": "3"})
    assert isinstance(error, RetryableError)
    assert "500 Internal Server Error (3 attempts in" in str(error)
    assert len(endpoint.received) == 3


async def test_retry_after_is_honoured(endpoint: Any) -> None:
    endpoint.responses = [(429, {"Retry-After": "1"})]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await run(endpoint) is None
    assert loop.time() - started >= 0.95
    assert len(endpoint.received) == 2


async def test_a_long_retry_after_is_left_to_the_queue(endpoint: Any) -> None:
    endpoint.responses = [(503, {"Retry-After": "120"})]
    error = await run(endpoint, {"max_retries": "5"})
    assert isinstance(error, RetryableError) and error.retry_after == 120
    assert len(endpoint.received) == 1


async def test_a_slow_endpoint_times_out_and_is_retried(endpoint: Any) -> None:
    calls = 0

    async def slow_first(request: web.Request, received: Any) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(1)
        return web.Response(text="ok")

    endpoint.handler = slow_first
    assert await run(endpoint, {"timeout_msecs": "200"}) is None
    assert len(endpoint.received) == 2


async def test_a_refused_connection_is_retryable() -> None:
    error = await run(None, {"http_client_request_timeout": "1s"}, url=f"http://127.0.0.1:{free_port()}/hook")
    assert isinstance(error, RetryableError)
    assert "(2 attempts in" in str(error)


async def test_secrets_in_urls_never_reach_the_log(endpoint: Any, caplog: pytest.LogCaptureFixture) -> None:
    endpoint.responses = [(404, {})]
    url = endpoint.url.replace("http://", "http://user:hunter2@") + "/services/T0/B0/SecretPath?token=tok123"
    error = await run(endpoint, url=url)
    assert isinstance(error, PermanentError)
    assert str(error).startswith(f"POST {endpoint.url}/... (webhook-id ")
    for secret in ("hunter2", "SecretPath", "tok123"):
        assert secret not in str(error)


def test_safe_url_keeps_only_scheme_host_and_port() -> None:
    assert safe_url("https://u:p@hooks.example.com:8443/a/b?c=d") == "https://hooks.example.com:8443/..."
    assert safe_url("http://ntfy.example.com") == "http://ntfy.example.com/"


async def test_one_failing_event_does_not_stop_the_rest_of_the_transaction(endpoint: Any) -> None:
    endpoint.responses = [(400, {})]
    txn = make_transaction(make_event("MessageNew", uid=1), make_event("MessageNew", uid=2))
    async with DriverHarness(WebhookDriver, {"url": endpoint.url}) as harness:
        await harness.send(txn)
    assert [r.json()["data"]["event"]["uid"] for r in endpoint.received] == [1, 2]
    assert harness.plugin.delivered == 1


async def test_instances_are_independent(endpoint: Any) -> None:
    endpoint.responses = [(400, {})]
    async with (
        DriverHarness(WebhookDriver, {"url": endpoint.url + "/a"}, instance="a") as a,
        DriverHarness(WebhookDriver, {"url": endpoint.url + "/b"}, instance="b") as b,
    ):
        await a.send(make_transaction(NEW))
        await b.send(make_transaction(NEW))
    assert (a.plugin.delivered, b.plugin.delivered) == (0, 1)


async def test_an_unavailable_endpoint_stops_the_transaction_and_a_retry_resumes_it(endpoint: Any) -> None:
    endpoint.responses = [(200, {}), (503, {})]
    txn = make_transaction(*(make_event("MessageNew", uid=uid) for uid in (1, 2, 3)), id="t9")
    async with DriverHarness(WebhookDriver, {"url": endpoint.url, "max_retries": "0"}) as harness:
        driver = harness.plugin
        for _ in range(2):  # the first delivery, then the queue's retry of the same transaction
            driver.begin_txn(txn)
            for event in txn.events:
                driver.event(txn, event)
            try:
                await driver.end_txn(txn, True)
            except RetryableError as exc:
                assert str(exc).startswith("1 of 3 notifications failed, 1 more not attempted: POST ")
    assert [r.json()["data"]["id"] for r in endpoint.received] == ["t9.0", "t9.1", "t9.1", "t9.2"]
    assert driver.delivered == 3
