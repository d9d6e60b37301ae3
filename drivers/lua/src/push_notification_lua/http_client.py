"""A small synchronous HTTP client for ``dovecot.http`` and ``socket.http``.

Scripts see these calls as blocking, as in Dovecot. They run in the instance's own thread
(the driver is ``blocking``), so a slow endpoint stalls only this Lua instance, never the
daemon's event loop or the other drivers.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from push_notification.settings import mask_url

#: Dovecot's internal error codes (lib-http ``http_client_request_error``), returned as the
#: status when no HTTP response was received.
ERROR_INVALID_URL = 9001
ERROR_HOST_LOOKUP_FAILED = 9002
ERROR_CONNECT_FAILED = 9003
ERROR_INVALID_RESPONSE = 9004
ERROR_CONNECTION_LOST = 9005
ERROR_TIMED_OUT = 9008

DEFAULT_TIMEOUT = 60.0


@dataclass
class Response:
    """What the request produced: an HTTP response, or an internal error (status >= 9000)."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    #: The body as received; handed to Lua as a byte string.
    payload: bytes = b""
    #: LuaSocket-style error text when no response came (``connection refused``, ``timeout``).
    error: str | None = None
    version: str = "HTTP/1.1"

    @property
    def status_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"


def request(
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: str | bytes | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = 1,
    lib_http: bool = True,
) -> Response:
    """Send one request; connection failures are retried up to ``attempts`` times like lib-http.

    ``lib_http``: add the headers Dovecot's lib-http sends before the script's own (``Date``,
    ``Expect: 100-continue``, ``Content-Length``, ``Connection: Keep-Alive``); LuaSocket
    requests carry only what the module put in."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Response(ERROR_INVALID_URL, f"Invalid URL: {mask_url(url)}", error="invalid url")
    last = Response(ERROR_CONNECT_FAILED, "connect failed", error="connection refused")
    for _ in range(max(1, attempts)):
        last = _once(method, parts.scheme, parts.hostname, parts.port, _target(parts), headers, body, timeout, lib_http)
        if last.status not in (ERROR_CONNECTION_LOST, ERROR_TIMED_OUT):
            break
    return last


def _target(parts: object) -> str:
    path = getattr(parts, "path", "") or "/"
    query = getattr(parts, "query", "")
    return f"{path}?{query}" if query else path


def _once(
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    target: str,
    headers: list[tuple[str, str]],
    body: str | bytes | None,
    timeout: float,
    lib_http: bool,
) -> Response:
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    data = body.encode("utf-8") if isinstance(body, str) else body
    where = f"{host}:{port or (443 if scheme == 'https' else 80)}"
    try:
        try:
            conn.connect()
        except socket.gaierror as exc:
            return Response(ERROR_HOST_LOOKUP_FAILED, f"Failed to lookup host {host}: {exc}", error="host not found")
        except TimeoutError:
            return Response(ERROR_TIMED_OUT, f"connect({where}) timed out", error="timeout")
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return Response(ERROR_CONNECT_FAILED, f"connect({where}) failed: {reason}", error=reason.lower())
        names = {name.lower() for name, _ in headers}
        # a script's own Host header replaces the one from the URL (LuaSocket lets it)
        conn.putrequest(method, target, skip_host="host" in names, skip_accept_encoding=True)
        if lib_http:
            user_agent = [value for name, value in headers if name.lower() == "user-agent"]
            headers = [(name, value) for name, value in headers if name.lower() != "user-agent"]
            if "date" not in names:
                conn.putheader("Date", email.utils.formatdate(usegmt=True))
            for value in user_agent:
                conn.putheader("User-Agent", value)
            if data is not None:
                conn.putheader("Expect", "100-continue")
                if "content-length" not in names:
                    conn.putheader("Content-Length", str(len(data)))
            if "connection" not in names:
                conn.putheader("Connection", "Keep-Alive")
        elif data is not None and "content-length" not in names:
            conn.putheader("Content-Length", str(len(data)))
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(data)
        resp = conn.getresponse()
        payload = resp.read()
        response_headers = {name.lower(): value for name, value in resp.getheaders()}
        version = "HTTP/1.0" if resp.version == 10 else "HTTP/1.1"
        return Response(resp.status, resp.reason, response_headers, payload, version=version)
    except TimeoutError:
        return Response(ERROR_TIMED_OUT, "Request timed out", error="timeout")
    except (http.client.HTTPException, OSError) as exc:
        return Response(ERROR_CONNECTION_LOST, f"Connection lost: {exc}", error="closed")
    finally:
        conn.close()
