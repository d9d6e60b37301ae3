"""Dovecot's http_client_*/ssl_client_* settings, shared by the HTTP drivers."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from push_notification.errors import ConfigError
from push_notification.http import read_http_client_settings
from push_notification.settings import Settings
from push_notification.testing.tls import CA_NAME, make_tls_files


def read(https: bool = True, **values: str):  # type: ignore[no-untyped-def]
    return read_http_client_settings(Settings.from_dict("web1", values), https=https)


def test_defaults_are_dovecot_2_4_4s() -> None:
    settings = read(https=False)
    assert (settings.request_timeout, settings.max_attempts, settings.max_parallel_connections) == (2.0, 2, 1)
    assert settings.ssl_context is None


def test_dovecot_2_3_names_are_accepted() -> None:
    settings = read(timeout_msecs="500", max_retries="3")
    assert (settings.request_timeout, settings.max_attempts) == (0.5, 4)


def test_https_verifies_certificates_unless_turned_off() -> None:
    assert read().ssl_context is not None and read().ssl_context.verify_mode == ssl.CERT_REQUIRED  # type: ignore[union-attr]
    assert read(ssl_client_require_valid_cert="no").ssl_context.verify_mode == ssl.CERT_NONE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"timeout_msecs": "500", "http_client_request_timeout": "1s"}, "'timeout_msecs': is the Dovecot 2.3 name of"),
        ({"http_client_request_timeout": "0"}, "must be greater than 0"),
        ({"max_retries": "many"}, "'max_retries': invalid number"),
        ({"ssl_client_ca_dir": "/nonexistent"}, "/nonexistent is not a directory"),
    ],
)
def test_mistakes_are_one_line_naming_instance_and_setting(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="push_notification web1: setting ") as info:
        read(**values)
    assert message in str(info.value)


def test_an_unreadable_ca_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match=f"cannot load CA certificates from {missing}: No such file"):
        read(ssl_client_ca_file=str(missing))


def test_verification_is_strict_on_every_python_unless_ssl_client_strict_is_no() -> None:
    assert read().ssl_context.verify_flags & ssl.VERIFY_X509_STRICT  # type: ignore[union-attr]
    relaxed = read(ssl_client_strict="no").ssl_context
    assert relaxed is not None and not relaxed.verify_flags & ssl.VERIFY_X509_STRICT
    assert relaxed.verify_mode == ssl.CERT_REQUIRED and relaxed.check_hostname


def test_a_well_made_internal_ca_is_accepted(tmp_path: Path) -> None:
    ca_file = make_tls_files(tmp_path).ca_file
    assert read(ssl_client_ca_file=str(ca_file)).ssl_context is not None


def test_a_ca_strict_verification_would_refuse_is_one_line_naming_file_and_fix(tmp_path: Path) -> None:
    ca_file = make_tls_files(tmp_path, conforming=False).ca_file
    with pytest.raises(ConfigError) as info:
        read(ssl_client_ca_file=str(ca_file))
    message = str(info.value)
    assert "push_notification web1: setting 'ssl_client_ca_file': the CA certificate " in message
    assert f"'commonName={CA_NAME}' in {ca_file} has no key usage extension" in message
    assert "reissue it with the openssl.cnf extensions 'basicConstraints = critical, CA:TRUE', " in message
    assert message.endswith("or set ssl_client_strict = no for this instance") and "\n" not in message


def test_ssl_client_strict_no_accepts_that_ca(tmp_path: Path) -> None:
    ca_file = make_tls_files(tmp_path, conforming=False).ca_file
    assert read(ssl_client_ca_file=str(ca_file), ssl_client_strict="no").ssl_context is not None
