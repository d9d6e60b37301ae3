"""A real daemon in-process (ingress, queue, registry, apns instance) and the loopback APNs
it pushes to, over HTTP/2 and TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from push_notification.config import parse_config
from push_notification.server.daemon import Daemon
from push_notification_apns.testing import FakeDevice, LoopbackApns

TOKEN = "s3cret-ingress"
TOPIC = "com.example.mail"
KEY_ID, TEAM_ID = "ABC123DEFG", "TEAM123456"
# Storm control waits are not what these tests are about.
NO_STORM = "coalesce = 0\n  defer_non_new = 0"


@dataclass
class Running:
    daemon: Daemon
    url: str
    apns: LoopbackApns
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            text = await response.text()
            return response.status, (await response.json() if text else None)

    async def register(self, device: FakeDevice, user: str = "jane@example.com", **extra: Any) -> str:
        status, body = await self.call(
            "POST", "/v1/devices", {"user": user, "kind": "apns", "token": device.token, **extra}
        )
        assert status == 201, body
        return str(body["id"])

    async def devices(self, user: str = "jane@example.com") -> list[str]:
        _, body = await self.call("GET", f"/v1/devices?user={user}")
        return [d["id"] for d in body["devices"]]

    async def send(self, user: str = "jane@example.com", mailbox: str = "INBOX", **event: Any) -> None:
        event = {"name": "MessageNew", "uid": 1, "uid_validity": 1700000000, **event}
        txn = {"user": user, "mailbox": mailbox, "events": [event],
               "status": {"messages": 3, "recent": 1, "unseen": 2, "uidvalidity": 1700000000, "uidnext": 4}}  # fmt: skip
        status, body = await self.call("POST", "/v1/transactions", txn)
        assert status == 202, body

    async def metrics(self) -> str:
        async with self.session.get(self.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            return await response.text()

    async def dead_letter(self) -> None:
        for _ in range(250):
            if self.daemon.queue.dead_letters("apns"):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("no dead letter")


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
def p8_key(tmp_path: Path) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """A team key as Apple hands it out: AuthKey_KEYID.p8, PKCS#8 PEM of a P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / f"AuthKey_{KEY_ID}.p8"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    return path, key


def instance_config(apns: LoopbackApns, key: Path | None, extra: str = "") -> str:
    auth = f"key_file = {key}\n  key_id = {KEY_ID}\n  team_id = {TEAM_ID}" if key else ""
    urls = "".join(f"  {name}_url = {apns.url}\n" for name in ("production", "sandbox") if f"{name}_url" not in extra)
    return (f"push_notification apns {{\n  topic = {TOPIC}\n  {auth}\n{urls}"
            f"  ssl_client_ca_file = {apns.ca_file}\n  {extra}\n}}\n")  # fmt: skip


@asynccontextmanager
async def running_daemon(tmp_path: Path, apns: LoopbackApns, instance: str) -> AsyncIterator[Running]:
    config = (f"listen = 127.0.0.1:0\nstate_dir = {tmp_path / 'state'}\ningress_token = {TOKEN}\n"
              f"queue_retry_delay = 100ms\n{instance}")  # fmt: skip
    daemon = Daemon(parse_config(config, str(tmp_path / "push-notification.conf")))
    task = asyncio.create_task(daemon.run())
    while not daemon.bound:
        assert not task.done(), task.exception()
        await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as session:
        try:
            yield Running(daemon, f"http://{daemon.bound[0]}", apns, session)
        finally:
            daemon.stop()
            await task


@pytest.fixture
async def start(tmp_path: Path, p8_key: tuple[Path, ec.EllipticCurvePrivateKey]) -> AsyncIterator[Start]:
    """``await start(extra settings)``: the loopback APNs and a daemon with token authentication."""
    async with AsyncExitStack() as stack:
        apns = await stack.enter_async_context(
            LoopbackApns(tmp_path, topic=TOPIC, key=p8_key[1].public_key(), key_id=KEY_ID, team_id=TEAM_ID)
        )

        async def starter(extra: str = NO_STORM) -> Running:
            config = instance_config(apns, p8_key[0], extra)
            return await stack.enter_async_context(running_daemon(tmp_path, apns, config))

        yield starter
