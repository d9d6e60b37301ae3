"""A real daemon in-process for driver tests: ingress on 127.0.0.1, the durable queue, the
device registry, storm control and the driver instances of a config text, reached over HTTP
the way a mail server and an app backend reach it.

    async with running_daemon(tmp_path, "push_notification apns { ... }") as daemon:
        await daemon.register("apns", token=...)
        await daemon.send()

A driver's conftest starts one daemon per test with :func:`daemon_starter`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from push_notification.config import parse_config
from push_notification.errors import ConfigError
from push_notification.server.daemon import Daemon

INGRESS_TOKEN = "s3cret-ingress"
USER = "jane@example.com"
#: Instance settings that turn storm control off: its waits are not what most tests are about.
NO_STORM = "coalesce = 0\n  defer_non_new = 0"


@dataclass
class RunningDaemon:
    daemon: Daemon
    url: str
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """An authorised ingress request; (status, JSON body or None)."""
        headers = {"Authorization": f"Bearer {INGRESS_TOKEN}"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            text = await response.text()
            return response.status, (await response.json() if text else None)

    async def register(self, kind: str, user: str = USER, **fields: Any) -> str:
        """``POST /v1/devices``; the new device's id."""
        status, body = await self.call("POST", "/v1/devices", {"user": user, "kind": kind, **fields})
        assert status == 201, body
        return str(body["id"])

    async def devices(self, user: str = USER) -> list[str]:
        """The ids of the user's registered devices."""
        status, body = await self.call("GET", f"/v1/devices?user={user}")
        assert status == 200, body
        return [str(device["id"]) for device in body["devices"]]

    async def send(self, user: str = USER, mailbox: str = "INBOX", **event: Any) -> None:
        """A one-event transaction (MessageNew unless ``name`` says otherwise), 2 unseen."""
        event = {"name": "MessageNew", "uid": 1, "uid_validity": 1700000000, **event}
        status_ = {"messages": 3, "recent": 1, "unseen": 2, "uidvalidity": 1700000000, "uidnext": 4}
        txn = {"user": user, "mailbox": mailbox, "events": [event], "status": status_}
        status, body = await self.call("POST", "/v1/transactions", txn)
        assert status == 202, body

    async def metrics(self) -> str:
        """The ``/metrics`` text."""
        headers = {"Authorization": f"Bearer {INGRESS_TOKEN}"}
        async with self.session.get(self.url + "/metrics", headers=headers) as response:
            assert response.status == 200
            return await response.text()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every accepted transaction is delivered, retried or dead."""
        await self.daemon.dispatcher.drain(timeout)

    async def dead_letter(self, instance: str, timeout: float = 5.0) -> None:
        """Wait until ``instance`` has a dead letter."""
        for _ in range(int(timeout / 0.02)):
            if self.daemon.queue.dead_letters(instance):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no dead letter for {instance} within {timeout:g}s")


@asynccontextmanager
async def running_daemon(directory: Path, instances: str, daemon_settings: str = "") -> AsyncIterator[RunningDaemon]:
    """The daemon of ``instances`` (``push_notification NAME { ... }`` blocks), state in ``directory``."""
    config = (f"listen = 127.0.0.1:0\nstate_dir = {directory / 'state'}\ningress_token = {INGRESS_TOKEN}\n"
              f"queue_retry_delay = 100ms\n{daemon_settings}\n{instances}")  # fmt: skip
    daemon = Daemon(parse_config(config, str(directory / "push-notification.conf")))
    task = asyncio.create_task(daemon.run())
    while not daemon.bound:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as session:
        try:
            yield RunningDaemon(daemon, f"http://{daemon.bound[0]}", session)
        finally:
            daemon.stop()
            await task


@asynccontextmanager
async def daemon_starter(
    directory: Path, instance: Callable[[str], str]
) -> AsyncIterator[Callable[..., Awaitable[RunningDaemon]]]:
    """``await start(extra=NO_STORM, daemon_settings="")``: a daemon whose one instance block is
    ``instance(extra)``; every daemon started stops when the context ends."""
    async with AsyncExitStack() as stack:

        async def start(extra: str = NO_STORM, daemon_settings: str = "") -> RunningDaemon:
            return await stack.enter_async_context(running_daemon(directory, instance(extra), daemon_settings))

        yield start


def startup_error(directory: Path, driver: str, settings: str) -> str:
    """The one-line error a daemon with ``push_notification DRIVER { SETTINGS }`` stops at,
    after the ``push_notification DRIVER: `` that names the block."""
    config = f"listen = 127.0.0.1:0\nstate_dir = {directory / 'state'}\npush_notification {driver} {{\n{settings}\n}}\n"
    try:
        Daemon(parse_config(config, str(directory / "push-notification.conf")))
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"the daemon started with: {settings!r}")
    assert "\n" not in message, message
    return message.split(f"push_notification {driver}: ", 1)[1]
