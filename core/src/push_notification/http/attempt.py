"""One attempt of a request: what is sent, what comes back, and what carries it.

The sender (:mod:`push_notification.http.client`) makes attempts; a :class:`Transport`
carries each one and answers with an :class:`HttpResponse` or raises a
:class:`TransportError` whose ``kind`` the retry policy reads.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from yarl import URL


def safe_url(url: str | URL) -> str:
    """Scheme, host and port only: push URLs often carry their secret in the path or query
    (Slack, Gotify, Web Push endpoints), so no log line or error shows more."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    rest = "/..." if parts.path not in ("", "/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


#: No headers (shared: it cannot change).
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


# HttpRequest and HttpResponse are named tuples: as immutable as a frozen dataclass, at less
# than half its cost to make, and one of each is made per notification.


class HttpRequest(NamedTuple):
    """One attempt's request."""

    method: str
    url: str | URL
    body: bytes = b""
    headers: Mapping[str, str] = NO_HEADERS
    #: Names the request in errors (``"POST https://hooks.example.com/... (webhook-id t1.0)"``);
    #: empty means method and :func:`safe_url`. Never put a secret in it.
    label: str = ""


#: Builds the request of attempt ``n`` (1-based): a fresh signature, token or ``Date`` each time.
RequestBuilder = Callable[[int], HttpRequest]


class HttpResponse(NamedTuple):
    """An answer, whatever its status; ``send`` returns the 2xx ones (a message id in the body)."""

    status: int
    reason: str
    #: Case-insensitive, as HTTP header names are.
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """An attempt that got no answer. ``kind`` tells the policy what went wrong: ``timeout``,
    ``connect`` (refused, unreachable, a name that does not resolve), ``certificate`` (not
    trusted), ``tls`` (handshake), ``lost`` (the connection broke, or the answer was not HTTP)
    or ``request`` (the request cannot be sent as it is: a line break in a header, a URL that
    is not http(s)); the message is one line without secrets."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Transport(Protocol):
    """What carries one attempt: :class:`~push_notification.http.Http1Transport` (HTTP/1.1)
    by default; an HTTP/2 client for APNs."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def request(self, request: HttpRequest) -> HttpResponse:
        """One attempt, redirects not followed; raises :class:`TransportError` without an answer."""
        ...


def connect_failure(host: str, port: int | None, error: OSError) -> str:
    """One line for a failed connection: ``cannot resolve HOST`` for a name that does not
    resolve (not ``Unknown error -2``), else ``connect(HOST:PORT) failed: reason``."""
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host}: {error.strerror or error} (check the host name in url and the DNS)"
    if error.errno:
        reason = os.strerror(error.errno) if error.errno > 0 else str(error)
    else:
        reason = str(error) or type(error).__name__
    return f"connect({host}:{port}) failed: {reason}"
