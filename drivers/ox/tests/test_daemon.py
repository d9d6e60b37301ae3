"""The ox driver in the real daemon: both config forms, users activated with the
``metadata`` command or by METADATA forwarded with the transaction."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from ox_testkit import OX_METADATA_KEY, PASSWORD, PATH, OxEndpoint

CLI = [sys.executable, "-m", "push_notification.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """``push-notification serve`` in a subprocess, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("w") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *CLI, "serve", "-c", str(self.config), "--listen", f"127.0.0.1:{self.port}",
                stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                try:
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
        raise AssertionError(f"daemon did not start:\n{self.log.read_text()}")

    async def cli(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()

    async def post(self, transaction: dict[str, object]) -> None:
        url = f"{self.url}/v1/transactions"
        async with aiohttp.ClientSession() as session, session.post(url, json=transaction) as resp:
            assert resp.status in (200, 202), await resp.text()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def daemon(tmp_path: Path, ox_endpoint: OxEndpoint) -> AsyncIterator[Daemon]:
    second = ox_endpoint.url(login=None, password=None, path=PATH + "/second")
    config = tmp_path / "push-notification.conf"
    config.write_text(
        f"state_dir = {tmp_path / 'state'}\n"
        f"metadata_path = {tmp_path / 'metadata.sqlite'}\n"
        "push_notification ox1 {\n"
        "  driver = ox\n"
        f"  ox_url = {ox_endpoint.url()}\n"
        "  ox_cache_ttl = 10s\n"
        "  ox_user_from_metadata = yes\n"
        "}\n"
        "plugin {\n"
        f"  push_notification_driver = ox:url={second} max_retries=0 timeout_msecs=1500\n"
        "}\n"
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    await daemon.start()
    yield daemon
    await daemon.stop()
    assert PASSWORD not in daemon.log.read_text()


def transaction(user: str, uid: int, **extra: object) -> dict[str, object]:
    event = {"name": "MessageNew", "uid": uid, "uid_validity": 1700000000, "subject": "=?utf-8?q?Gr=C3=BC=C3=9Fe?="}
    return {"user": {"username": user, "service": "lmtp"}, "mailbox": "INBOX", "events": [event], **extra}


async def wait_for(endpoint: OxEndpoint, count: int) -> None:
    for _ in range(200):
        if len(endpoint.received) >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"endpoint got {len(endpoint.received)} of {count} requests")


async def test_users_activated_with_the_metadata_command_are_notified_by_both_instances(
    daemon: Daemon, ox_endpoint: OxEndpoint
) -> None:
    await daemon.cli("metadata", "set", "-c", str(daemon.config), "-u", "alice", "-s", "", OX_METADATA_KEY, "user=11@3")
    await daemon.post(transaction("bob", 1))  # not activated: nothing
    await daemon.post(transaction("alice", 2))
    await wait_for(ox_endpoint, 2)
    by_path = {r.path: r.json for r in ox_endpoint.received}
    assert by_path[PATH]["user"] == "11@3"  # ox1: user_from_metadata = yes
    assert by_path[PATH + "/second"]["user"] == "alice"  # 2.3 driver line
    assert all(body["imap-uid"] == 2 for body in by_path.values())


async def test_metadata_and_status_forwarded_with_the_transaction(daemon: Daemon, ox_endpoint: OxEndpoint) -> None:
    status = {"messages": 4, "recent": 1, "unseen": 2, "uidvalidity": 1700000000, "uidnext": 5}
    await daemon.post(transaction("carol", 4, metadata={OX_METADATA_KEY: "user=7@1"}, status=status))
    await wait_for(ox_endpoint, 2)
    assert [r.body for r in ox_endpoint.received if r.path == PATH] == [
        b'{"user":"7@1","event":"messageNew","folder":"INBOX","imap-uidvalidity":1700000000,"imap-uid":4,'
        b'"subject":"=?utf-8?q?Gr=C3=BC=C3=9Fe?=","unseen":2}'
    ]
