"""A real daemon in-process (ingress, queue, registry, fcm instance) and the loopback FCM
(OAuth2 token endpoint and HTTP v1 send endpoint) it pushes to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from push_notification.testing.inprocess import NO_STORM, RunningDaemon, daemon_starter
from push_notification_fcm.testing import FakeDevice, LoopbackFcm


@dataclass
class Running:
    daemon: RunningDaemon
    fcm: LoopbackFcm

    async def register(self, device: FakeDevice, user: str = "jane@example.com", **extra: Any) -> str:
        return await self.daemon.register("fcm", user, token=device.token, **extra)


Start = Callable[..., Awaitable[Running]]


def instance_config(fcm: LoopbackFcm, account: Path, extra: str = "") -> str:
    return f"push_notification fcm {{\n  service_account = {account}\n  url = {fcm.url}\n  {extra}\n}}\n"


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """``await start(extra settings)``: the loopback FCM and a daemon pushing to it."""
    async with LoopbackFcm() as fcm:
        account = fcm.service_account(tmp_path / "service-account.json")
        async with daemon_starter(tmp_path, partial(instance_config, fcm, account)) as start_daemon:

            async def starter(extra: str = NO_STORM) -> Running:
                return Running(await start_daemon(extra), fcm)

            yield starter
