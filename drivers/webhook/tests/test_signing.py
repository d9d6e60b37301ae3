"""Standard Webhooks signatures, verified with the independent ``standardwebhooks`` library."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from push_notification.errors import ConfigError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_webhook import WebhookDriver
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def test_each_request_carries_a_verifiable_signature_and_a_stable_id(endpoint: Any) -> None:
    secret = new_secret()
    txn = make_transaction(make_event("MessageNew", uid=1, subject="Grüße"), make_event("MessageRead", uid=1), id="t1")
    async with DriverHarness(WebhookDriver, {"url": endpoint.url, "secret": secret}) as harness:
        await harness.send(txn)
    first, second = endpoint.received
    for got in endpoint.received:
        assert Webhook(secret).verify(got.body, got.headers)["data"]["transaction"] == "t1"
    # webhook-id = transaction id + the event's index in the transaction
    assert (first.headers["webhook-id"], second.headers["webhook-id"]) == ("t1.0", "t1.1")
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(first.body, first.headers)


async def test_several_secrets_sign_together_for_rotation(endpoint: Any) -> None:
    old, new = new_secret(), new_secret()
    async with DriverHarness(WebhookDriver, {"url": endpoint.url, "secret": f"{new} {old}"}) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    (got,) = endpoint.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)


async def test_a_retry_keeps_the_id_and_is_signed_again(endpoint: Any) -> None:
    secret = new_secret()
    endpoint.responses = [(503, {"Retry-After": "0"})]
    async with DriverHarness(WebhookDriver, {"url": endpoint.url, "secret": secret}) as harness:
        await harness.send(make_transaction(make_event("MessageNew"), id="t2"))
    first, retry = endpoint.received
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == "t2.0"
    Webhook(secret).verify(retry.body, retry.headers)


async def test_signing_works_with_any_preset_and_custom_body(endpoint: Any) -> None:
    secret = new_secret()
    settings = {
        "url": endpoint.url,
        "secret": secret,
        "body": "plain {{ user }}",
        "headers": {"Content-Type": "text/plain"},
    }
    async with DriverHarness(WebhookDriver, settings) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    (got,) = endpoint.received
    assert got.body == b"plain alice"
    assert got.headers["Content-Type"] == "text/plain"
    Webhook(secret).verify(got.body, got.headers, json_parse=False)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "secret 1 must start with 'whsec_'"),
        ("whsec_not*base64", "secret 1: the part after 'whsec_' is not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "secret 1 decodes to 5 bytes; use 24 to 64"),
    ],
)
def test_a_malformed_secret_is_a_start_up_error_that_does_not_show_it(secret: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        DriverHarness(WebhookDriver, {"url": "http://127.0.0.1:9/", "secret": secret})
    assert f"setting 'secret': {problem}" in str(err.value)
    assert secret.removeprefix("whsec_") not in str(err.value)
