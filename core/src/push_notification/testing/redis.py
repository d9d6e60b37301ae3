"""A real ``redis-server`` for tests and benchmarks: a free loopback port, a temp directory,
AOF with ``appendfsync everysec`` (what docs/scale-out.md recommends), stopped by PID.

``scripts/install-redis`` installs Debian's package; without it :class:`RedisUnavailable`
says so (the tests skip with that reason, except under ``CI=true``, where they fail).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from push_notification.testing.net import free_port


class RedisUnavailable(RuntimeError):
    """redis-server is not installed or would not start."""


def redis_binary() -> str:
    """The path of ``redis-server``, or :class:`RedisUnavailable` naming the fix."""
    path = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if path is None:
        raise RedisUnavailable("redis-server is not installed; run scripts/install-redis as root")
    return path


class RedisServer:
    """One redis-server process; ``url`` is ``redis://127.0.0.1:PORT/0``.

    ``stop()`` and ``start()`` again keep the data directory, so a test can take Redis away
    and bring it back with its AOF; ``kill()`` is a crash (SIGKILL).
    """

    def __init__(self, *, appendfsync: str = "everysec", port: int | None = None) -> None:
        self.binary = redis_binary()
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.dir = Path(tempfile.mkdtemp(prefix="pn-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) the server on the same port and directory; wait until it answers."""
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self.process.returncode}: {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.02)
        self.kill()
        raise RedisUnavailable(f"redis-server did not answer on port {self.port} within {timeout:.0f}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.dir / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF), wait for the exit."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, losing what the AOF had not yet synced."""
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
