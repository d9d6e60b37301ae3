"""Fixtures: the OX endpoint (plain and HTTPS), a dead port, and a guard that no test ever
logs the endpoint's password."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from ox_testkit import PASSWORD, OxEndpoint, TlsFiles, make_tls_files, start_endpoint
from push_notification.testing.net import free_port


@pytest.fixture
async def ox_endpoint() -> AsyncIterator[OxEndpoint]:
    endpoint = OxEndpoint()
    runner = await start_endpoint(endpoint)
    yield endpoint
    endpoint.stop()
    await runner.cleanup()


@pytest.fixture(name="free_port")
def _free_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    return free_port()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed CA and a certificate it issued for 127.0.0.1."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_endpoint(tls_files: TlsFiles) -> AsyncIterator[OxEndpoint]:
    endpoint = OxEndpoint()
    runner = await start_endpoint(endpoint, tls_files.server_context())
    yield endpoint
    endpoint.stop()
    await runner.cleanup()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything logged, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    yield caplog


@pytest.fixture(autouse=True)
def password_never_logged(logs: pytest.LogCaptureFixture) -> Iterator[None]:
    """The endpoint's password appears in no log line, message or traceback of any test."""
    yield
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = [*logs.get_records("setup"), *logs.get_records("call")]
    text = "\n".join(formatter.format(record) for record in records)
    assert PASSWORD not in text
