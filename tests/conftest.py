"""Helpers for the cross-package tests: run the real daemon as a subprocess."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "push_notification.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def limit_open_files(limit: int) -> None:
    """RLIMIT_NOFILE, soft and hard, for a daemon that must live with few file descriptors."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


class DaemonProcess:
    """``push-notification serve`` in a subprocess, with its log."""

    def __init__(
        self, config: Path, tmp: Path, env: dict[str, str] | None = None, open_files: int | None = None
    ) -> None:
        self.port = free_port()
        self.config_path = config
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"daemon-{self.port}.log"
        self.env = {**os.environ, **(env or {})}
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*CLI, "serve", "-c", str(config), "--listen", f"127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
            preexec_fn=None if open_files is None else lambda: limit_open_files(open_files),
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daemon did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=self.env, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{args} failed: {result.stderr}")
        return result

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in daemon log:\n{self.log()}")
            time.sleep(0.02)
        return self.log()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[object]:
    started: list[DaemonProcess] = []

    def start(config_text: str, env: dict[str, str] | None = None, open_files: int | None = None) -> DaemonProcess:
        config = tmp_path / f"daemon{len(started)}.conf"
        config.write_text(f"state_dir = {tmp_path / 'state'}\n{config_text}")
        daemon = DaemonProcess(config, tmp_path, env, open_files)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
