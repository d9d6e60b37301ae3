"""The ox driver in the real daemon: both config forms, users activated with the
``metadata`` command or by METADATA forwarded with the transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from ox_testkit import OX_METADATA_KEY, PASSWORD, PATH, OxEndpoint
from push_notification.testing.daemon import DaemonProcess


class Daemon(DaemonProcess):
    """The daemon, with the two calls these tests make while their loop serves the endpoint."""

    async def run_cli(self, *args: str) -> None:
        await asyncio.to_thread(self.cli, *args)

    async def post(self, transaction: dict[str, object]) -> None:
        async with aiohttp.ClientSession() as session, session.post(self.ingress, json=transaction) as resp:
            assert resp.status in (200, 202), await resp.text()


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
    daemon = Daemon(config)
    await daemon.astart()
    yield daemon
    await daemon.astop()
    assert PASSWORD not in daemon.log()


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
    await daemon.run_cli(
        "metadata", "set", "-c", str(daemon.config), "-u", "alice", "-s", "", OX_METADATA_KEY, "user=11@3"
    )
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
