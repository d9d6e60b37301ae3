"""HTTP/1.1 requests as bytes: where a URL's requests go, and the head written before the body.

A URL is read once (by yarl, as aiohttp read it: the same percent-encoding of path and query,
IDNA host names, ``user:password@`` turned into Basic auth) into a :class:`Target`, kept in a
bounded cache: a driver sends to one URL, or to a set of device URLs, again and again.
"""

from __future__ import annotations

import base64
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from yarl import URL

from push_notification.http.attempt import TransportError, safe_url


class Origin(NamedTuple):
    """Where connections go; each origin has its own pool."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """What a URL's requests share; one object per cached URL, so compared and hashed by identity."""

    origin: Origin
    #: The request target: path and query, percent-encoded.
    path: str
    #: The ``Host`` header's value (the port only when not the scheme's default).
    host: str
    #: ``Basic ...`` from the URL's ``user:password@``, which overrides a given header.
    authorization: str | None


#: How many URLs' targets are kept; the cache starts afresh when full (device URLs churn).
TARGET_CACHE_SIZE = 1024
_targets: dict[str | URL, Target] = {}


def target_of(url: str | URL) -> Target:
    """The :class:`Target` of ``url``; a ``request`` :class:`TransportError` if it cannot be one."""
    target = _targets.get(url)
    if target is None:
        target = _read_target(url)
        if len(_targets) >= TARGET_CACHE_SIZE:
            _targets.clear()
        _targets[url] = target
    return target


def _read_target(url: str | URL) -> Target:
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        scheme, raw_host, port = parsed.scheme, parsed.raw_host, parsed.port
    except (ValueError, TypeError) as exc:
        raise TransportError("request", f"cannot read the URL {safe_url(url)}: {exc}") from None
    if scheme not in ("http", "https") or not raw_host or port is None:
        raise TransportError("request", f"{safe_url(url)} is not an http:// or https:// URL with a host")
    host = raw_host.rstrip(".")
    netloc = f"[{host}]" if ":" in host else host
    if not parsed.is_default_port():
        netloc = f"{netloc}:{port}"
    path = parsed.raw_path or "/"
    if parsed.raw_query_string:
        path = f"{path}?{parsed.raw_query_string}"
    authorization = None
    if parsed.user is not None:
        credentials = f"{parsed.user}:{parsed.password or ''}"
        try:
            raw = credentials.encode("latin-1")  # as aiohttp's BasicAuth
        except UnicodeEncodeError:
            raw = credentials.encode()
        authorization = "Basic " + base64.b64encode(raw).decode("ascii")
    return Target(Origin(scheme, host, port), path, netloc, authorization)


#: Headers the transport writes itself from the body: a caller's would desynchronise the connection.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
#: Methods that send ``Content-Length: 0`` without a body (as aiohttp did).
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: How many distinct heads a transport keeps written (a driver sends the same few headers).
HEAD_CACHE_SIZE = 256
#: ``Content-Length`` lines by length (one ``%`` formatting cost more than the rest of a head).
_ENDS: dict[int, bytes] = {}
ENDS_CACHE_SIZE = 4096


