"""HTTPS: certificates are verified (system CAs, or ssl_client_ca_file for an internal CA)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ox_testkit import OxEndpoint, activated, harness
from push_notification.testing import make_event, make_transaction
from push_notification.testing.tls import TlsFiles
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


@pytest.fixture
def hashed_ca_dir(tls_files: TlsFiles, tmp_path: Path) -> Path:
    """A CA directory as OpenSSL reads it: the CA under its subject hash."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command names CA files by subject hash; it is not installed")
    subject_hash = subprocess.run(
        [openssl, "x509", "-subject_hash", "-noout", "-in", str(tls_files.ca_file)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    shutil.copy(tls_files.ca_file, tmp_path / f"{subject_hash}.0")
    return tmp_path


async def test_a_hashed_ca_directory_given_by_ssl_client_ca_dir_is_accepted(
    tls_endpoint: OxEndpoint, hashed_ca_dir: Path
) -> None:
    settings = {"url": tls_endpoint.url(), "ssl_client_ca_dir": str(hashed_ca_dir)}
    async with harness(settings, metadata=activated("alice")) as h:
        await h.send(new_mail())
    assert len(tls_endpoint.received) == 1
