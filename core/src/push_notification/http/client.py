"""The HTTP client of every driver that speaks HTTP: its settings and its retrying sender.

Settings are Dovecot's ``http_client_*`` and ``ssl_client_*``, read once at start-up, so a bad
timeout or an unreadable CA file is a one-line ConfigError naming the instance and the setting.
Dovecot 2.4's names are the primary ones; 2.3's ``timeout_msecs`` and ``max_retries``
(= attempts - 1) are accepted too, but not both names of one setting at once.

:class:`HttpSender` sends one request with up to ``max_attempts`` attempts over the
instance's pooled keep-alive connections (:class:`~push_notification.http.Http1Transport`),
under a :class:`~push_notification.http.RetryPolicy`,
and turns what is left into ``RetryableError``/``PermanentError`` with one line naming the
request (never its secrets), the failure and the attempts.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from push_notification.errors import DriverError, PermanentError, RetryableError
from push_notification.http.attempt import (
    HttpRequest,
    HttpResponse,
    RequestBuilder,
    Transport,
    TransportError,
    safe_url,
)
from push_notification.http.retry import Failure, RetryPolicy
from push_notification.http.transport import Http1Transport
from push_notification.http.x509 import CA_EXTENSIONS_FIX, ca_problems
from push_notification.settings import Settings

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


# ---------------------------------------------------------------- the sender


class HttpRetryableError(RetryableError):
    """A request failed for now. ``status`` and ``response`` are the last answer, if any."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        response: HttpResponse | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.response = response


class HttpPermanentError(PermanentError):
    """A request was refused for good. ``status`` and ``response`` tell why (an APNs 410 with
    reason ``Unregistered``: the device token is gone)."""

    def __init__(self, message: str, *, status: int | None = None, response: HttpResponse | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.response = response


class HttpSender:
    """Sends a request with up to ``max_attempts`` attempts under a :class:`RetryPolicy`.

    ``transport`` carries the attempts (an :class:`Http1Transport` by default, given
    ``skip_auto_headers``); ``start`` and ``close`` bracket it.
    """

    def __init__(
        self,
        settings: HttpClientSettings,
        policy: RetryPolicy | None = None,
        *,
        transport: Transport | None = None,
        skip_auto_headers: tuple[str, ...] = ("User-Agent", "Accept-Encoding"),
    ) -> None:
        self.settings = settings
        self.policy = policy if policy is not None else RetryPolicy()
        self.transport: Transport = (
            transport if transport is not None else Http1Transport(settings, skip_auto_headers=skip_auto_headers)
        )

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    async def send(self, request: HttpRequest | RequestBuilder) -> HttpResponse:
        """Send ``request`` (or what the builder makes, anew per attempt) until the policy
        accepts an answer (a 2xx), which is returned; raise ``HttpRetryableError`` or
        ``HttpPermanentError`` once the policy stops."""
        build = request if callable(request) else None
        current = request if isinstance(request, HttpRequest) else request(1)
        policy = self.policy
        started = time.monotonic()
        attempt = 1
        while True:
            failure: Failure | None
            try:
                response = await self.transport.request(current)
            except TransportError as exc:
                failure = policy.transport_failure(exc.kind, str(exc))
            else:
                failure = policy.classify(response)
                if failure is None:
                    return response
            wait = policy.next_wait(failure, attempt, self.settings.max_attempts)
            if wait is None:
                raise _error(current, failure, attempt, time.monotonic() - started)
            if wait > 0:
                await asyncio.sleep(wait)
            attempt += 1
            if build is not None:
                current = build(attempt)


def _error(request: HttpRequest, failure: Failure, attempts: int, elapsed: float) -> DriverError:
    label = request.label or f"{request.method} {safe_url(request.url)}"
    plural = "attempt" if attempts == 1 else "attempts"
    message = f"{label}: {failure.what} ({attempts} {plural} in {elapsed:.3f} secs)"
    if failure.retryable:
        return HttpRetryableError(
            message, retry_after=failure.retry_after, status=failure.status, response=failure.response
        )
    return HttpPermanentError(message, status=failure.status, response=failure.response)
