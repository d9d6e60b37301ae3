"""A real daemon in-process (ingress, queue, registry, webpush instance) and the loopback
push service it pushes to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from push_notification.config import parse_config
from push_notification.devices.vapid import create_vapid_key
from push_notification.server.daemon import Daemon
from push_notification_webpush.testing import LoopbackPushService, Subscriber

TOKEN = "s3cret-ingress"


@dataclass
class Running:
    daemon: Daemon
    url: str
    service: LoopbackPushService
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            text = await response.text()
            return response.status, (await response.json() if text else None)

    async def register(self, subscriber: Subscriber, user: str = "jane@example.com", **extra: Any) -> str:
        status, body = await self.call(
            "POST", "/v1/devices", {"user": user, "kind": "webpush", "subscription": subscriber.subscription(), **extra}
        )
        assert status == 201, body
        return str(body["id"])

    async def send(self, user: str = "jane@example.com", mailbox: str = "INBOX", **event: Any) -> None:
        event = {"name": "MessageNew", "uid": 1, "uid_validity": 1700000000, **event}
        txn = {"user": user, "mailbox": mailbox, "events": [event],
               "status": {"messages": 3, "recent": 1, "unseen": 2, "uidvalidity": 1700000000, "uidnext": 4}}  # fmt: skip
        status, body = await self.call("POST", "/v1/transactions", txn)
        assert status == 202, body

    async def metrics(self) -> str:
        async with self.session.get(self.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            return await response.text()


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
def vapid_key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "vapid.pem"
    return path, create_vapid_key(path)


@asynccontextmanager
async def running_daemon(
    tmp_path: Path,
    key: Path,
    public: str,
    instance: str = "",
    daemon_extra: str = "",
    service: LoopbackPushService | None = None,
) -> AsyncIterator[Running]:
    config = f"""listen = 127.0.0.1:0
state_dir = {tmp_path / "state"}
ingress_token = {TOKEN}
queue_retry_delay = 100ms
{daemon_extra}
push_notification webpush {{
  vapid_key = {key}
  vapid_subject = mailto:postmaster@example.com
  {instance}
}}
"""
    async with AsyncExitStack() as stack:
        if service is None:
            service = await stack.enter_async_context(LoopbackPushService(application_server_key=public))
        daemon = Daemon(parse_config(config, str(tmp_path / "push-notification.conf")))
        task = asyncio.create_task(daemon.run())
        while not daemon.bound:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as session:
            try:
                yield Running(daemon, f"http://{daemon.bound[0]}", service, session)
            finally:
                daemon.stop()
                await task


@pytest.fixture
async def start(tmp_path: Path, vapid_key: tuple[Path, str]) -> AsyncIterator[Start]:
    async with AsyncExitStack() as stack:

        async def starter(instance: str = "", daemon_extra: str = "") -> Running:
            return await stack.enter_async_context(
                running_daemon(tmp_path, vapid_key[0], vapid_key[1], instance, daemon_extra)
            )

        yield starter
