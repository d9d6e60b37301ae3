"""HTTP for drivers: client settings, ONE retrying sender, and the retry rules it follows.

Every HTTP driver (ox, webhook, webpush, apns, fcm) sends through :class:`HttpSender`, so
``Retry-After`` parsing, which statuses retry, backoff, waiting in place versus leaving a
retry to the queue, partial-delivery bookkeeping and strict X.509 checks are written once.
Drivers import these names from ``push_notification.http``; the modules behind them are:

* ``client``: settings read from an instance block, the sender;
* ``attempt``: one attempt's request and answer, the ``Transport`` protocol that carries it;
* ``transport``: the default transport, HTTP/1.1 over pooled keep-alive connections, built
  from ``wire`` (request bytes), ``connection`` (one connection, httptools parsing the
  answer) and ``pool`` (the connections to one origin);
* ``retry``: ``Retry-After``, the retry policy a driver plugs in, partial deliveries;
* ``x509``: the checks Python 3.13 applies to an admin's CA file, made on every Python.
"""

from push_notification.http.attempt import (
    HttpRequest,
    HttpResponse,
    RequestBuilder,
    Transport,
    TransportError,
    connect_failure,
    safe_url,
)
from push_notification.http.client import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_REQUEST_TIMEOUT,
    HttpClientSettings,
    HttpPermanentError,
    HttpRetryableError,
    HttpSender,
    read_http_client_settings,
)
from push_notification.http.retry import (
    Failure,
    Part,
    PartialDeliveries,
    RetryPolicy,
    combined_error,
    parse_retry_after,
)
from push_notification.http.transport import Http1Transport

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_REQUEST_TIMEOUT",
    "Failure",
    "Http1Transport",
    "HttpClientSettings",
    "HttpPermanentError",
    "HttpRequest",
    "HttpResponse",
    "HttpRetryableError",
    "HttpSender",
    "Part",
    "PartialDeliveries",
    "RequestBuilder",
    "RetryPolicy",
    "Transport",
    "TransportError",
    "combined_error",
    "connect_failure",
    "parse_retry_after",
    "read_http_client_settings",
    "safe_url",
]
