"""Fixtures for the cross-package tests: the real daemon as a subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from push_notification.testing.daemon import DaemonProcess, daemon_config

StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """``start_daemon(config_text, env=None)``: a started daemon, stopped after the test."""
    started: list[DaemonProcess] = []

    def start(config_text: str, env: dict[str, str] | None = None) -> DaemonProcess:
        config = daemon_config(tmp_path, config_text, name=f"daemon{len(started)}")
        daemon = DaemonProcess(config, env=env)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()
