"""Real parts for the durable-delivery tests: the daemon as a subprocess, an HTTP sink that
records what reached it, and a sender that posts transactions as the Dovecot bridge does
(retrying refused or failed posts with the same transaction id).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from push_notification.testing.daemon import DaemonProcess, daemon_config

DRIVER_DIR = Path(__file__).parent / "driver"


class Sink:
    """An HTTP endpoint per driver instance (``/NAME``) recording the ids it accepted, and
    every id it was sent (``tried``), whatever it answered.

    ``answer(name, count)`` decides the status of the ``count``-th request to ``/NAME``:
    200 by default; tests make it 503 for a stretch, or 400 until "fixed".
    """

    def __init__(self) -> None:
        self.received: dict[str, list[str]] = {}
        self.tried: dict[str, set[str]] = {}
        self.calls: dict[str, int] = {}
        self.answer: Callable[[str, int], int] = lambda name, count: 200
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def ids(self, name: str) -> set[str]:
        return set(self.received.get(name, ()))

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        count = self.calls[name] = self.calls.get(name, 0) + 1
        body = await request.json()
        if request.method == "POST":  # the test driver: the transaction id, as idempotency key too
            assert request.headers["Idempotency-Key"] == body["id"]
            txn_id = body["id"]
        else:  # the OX driver's PUT: its payload has no id, so the tests send it as the subject
            assert body["event"] == "messageNew" and body["user"] == "11@3"
            txn_id = body["subject"]
        self.tried.setdefault(name, set()).add(txn_id)
        status = self.answer(name, count)
        if status == 200:
            self.received.setdefault(name, []).append(txn_id)
            return web.Response(text="ok")
        return web.Response(status=status, headers={"Retry-After": "1"} if status == 503 else {})

    async def __aenter__(self) -> Sink:
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        app.router.add_put("/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


class Daemon(DaemonProcess):
    """The daemon with the test drivers on its path, its queue file and its metrics."""

    def __init__(self, workdir: Path, config: str) -> None:
        super().__init__(daemon_config(workdir, config), pythonpath=[DRIVER_DIR])

    @property
    def queue_path(self) -> Path:
        return self.config.parent / "state" / "queue.sqlite"

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def transaction(user: str, uid: int) -> dict[str, Any]:
    """A delivery to INBOX of a user with OX push enabled; the subject is the transaction id
    (the OX payload carries no id of its own)."""
    txn_id = uuid.uuid4().hex
    return {
        "id": txn_id,
        "user": {"username": user, "service": "lmtp"},
        "mailbox": "INBOX",
        "events": [{"name": "MessageNew", "uid": uid, "uid_validity": 1700000000, "subject": txn_id}],
        "metadata": {"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},
    }


class Sender:
    """Posts transactions with ``concurrency`` connections; a post that fails (daemon down,
    503) is repeated with the same id until the daemon answers 202, as the bridge does."""

    def __init__(self, url: str, concurrency: int = 16) -> None:
        self.endpoint = f"{url}/v1/transactions"
        self.concurrency = concurrency
        self.accepted: list[str] = []
        self.refused = 0
        self.failed = 0
        self.on_accept: Callable[[int], Any] | None = None

    async def send_all(self, transactions: Iterable[dict[str, Any]]) -> None:
        pending: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for txn in transactions:
            pending.put_nowait(txn)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._worker(session, pending) for _ in range(self.concurrency)))

    async def _worker(self, session: aiohttp.ClientSession, pending: asyncio.Queue[dict[str, Any]]) -> None:
        while not pending.empty():
            txn = pending.get_nowait()
            while True:
                try:
                    async with session.post(self.endpoint, json=txn) as response:
                        await response.read()
                        if response.status == 202:
                            break
                        assert response.status == 503, f"unexpected {response.status}"
                        self.refused += 1
                except (aiohttp.ClientError, TimeoutError):
                    self.failed += 1
                await asyncio.sleep(0.05)
            self.accepted.append(txn["id"])
            if self.on_accept is not None:
                result = self.on_accept(len(self.accepted))
                if asyncio.iscoroutine(result):
                    await result


async def eventually(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``condition`` (sync or async) until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
