"""Sending one rendered request, with the OX driver's timeout and retry rules.

One pooled aiohttp session per instance. Retried: connection errors, timeouts, 408, 429 and
5xx, honouring ``Retry-After``; never other 4xx. When attempts run out the failure becomes
``RetryableError`` (a durable queue may try again later) or ``PermanentError``.

Dovecot's lib-http retries only 408, 503-with-Retry-After, lost connections and timeouts, and
never a refused connection; we retry every transient failure on purpose (a receiver restart
should not lose a notification).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp
from push_notification.errors import PermanentError, RetryableError
from push_notification.http_client import HttpClientSettings, connect_failure

log = logging.getLogger("push_notification.webhook")

#: A Retry-After longer than this ends the attempts: the queue, not a sleeping worker, waits.
MAX_RETRY_AFTER = 10.0
#: First backoff between attempts without Retry-After; doubled each time, capped at 2 s.
BACKOFF = 0.1


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    #: Stable id of the notification (the ``webhook-id``), for log lines.
    id: str
    #: Adds per-attempt headers (Standard Webhooks signature with a fresh timestamp).
    sign: Callable[[bytes], Mapping[str, str]] | None = field(default=None, compare=False)


def safe_url(url: str) -> str:
    """Scheme, host and port only: webhook URLs often carry their secret in the path or query
    (Slack, Gotify), so no log line or error shows more."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    rest = "/..." if parts.path not in ("", "/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class Sender:
    """The instance's HTTP client."""

    def __init__(self, options: HttpClientSettings) -> None:
        self.options = options
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        ssl_option: ssl.SSLContext | bool = self.options.ssl_context or True
        connector = aiohttp.TCPConnector(limit=self.options.max_parallel_connections, ssl=ssl_option)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.options.request_timeout),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: Request) -> int:
        """Deliver ``request``; returns the 2xx status, or raises Retryable/PermanentError."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        attempts = self.options.max_attempts
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            headers = dict(request.headers)
            if request.sign is not None:
                headers.update(request.sign(request.body))
            wait: float | None = None
            try:
                async with self._session.request(
                    request.method, request.url, headers=headers, data=request.body or None, allow_redirects=False
                ) as response:
                    await response.read()
                    status, reason = response.status, response.reason or ""
                    if 200 <= status < 300:
                        log.debug("%s %s: %d %s", request.id, safe_url(request.url), status, reason)
                        return status
                    problem = f"{status} {reason}".strip()
                    if not _retryable_status(status):
                        raise PermanentError(self._describe(request, problem, attempt, started))
                    wait = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):
                    problem = "request timed out"
                elif isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(exc, aiohttp.ClientSSLError):
                    problem = connect_failure(exc.host, exc.port, exc.os_error)
                else:
                    problem = f"{type(exc).__name__}: {exc}"
                problem = problem.replace(request.url, safe_url(request.url))
            if wait is not None and wait > MAX_RETRY_AFTER:
                raise RetryableError(self._describe(request, problem, attempt, started), retry_after=wait)
            if attempt < attempts:
                await asyncio.sleep(wait if wait is not None else min(BACKOFF * 2 ** (attempt - 1), 2.0))
        raise RetryableError(self._describe(request, problem, attempts, started), retry_after=wait)

    @staticmethod
    def _describe(request: Request, problem: str, attempts: int, started: float) -> str:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {time.monotonic() - started:.3f}s"
        return f"{request.method} {safe_url(request.url)} (webhook-id {request.id}): {problem} ({tries})"
