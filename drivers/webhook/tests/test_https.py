"""HTTPS: system CAs by default, ``ssl_client_ca_file`` for an internal CA, verification on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from push_notification.errors import PermanentError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.testing.loopback import loopback_server
from push_notification.testing.tls import TlsFiles, make_tls_files
from push_notification_webhook import WebhookDriver


@pytest.fixture(scope="module")
def internal_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made as real ones are, and a certificate it issued for 127.0.0.1."""
    return make_tls_files(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def stock_openssl_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA as ``openssl req -x509`` with the stock openssl.cnf makes it: no key usage."""
    return make_tls_files(tmp_path_factory.mktemp("stock-ca"), conforming=False)


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def https_url(internal_ca: TlsFiles) -> AsyncIterator[str]:
    async with loopback_server(ok, ssl_context=internal_ca.server_context()) as base:
        yield f"{base}/hook"


@pytest.fixture
async def stock_openssl_url(stock_openssl_ca: TlsFiles) -> AsyncIterator[str]:
    async with loopback_server(ok, ssl_context=stock_openssl_ca.server_context()) as base:
        yield f"{base}/hook"


async def refused(settings: dict[str, str], match: str) -> None:
    """One transaction's delivery fails for good (a certificate is not made trusted by retrying)
    with an error matching ``match``."""
    async with DriverHarness(WebhookDriver, settings) as harness:
        txn = make_transaction(make_event("MessageNew"))
        harness.plugin.begin_txn(txn)
        harness.plugin.event(txn, txn.events[0])
        with pytest.raises(PermanentError, match=match):
            await harness.plugin.end_txn(txn, True)


async def deliver(settings: dict[str, str]) -> DriverHarness:
    async with DriverHarness(WebhookDriver, settings) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    return harness


async def test_an_internal_ca_given_by_ssl_client_ca_file_is_trusted(https_url: str, internal_ca: TlsFiles) -> None:
    harness = await deliver({"url": https_url, "ssl_client_ca_file": str(internal_ca.ca_file)})
    assert harness.plugin.delivered == 1


async def test_a_refused_certificate_is_permanent_and_names_the_ca_setting(https_url: str) -> None:
    """As for the ox driver: retrying cannot make a certificate trusted, the setting can."""
    async with DriverHarness(WebhookDriver, {"url": https_url, "http_client_request_max_attempts": "3"}) as harness:
        txn = make_transaction(make_event("MessageNew"))
        harness.plugin.begin_txn(txn)
        harness.plugin.event(txn, txn.events[0])
        with pytest.raises(
            PermanentError, match=r"certificate verify failed.*set ssl_client_ca_file .*\(1 attempt in "
        ):
            await harness.plugin.end_txn(txn, True)


def test_a_ca_strict_verification_refuses_is_a_start_up_error_naming_file_and_fix(stock_openssl_ca: TlsFiles) -> None:
    from push_notification.errors import ConfigError

    settings = {"url": "https://127.0.0.1:9/", "ssl_client_ca_file": str(stock_openssl_ca.ca_file)}
    with pytest.raises(ConfigError) as info:
        DriverHarness(WebhookDriver, settings)
    message = str(info.value)
    assert "\n" not in message
    assert f"in {stock_openssl_ca.ca_file} has no key usage extension" in message
    assert "keyUsage = critical, keyCertSign, cRLSign" in message
    assert "set ssl_client_strict = no" in message


async def test_ssl_client_strict_no_accepts_that_ca_and_still_verifies(
    stock_openssl_url: str, stock_openssl_ca: TlsFiles
) -> None:
    settings = {
        "url": stock_openssl_url,
        "ssl_client_ca_file": str(stock_openssl_ca.ca_file),
        "ssl_client_strict": "no",
    }
    harness = await deliver(settings)
    assert harness.plugin.delivered == 1
    await refused(
        {"url": stock_openssl_url, "ssl_client_strict": "no", "max_retries": "0"}, "certificate verify failed"
    )


async def test_an_unknown_ca_is_refused(https_url: str) -> None:
    await refused({"url": https_url, "max_retries": "0"}, "certificate verify failed")


async def test_verification_can_be_turned_off_explicitly(https_url: str) -> None:
    harness = await deliver({"url": https_url, "ssl_client_require_valid_cert": "no"})
    assert harness.plugin.delivered == 1


def test_a_missing_ca_file_is_a_start_up_error(tmp_path: Path) -> None:
    from push_notification.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"setting 'ssl_client_ca_file': cannot load CA certificates from .*missing.pem: No such file"
    ):
        DriverHarness(
            WebhookDriver, {"url": "https://127.0.0.1:9/", "ssl_client_ca_file": str(tmp_path / "missing.pem")}
        )
