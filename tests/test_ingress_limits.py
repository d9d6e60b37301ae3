"""The real daemon under slow, idle and malformed clients: good clients are still served,
and each bad request is one log line, never a traceback."""

from __future__ import annotations

import json
import resource
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from push_notification.testing.daemon import DaemonProcess, daemon_config

GOOD = json.dumps({"user": "a", "mailbox": "INBOX", "events": [{"name": "MessageNew", "uid": 1, "uid_validity": 1}]})
#: The file-descriptor limit the hostile run of the issue had (a common default).
OPEN_FILES = 1024
IDLE = 1020
#: ``push-notification`` under that limit (soft and hard, so the daemon cannot raise it).
LIMITED_CLI = (
    sys.executable,
    "-c",
    f"import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, ({OPEN_FILES}, {OPEN_FILES}));"
    " runpy.run_module('push_notification.cli', run_name='__main__')",
)


def post(url: str) -> int:
    request = urllib.request.Request(f"{url}/v1/transactions", data=GOOD.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """What the daemon answers ``data`` with, up to its closing the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that never send a byte (closed on exit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5)) for _ in range(count)]
        yield sockets


def test_a_thousand_idle_connections_do_not_starve_good_posts(tmp_path: Path) -> None:
    config = daemon_config(tmp_path, "push_notification dlog { }\n")
    with DaemonProcess(config, command=LIMITED_CLI).start() as daemon, idle_connections(daemon.port, IDLE):
        assert [post(daemon.url) for _ in range(20)] == [202] * 20
        log = daemon.wait_for_log("the most allowed (ingress_max_connections); closed")
    assert "Traceback" not in log
    assert "using 896 (raise LimitNOFILE to allow more)" in log


def test_a_client_that_trickles_its_request_head_is_disconnected(start_daemon) -> None:
    daemon = start_daemon("ingress_header_timeout = 500ms\npush_notification dlog { }\n")
    started = time.monotonic()
    assert raw(daemon.port, b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\n") == b""
    assert time.monotonic() - started < 5
    assert post(daemon.url) == 202


def test_a_body_that_does_not_come_is_408_and_a_huge_one_413_at_once(start_daemon) -> None:
    daemon = start_daemon("ingress_body_timeout = 500ms\npush_notification dlog { }\n")
    head = b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\n"
    assert raw(daemon.port, head + b"Content-Length: 100\r\n\r\n{").startswith(b"HTTP/1.1 408 ")
    started = time.monotonic()
    assert raw(daemon.port, head + b"Content-Length: 9223372036854775808\r\n\r\n").startswith(b"HTTP/1.1 413 ")
    assert time.monotonic() - started < 5


SMUGGLING = {
    "CL+TE": b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
    "two Content-Lengths": b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "obs-fold": b"X-A: b\r\n c\r\nContent-Length: 2\r\n\r\n{}",
    "10,000 headers": b"".join(b"X-%d: y\r\n" % i for i in range(10_000)) + b"\r\n",
}


def test_malformed_http_is_400_and_one_log_line_each(start_daemon) -> None:
    daemon = start_daemon("push_notification dlog { }\n")
    for name, rest in SMUGGLING.items():
        answer = raw(daemon.port, b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\n" + rest)
        assert answer.startswith(b"HTTP/1.1 400 "), name
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"], name
    assert raw(daemon.port, b"POST /v1/transactions HTTP/1.1\nHost: x\n\n").startswith(b"HTTP/1.1 400 ")
    log = daemon.wait_for_log("Expected CRLF")
    lines = [line for line in log.splitlines() if "malformed HTTP request" in line]
    assert len(lines) == len(SMUGGLING) + 1, lines
    assert all(" WARNING push_notification.server.http: ingress: " in line for line in lines)
    assert "Traceback" not in log
    assert post(daemon.url) == 202
