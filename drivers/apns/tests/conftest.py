"""A real daemon in-process (ingress, queue, registry, apns instance) and the loopback APNs
it pushes to, over HTTP/2 and TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from push_notification.testing.inprocess import NO_STORM, RunningDaemon, daemon_starter
from push_notification_apns.testing import FakeDevice, LoopbackApns

TOPIC = "com.example.mail"
KEY_ID, TEAM_ID = "ABC123DEFG", "TEAM123456"


@dataclass
class Running:
    daemon: RunningDaemon
    apns: LoopbackApns

    async def register(self, device: FakeDevice, user: str = "jane@example.com", **extra: Any) -> str:
        return await self.daemon.register("apns", user, token=device.token, **extra)


Start = Callable[..., Awaitable[Running]]


def p8_file(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """A team key as Apple hands it out: AuthKey_KEYID.p8, PKCS#8 PEM of a P-256 key."""
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    return path


def instance_config(apns: LoopbackApns, key: Path | None, extra: str = "") -> str:
    auth = f"key_file = {key}\n  key_id = {KEY_ID}\n  team_id = {TEAM_ID}" if key else ""
    urls = "".join(f"  {name}_url = {apns.url}\n" for name in ("production", "sandbox") if f"{name}_url" not in extra)
    return (f"push_notification apns {{\n  topic = {TOPIC}\n  {auth}\n{urls}"
            f"  ssl_client_ca_file = {apns.ca_file}\n  {extra}\n}}\n")  # fmt: skip


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """``await start(extra settings)``: the loopback APNs and a daemon with token authentication."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = p8_file(tmp_path / f"AuthKey_{KEY_ID}.p8", key)
    apns = LoopbackApns(tmp_path, topic=TOPIC, key=key.public_key(), key_id=KEY_ID, team_id=TEAM_ID)
    async with apns, daemon_starter(tmp_path, partial(instance_config, apns, key_file)) as start_daemon:

        async def starter(extra: str = NO_STORM) -> Running:
            return Running(await start_daemon(extra), apns)

        yield starter
