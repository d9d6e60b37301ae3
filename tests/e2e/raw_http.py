"""An HTTP endpoint on 127.0.0.1 that keeps each request's bytes exactly as they arrived, so two
clients' requests can be byte-compared (aiohttp hands over parsed, re-cased headers)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@dataclass(frozen=True)
class RawRequest:
    """The request line, the header lines (as sent, in order) and the body, all bytes."""

    request_line: bytes
    headers: tuple[bytes, ...]
    body: bytes

    def header(self, name: str) -> bytes | None:
        prefix = name.lower().encode() + b":"
        return next((h.split(b":", 1)[1].strip() for h in self.headers if h.lower().startswith(prefix)), None)


@dataclass
class RawRecorder:
    """Answers every request 200 (and ``100 Continue`` to an ``Expect: 100-continue``)."""

    port: int = 0
    requests: list[RawRequest] = field(default_factory=list)

    def url(self, path: str = "/", userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"


def _read_request(conn: socket.socket) -> RawRequest | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    request_line, *headers = head.split(b"\r\n")
    request = RawRequest(request_line, tuple(headers), b"")
    if (request.header("expect") or b"").lower() == b"100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if (request.header("transfer-encoding") or b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        length = int(request.header("content-length") or 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
    return RawRequest(request_line, tuple(headers), body)


@contextmanager
def raw_recorder() -> Iterator[RawRecorder]:
    """Run a :class:`RawRecorder` on a free port for the ``with`` block."""
    recorder = RawRecorder()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            conn.settimeout(10)
            request = _read_request(conn)
            if request is not None:
                recorder.requests.append(request)
                conn.sendall(_ANSWER)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
