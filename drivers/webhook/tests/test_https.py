"""HTTPS: system CAs by default, ``ssl_client_ca_file`` for an internal CA, verification on."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from push_notification.errors import RetryableError
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification.testing.loopback import loopback_server
from push_notification_webhook import WebhookDriver


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def internal_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate it signed for 127.0.0.1 (ca.pem, server.pem, server.key)."""
    d = tmp_path_factory.mktemp("ca")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)  # fmt: skip
    return d


@pytest.fixture
async def https_url(internal_ca: Path) -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(internal_ca / "server.pem", internal_ca / "server.key")
    async with loopback_server(ok, ssl_context=context) as base:
        yield f"{base}/hook"


async def deliver(settings: dict[str, str]) -> DriverHarness:
    async with DriverHarness(WebhookDriver, settings) as harness:
        await harness.send(make_transaction(make_event("MessageNew")))
    return harness


async def test_an_internal_ca_given_by_ssl_client_ca_file_is_trusted(https_url: str, internal_ca: Path) -> None:
    harness = await deliver({"url": https_url, "ssl_client_ca_file": str(internal_ca / "ca.pem")})
    assert harness.plugin.delivered == 1


async def test_an_unknown_ca_is_refused(https_url: str) -> None:
    async with DriverHarness(WebhookDriver, {"url": https_url, "max_retries": "0"}) as harness:
        txn = make_transaction(make_event("MessageNew"))
        harness.plugin.begin_txn(txn)
        harness.plugin.event(txn, txn.events[0])
        with pytest.raises(RetryableError, match="certificate verify failed"):
            await harness.plugin.end_txn(txn, True)


async def test_a_refused_certificate_goes_to_the_queue_without_a_retry_in_place(https_url: str) -> None:
    async with DriverHarness(WebhookDriver, {"url": https_url, "http_client_request_max_attempts": "3"}) as harness:
        txn = make_transaction(make_event("MessageNew"))
        harness.plugin.begin_txn(txn)
        harness.plugin.event(txn, txn.events[0])
        with pytest.raises(RetryableError, match=r"TLS certificate not accepted: .*\(1 attempt in "):
            await harness.plugin.end_txn(txn, True)


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
