"""HTTPS: certificates are verified (system CAs, or ssl_client_ca_file for an internal CA)."""

from __future__ import annotations

import pytest
from ox_testkit import OxEndpoint, TlsFiles, activated, harness
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction


def new_mail() -> Transaction:
    return make_transaction(make_event("MessageNew", uid=1, subject="Hi"), user="alice")


async def test_an_internal_ca_given_by_ssl_client_ca_file_is_accepted(
    tls_endpoint: OxEndpoint, tls_files: TlsFiles
) -> None:
    settings = {"url": tls_endpoint.url(), "ssl_client_ca_file": str(tls_files.ca_file)}
    async with harness(settings, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert tls_endpoint.url().startswith("https://")
    assert len(tls_endpoint.received) == 1
    assert tls_endpoint.rejected == []


async def test_without_the_ca_the_certificate_is_refused_and_not_retried(
    tls_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    async with harness({"url": tls_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert tls_endpoint.received == []
    [line] = [r.getMessage() for r in logs.records if r.levelname == "ERROR"]
    assert "PermanentError" in line
    assert "certificate" in line and "ssl_client_ca_file" in line
    assert "(1 attempt in " in line


async def test_verification_can_be_turned_off_explicitly(tls_endpoint: OxEndpoint) -> None:
    settings = {"url": tls_endpoint.url(), "ssl_client_require_valid_cert": "no"}
    async with harness(settings, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert len(tls_endpoint.received) == 1
