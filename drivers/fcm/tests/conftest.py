"""A real daemon in-process (ingress, queue, registry, fcm instance) and the loopback FCM
(OAuth2 token endpoint and HTTP v1 send endpoint) it pushes to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from push_notification.testing.inprocess import RunningDaemon, running_daemon
from push_notification_fcm.testing import FakeDevice, LoopbackFcm

# Storm control waits are not what these tests are about.
NO_STORM = "coalesce = 0\n  defer_non_new = 0"


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
    async with AsyncExitStack() as stack:
        fcm = await stack.enter_async_context(LoopbackFcm())
        account = fcm.service_account(tmp_path / "service-account.json")

        async def starter(extra: str = NO_STORM) -> Running:
            daemon = await stack.enter_async_context(running_daemon(tmp_path, instance_config(fcm, account, extra)))
            return Running(daemon, fcm)

        yield starter