class RequestHeads:
    """Writes requests' heads, keeping the bytes of recent ones: a driver sends the same
    headers to one URL, so a head is written once, not per request.

    ``auto_headers`` are ``(lowercase name, name, value)``, sent unless the request has its
    own (``Accept: */*``; a ``Content-Type`` only with a body). ``send_date``: a ``Date``
    header of the time the request is written (unless the request has its own), as Dovecot
    sends OX; formatted once a second, and fresh for each attempt since each is written anew.
    """

    def __init__(self, auto_headers: tuple[tuple[str, str, str], ...], *, send_date: bool = False) -> None:
        self.auto_headers = auto_headers
        self.send_date = send_date
        #: Head bytes up to the ``Date`` line, whether the request asks to close, whether a
        #: ``Date`` line follows.
        self._cache: dict[tuple[object, ...], tuple[bytes, bool, bool]] = {}
        #: The last head written and what it was written for (its headers as an object and
        #: as a copy): a driver sends one request again and again, and comparing its headers
        #: with the copy costs a tenth of making a key and looking it up.
        self._last: tuple[bytes, bool, bool] = (b"", False, False)
        self._last_method = ""
        self._last_target: Target | None = None
        self._last_headers: Mapping[str, str] | None = None
        self._last_copy: dict[str, str] = {}
        self._last_has_body = False
        #: The ``Date`` line, and the wall-clock second it is for.
        self._date_line = b""
        self._date_from = self._date_until = 0.0

    def message(self, method: str, target: Target, headers: Mapping[str, str], body: bytes) -> tuple[bytes, bool]:
        """The request's bytes, head and body, and whether it asks to close the connection
        after its answer. A line break in a header is a ``request`` :class:`TransportError`:
        it would forge headers."""
        has_body = bool(body)
        if (
            target is self._last_target
            and headers is self._last_headers
            and has_body is self._last_has_body
            and method == self._last_method
            and self._last_copy == headers  # the same object, but a dict may have changed since
        ):
            head, close, dated = self._last
        else:
            head, close, dated = self._last = self._head(method, target, headers, has_body)
            self._last_method, self._last_target, self._last_has_body = method, target, has_body
            self._last_headers, self._last_copy = headers, dict(headers)
        if has_body or method not in _BODILESS:
            length = len(body)
            end = _ENDS.get(length)
            if end is None:
                if len(_ENDS) >= ENDS_CACHE_SIZE:
                    _ENDS.clear()
                end = _ENDS[length] = b"Content-Length: %d\r\n\r\n" % length
        else:
            end = b"\r\n"
        if dated:
            now = time.time()
            if not self._date_from <= now < self._date_until:  # a new second, or the clock set back
                second = int(now)
                self._date_from, self._date_until = second, second + 1
                self._date_line = f"Date: {email.utils.formatdate(second, usegmt=True)}\r\n".encode()
            return head + self._date_line + end + body, close
        return head + end + body, close

    def _head(
        self, method: str, target: Target, headers: Mapping[str, str], has_body: bool
    ) -> tuple[bytes, bool, bool]:
        # Keys and values as they are: no tuple per header, which the garbage collector counts.
        key = (method, target, has_body, *headers.keys(), *headers.values())
        cached = self._cache.get(key)
        if cached is None:
            cached = self._write(method, target, headers, has_body)
            if len(self._cache) >= HEAD_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def _write(
        self, method: str, target: Target, headers: Mapping[str, str], has_body: bool
    ) -> tuple[bytes, bool, bool]:
        lines = [f"{method} {target.path} HTTP/1.1\r\n"]
        given: set[str] = set()
        close = False
        authorization = target.authorization
        for name, value in headers.items():
            lower = name.lower()
            if lower in _FRAMING or (authorization is not None and lower == "authorization"):
                continue
            given.add(lower)
            if lower == "connection" and "close" in value.lower():
                close = True
            lines.append(f"{name}: {value}\r\n")
        if "host" not in given:
            lines.insert(1, f"Host: {target.host}\r\n")
        if authorization is not None:
            lines.append(f"Authorization: {authorization}\r\n")
        for lower, name, value in self.auto_headers:
            if lower not in given and (has_body or lower != "content-type"):
                lines.append(f"{name}: {value}\r\n")
        text = "".join(lines)
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):
            raise TransportError("request", _line_break(method, headers))
        return text.encode(), close, self.send_date and "date" not in given


def _line_break(method: str, headers: Mapping[str, str]) -> str:
    """Names what has a line break (a header's name, never its value, which may be a secret)."""
    for name, value in headers.items():
        if any(char in text for text in (name, value) for char in "\r\n"):
            return f"the header {name.strip()!r} has a line break, which would forge headers; it was not sent"
    return f"the method {method!r} has a line break; the request was not sent"
