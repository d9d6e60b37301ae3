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

import logging
from types import MappingProxyType

from push_notification.http import (
    Http1Transport,
    HttpClientSettings,
    HttpRequest,
    HttpResponse,
    HttpSender,
    RetryPolicy,
)

from .config import OxConfig

_HEADERS = {
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


class Sender:
    """The instance's HTTP client; ``start`` and ``close`` bracket its session."""

    def __init__(self, config: OxConfig, log: logging.Logger, prefix: str) -> None:
        self.config = config
        self.log = log
        self.prefix = prefix
        self._headers = dict(_HEADERS)
        if config.authorization is not None:
            self._headers["Authorization"] = config.authorization
        self._label = f"Error when sending notification to {config.display_url}"
        settings = HttpClientSettings(
            request_timeout=config.request_timeout,
            max_attempts=config.max_attempts,
            max_parallel_connections=config.max_parallel_connections,
            ssl_context=config.ssl_context,
        )
        # The transport writes the Date Dovecot sends, anew for each attempt.
        transport = Http1Transport(settings, skip_auto_headers=_SKIP_AUTO_HEADERS, send_date=True)
        self.http = HttpSender(settings, ox_policy(config), transport=transport)

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    def request(self, body: bytes) -> HttpRequest:
        """The PUT of one notification; send it with ``self.http.send`` and say :meth:`sent`."""
        return HttpRequest("PUT", self.config.request_url, body, self._headers, self._label)

    def sent(self, response: HttpResponse) -> None:
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%sNotification sent successfully: %d %s", self.prefix, response.status, response.reason)

    async def put(self, body: bytes) -> None:
        """Send ``body``; return on a 2xx, else raise once the attempts are spent."""
        self.sent(await self.http.send(self.request(body)))
