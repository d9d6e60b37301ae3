"""PUT one notification to the OX endpoint: the core's HTTP sender under Dovecot's rules.

A notification PUT is idempotent, so the core's :class:`HttpSender` may repeat it. The OX
policy is Dovecot lib-http's: a 408 is sent again at once, a ``Retry-After`` is waited for
only when shorter than a request timeout (a longer one goes to the queue as
``RetryableError.retry_after``), redirects are refused. Errors read as Dovecot's ``Error when
sending notification`` line, with the URL's password masked.

Deliberate differences from Dovecot's lib-http, which retries only 408, 503 with
Retry-After, lost connections and timeouts: here 429, 500-599 and refused connections are
retried too, since the daemon, unlike Dovecot, does not block a mail delivery meanwhile.
"""

from __future__ import annotations

import email.utils
import logging
import time
from types import MappingProxyType

from push_notification.http import HttpClientSettings, HttpRequest, HttpSender, RetryPolicy

from .config import OxConfig

_STATIC_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Connection": "Keep-Alive",
}
# Dovecot sends no User-Agent and no Accept headers to OX.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")
_LOGIN_HINT = "check the login and password in url"


def ox_policy(config: OxConfig) -> RetryPolicy:
    """Dovecot's rules: wait in place for a ``Retry-After`` of at most one request timeout."""
    return RetryPolicy(
        max_wait_in_place=config.request_timeout,
        status_hints=MappingProxyType({401: _LOGIN_HINT, 403: _LOGIN_HINT}),
    )


class _Headers:
    """The request headers: fixed ones, plus the ``Date`` Dovecot sends, re-formatted once a
    second. The transport writes a head once per distinct set of headers and copies nothing,
    so one dict serves every request (and its head is written once a second)."""

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
        self._headers = _Headers(config.authorization)
        self._label = f"Error when sending notification to {config.display_url}"
        settings = HttpClientSettings(
            request_timeout=config.request_timeout,
            max_attempts=config.max_attempts,
            max_parallel_connections=config.max_parallel_connections,
            ssl_context=config.ssl_context,
        )
        self.http = HttpSender(settings, ox_policy(config), skip_auto_headers=_SKIP_AUTO_HEADERS)

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    async def put(self, body: bytes) -> None:
        """Send ``body``; return on a 2xx, else raise once the attempts are spent."""

        def request(attempt: int) -> HttpRequest:  # a fresh Date per attempt, as Dovecot
            return HttpRequest("PUT", self.config.request_url, body, self._headers.now(), self._label)

        response = await self.http.send(request)
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%sNotification sent successfully: %d %s", self.prefix, response.status, response.reason)
