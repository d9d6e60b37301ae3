"""A real daemon in-process (ingress, queue, registry, webpush instance; the core's testing kit)
and the loopback push service it pushes to, which checks VAPID and decrypts like a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from push_notification.devices.vapid import create_vapid_key
from push_notification.testing.inprocess import NO_STORM, USER, RunningDaemon, daemon_starter
from push_notification_webpush.testing import LoopbackPushService, Subscriber


@dataclass
class Running:
    daemon: RunningDaemon
    service: LoopbackPushService

    async def register(self, subscriber: Subscriber, user: str = USER, **extra: Any) -> str:
        return await self.daemon.register("webpush", user, subscription=subscriber.subscription(), **extra)


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
def vapid_key(tmp_path: Path) -> tuple[Path, str]:
    """The VAPID key file and its public key (what the web app subscribes with)."""
    path = tmp_path / "vapid.pem"
    return path, create_vapid_key(path)


def instance_config(key: Path, extra: str = NO_STORM) -> str:
    return (f"push_notification webpush {{\n  vapid_key = {key}\n  vapid_subject = mailto:postmaster@example.com\n"
            f"  {extra}\n}}\n")  # fmt: skip


@pytest.fixture
async def start(tmp_path: Path, vapid_key: tuple[Path, str]) -> AsyncIterator[Start]:
    """``await start(extra settings)``: the loopback push service and a daemon pushing to it."""
    key, public = vapid_key
    async with (
        LoopbackPushService(application_server_key=public) as service,
        daemon_starter(tmp_path, partial(instance_config, key)) as start_daemon,
    ):

        async def starter(extra: str = NO_STORM) -> Running:
            return Running(await start_daemon(extra), service)

        yield starter
