"""PUT one notification to the OX endpoint, retrying what is safe and useful.

One pooled, keep-alive aiohttp session per driver instance. A notification PUT is idempotent,
so connection failures, timeouts, 408, 429 and 5xx are retried (up to ``max_attempts``, with
backoff, honouring ``Retry-After``); other 4xx and 3xx are not. Outcomes become
``RetryableError``/``PermanentError`` whose one-line message carries status, reason and
attempts, and shows the URL only with its password masked.

Deliberate differences from Dovecot's lib-http, which retries only 408, 503 with
Retry-After, lost connections and timeouts: here 429, 500-599 and refused connections are
retried too, since the daemon, unlike Dovecot, does not block a mail delivery meanwhile.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from dataclasses import dataclass

import aiohttp
from push_notification.errors import PermanentError, RetryableError
from push_notification.http_client import connect_failure

from .config import OxConfig

#: First backoff between attempts; doubles per attempt up to BACKOFF_MAX.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
_RETRY_STATUSES = frozenset({408, 429})
_STATIC_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Connection": "Keep-Alive",
}
# Dovecot sends no User-Agent and no Accept headers to OX.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why one attempt failed, and whether trying again may help."""

    what: str
    retryable: bool
    retry_after: float | None = None
    status: int | None = None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Headers:
    """The request headers: fixed ones, plus the ``Date`` Dovecot sends, re-formatted once a
    second. aiohttp copies headers per request, so one dict serves every request."""

    def __init__(self, authorization: str | None) -> None:
        self._second = -1
        self._headers = dict(_STATIC_HEADERS)
        if authorization is not None:
            self._headers["Authorization"] = authorization

    def now(self) -> dict[str, str]:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._headers["Date"] = email.utils.formatdate(second, usegmt=True)
        return self._headers


class Sender:
    """The instance's HTTP client; ``start`` and ``close`` bracket its session."""

    def __init__(self, config: OxConfig, log: logging.Logger, prefix: str) -> None:
        self.config = config
        self.log = log
        self.prefix = prefix
        self._session: aiohttp.ClientSession | None = None
        self._headers = _Headers(config.authorization)

    async def start(self) -> None:
        if self._session is not None:
            return
        ssl_option: ssl.SSLContext | bool = self.config.ssl_context if self.config.ssl_context is not None else True
        connector = aiohttp.TCPConnector(limit=self.config.max_parallel_connections, ssl=ssl_option)
        self._session = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put(self, body: bytes) -> None:
        """Send ``body``; return on a 2xx, else raise once attempts are spent."""
        if self._session is None:
            await self.start()
        session = self._session
        assert session is not None
        started = time.monotonic()
        attempt = 1
        failure = await self._attempt(session, body)
        while failure is not None:
            delay = self._retry_delay(failure, attempt)
            if delay is None:
                raise self._error(failure, attempt, time.monotonic() - started)
            if delay:
                await asyncio.sleep(delay)
            attempt += 1
            failure = await self._attempt(session, body)

    async def _attempt(self, session: aiohttp.ClientSession, body: bytes) -> _Failure | None:
        config = self.config
        headers = self._headers.now()
        try:
            async with session.put(config.request_url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                status, reason = resp.status, resp.reason or ""
        except TimeoutError:
            return _Failure(f"Request timed out after {config.request_timeout:g}s", retryable=True)
        except aiohttp.ClientConnectorCertificateError as exc:
            return _Failure(
                f"TLS certificate not accepted: {exc.certificate_error}; set ssl_client_ca_file to the CA"
                " that signed the endpoint's certificate",
                retryable=False,
            )
        except aiohttp.ClientSSLError as exc:
            return _Failure(f"TLS handshake failed: {exc}", retryable=False)
        except aiohttp.ClientConnectorError as exc:
            return _Failure(connect_failure(exc.host, exc.port, exc.os_error), retryable=True)
        except aiohttp.ClientError as exc:
            return _Failure(f"Connection lost: {type(exc).__name__}: {exc}", retryable=True)
        if 200 <= status < 300:
            if self.log.isEnabledFor(logging.DEBUG):
                self.log.debug("%sNotification sent successfully: %d %s", self.prefix, status, reason)
            return None
        what = f"{status} {reason}".rstrip()
        if 300 <= status < 400:
            return _Failure(f"{what} (Redirect refused)", retryable=False)
        if status in (401, 403):
            what += " (check the login and password in url)"
        retryable = status in _RETRY_STATUSES or status >= 500
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return _Failure(what, retryable=retryable, retry_after=retry_after, status=status)

    def _retry_delay(self, failure: _Failure, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up now."""
        if not failure.retryable or attempt >= self.config.max_attempts:
            return None
        if failure.retry_after is not None:
            # As Dovecot's lib-http: wait in place only if the server asks for less than a
            # request timeout; a longer wait is left to the queue (RetryableError.retry_after).
            return failure.retry_after if failure.retry_after < self.config.request_timeout else None
        if failure.status == 408:
            return 0.0  # as Dovecot: the server timed the request out, send it again at once
        return min(BACKOFF_FIRST * 2.0 ** (attempt - 1), BACKOFF_MAX)

    def _error(self, failure: _Failure, attempts: int, elapsed: float) -> RetryableError | PermanentError:
        plural = "attempt" if attempts == 1 else "attempts"
        message = (
            f"Error when sending notification to {self.config.display_url}:"
            f" {failure.what} ({attempts} {plural} in {elapsed:.3f} secs)"
        )
        if failure.retryable:
            return RetryableError(message, retry_after=failure.retry_after)
        return PermanentError(message)
