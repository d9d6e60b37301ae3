"""Dovecot's ``http_client_*`` and ``ssl_client_*`` settings, for drivers that speak HTTP.

Read once at start-up, so a bad timeout or an unreadable CA file is a one-line ConfigError
naming the instance and the setting. Dovecot 2.4's names are the primary ones; 2.3's
``timeout_msecs`` and ``max_retries`` (= attempts - 1) are accepted too, but not both names of
one setting at once.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from push_notification.settings import Settings
from push_notification.x509_strict import CA_EXTENSIONS_FIX, ca_problems

DEFAULT_REQUEST_TIMEOUT = 2.0
DEFAULT_MAX_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class HttpClientSettings:
    """What an HTTP driver needs to build its client session."""

    request_timeout: float
    max_attempts: int
    max_parallel_connections: int
    #: System CAs plus any configured ones; ``None`` for plain HTTP.
    ssl_context: ssl.SSLContext | None


def read_http_client_settings(
    settings: Settings, *, https: bool = True, default_max_parallel_connections: int = 1
) -> HttpClientSettings:
    """Read the HTTP client settings of an instance; ``https=False`` needs no TLS context.

    The default of one connection per peer is Dovecot's lib-http default.
    """
    return HttpClientSettings(
        request_timeout=_request_timeout(settings),
        max_attempts=_max_attempts(settings),
        max_parallel_connections=settings.get_int(
            "http_client_max_parallel_connections", default_max_parallel_connections, minimum=1
        ),
        ssl_context=_ssl_context(settings, https=https),
    )


def _only_one(settings: Settings, new: str, old: str) -> None:
    if new in settings and old in settings:
        raise settings.error(old, f"is the Dovecot 2.3 name of {new}; set only one of them")


def _request_timeout(settings: Settings) -> float:
    _only_one(settings, "http_client_request_timeout", "timeout_msecs")
    if "timeout_msecs" in settings:
        timeout = settings.get_msecs("timeout_msecs", DEFAULT_REQUEST_TIMEOUT)
        name = "timeout_msecs"
    else:
        timeout = settings.get_time("http_client_request_timeout", DEFAULT_REQUEST_TIMEOUT)
        name = "http_client_request_timeout"
    if timeout <= 0:
        raise settings.error(name, "must be greater than 0 (e.g. 2s)")
    return timeout


def _max_attempts(settings: Settings) -> int:
    _only_one(settings, "http_client_request_max_attempts", "max_retries")
    if "max_retries" in settings:
        # Deliberate difference: Dovecot 2.3 silently falls back to 1 on a bad max_retries.
        return settings.get_int("max_retries", DEFAULT_MAX_ATTEMPTS - 1, minimum=0) + 1
    return settings.get_int("http_client_request_max_attempts", DEFAULT_MAX_ATTEMPTS, minimum=1)


def _ssl_context(settings: Settings, *, https: bool) -> ssl.SSLContext | None:
    ca_file = settings.get_str("ssl_client_ca_file")
    ca_dir = settings.get_str("ssl_client_ca_dir")
    verify = settings.get_bool("ssl_client_require_valid_cert", True)
    strict = settings.get_bool("ssl_client_strict", True)
    if not https:
        return None
    if ca_dir and not Path(ca_dir).is_dir():
        # OpenSSL would accept a missing directory silently and fail at the first request.
        raise settings.error("ssl_client_ca_dir", f"{ca_dir} is not a directory")
    context = ssl.create_default_context()
    # Python 3.13's default on every Python: a CA behaves the same on Debian 12 and 13.
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    else:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    for key, location in (("ssl_client_ca_file", {"cafile": ca_file}), ("ssl_client_ca_dir", {"capath": ca_dir})):
        if not next(iter(location.values())):
            continue
        try:
            context.load_verify_locations(**location)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            path = next(iter(location.values()))
            raise settings.error(key, f"cannot load CA certificates from {path}: {reason}") from None
    if strict and ca_file:
        _check_strict_ca(settings, ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _check_strict_ca(settings: Settings, ca_file: str) -> None:
    """One line naming the CA and the fix for a CA strict verification would refuse at every request."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.load_verify_locations(cafile=ca_file)
    for decoded, der in zip(probe.get_ca_certs(), probe.get_ca_certs(binary_form=True), strict=True):
        problems = ca_problems(der)
        if problems:
            rdns: tuple[tuple[tuple[str, str], ...], ...] = decoded.get("subject", ())  # type: ignore[assignment]
            subject = ", ".join(f"{key}={value}" for rdn in rdns for key, value in rdn)
            raise settings.error(
                "ssl_client_ca_file",
                f"the CA certificate '{subject}' in {ca_file} has {' and '.join(problems)}, which strict "
                f"X.509 verification (Python 3.13's default) refuses; reissue it with the openssl.cnf extensions "
                f"{CA_EXTENSIONS_FIX}, or set ssl_client_strict = no for this instance",
            )
