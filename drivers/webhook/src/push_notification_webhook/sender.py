"""A rendered webhook request, and the core's HTTP sender under the webhook's rules.

Retried: connection errors, timeouts, 408, 429 and 5xx, honouring a ``Retry-After`` of up
to :data:`MAX_RETRY_AFTER`; never other 4xx nor a refused certificate (permanent, naming
``ssl_client_ca_file``, as for the ox driver). Each attempt is signed anew, so its ``webhook-timestamp`` is fresh.

Dovecot's lib-http retries only 408, 503-with-Retry-After, lost connections and timeouts, and
never a refused connection; we retry every transient failure on purpose (a receiver restart
should not lose a notification).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from push_notification.http import HttpClientSettings, HttpRequest, HttpSender, RetryPolicy, safe_url

__all__ = ["MAX_RETRY_AFTER", "Request", "new_sender", "safe_url"]

#: A Retry-After longer than this ends the attempts: the queue, not a sleeping worker, waits.
MAX_RETRY_AFTER = 10.0


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

    def attempt(self, attempt: int) -> HttpRequest:
        """What attempt ``attempt`` sends: the rendered request, signed now."""
        headers = self.headers if self.sign is None else {**self.headers, **self.sign(self.body)}
        label = f"{self.method} {safe_url(self.url)} (webhook-id {self.id})"
        return HttpRequest(self.method, self.url, self.body, headers, label)


def new_sender(settings: HttpClientSettings) -> HttpSender:
    """The instance's HTTP client."""
    # A refused certificate is permanent, as for the ox driver: one rule for every HTTP driver.
    return HttpSender(settings, RetryPolicy(max_wait_in_place=MAX_RETRY_AFTER))
