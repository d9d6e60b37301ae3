"""Helpers for the end-to-end tests: a Dovecot wired to the bridge, the spool, a recording ingress."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from push_notification.dovecot.setup import DEFAULT_INGRESS, BridgeOptions, install_script, render_snippet
from push_notification.testing.daemon import DaemonProcess, daemon_config
from push_notification.testing.dovecot import Dovecot, DovecotUnavailable, dovecot_binary
from push_notification.testing.net import free_port

OX_KEY = "/private/vendor/vendor.dovecot/http-notify"
REPO = Path(__file__).resolve().parents[2]
_missing: list[str | None] = []


def dovecot_missing() -> str | None:
    """Why Dovecot cannot be used here (after trying scripts/install-dovecot), or None."""
    if _missing:
        return _missing[0]
    try:
        dovecot_binary()
        reason = None
    except DovecotUnavailable:
        script = REPO / "scripts" / "install-dovecot"
        result = subprocess.run([str(script)], capture_output=True, text=True, check=False)
        try:
            dovecot_binary()
            reason = None
        except DovecotUnavailable as exc:
            reason = (result.stderr.strip() or str(exc)).splitlines()[-1]
    _missing.append(reason)
    return reason


def require_driver(name: str) -> None:
    """Call at the top of a test module that needs driver ``name``: fail under CI=true, else skip."""
    if name in {ep.name for ep in entry_points(group="push_notification.drivers")}:
        return
    reason = f"the {name} driver (drivers/{name}) is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_dovecot() -> None:
    """Call at the top of a test module: under CI=true a missing Dovecot fails the run,
    elsewhere the module is skipped with the reason."""
    require(dovecot_missing(), "Dovecot")


def require(reason: str | None, what: str) -> None:
    """Skip the calling module because of ``reason`` (``None``: nothing missing), except
    under CI=true, whose own setup installs ``what``: there the run fails instead."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {what} is unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} is unavailable: {reason}", allow_module_level=True)


def need(reason: str | None, what: str) -> None:
    """Inside one test: skip it because of ``reason`` (``None``: nothing missing), except under
    CI=true, whose own setup installs ``what``: there the test fails instead."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {what} is unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} is unavailable: {reason}")


class BridgedDovecot(Dovecot):
    """A private Dovecot configured by the snippet ``push-notification dovecot-config --version
    2.3`` prints, alone: it loads the plugins and the bridge for every service that changes mail.

    ``spool`` is the bridge's spool directory (owned by the mail processes' account).
    ``plugin`` entries passed in go into the global ``plugin { }`` (e.g. a dlog driver2).
    ``mail_plugins`` (default none) are loaded globally, before the snippet's filters.
    """

    def __init__(
        self,
        transport: str = "spool",
        *,
        url: str = DEFAULT_INGRESS,
        token: str | None = None,
        status: bool = True,
        timeout_msecs: int = 1000,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mail_plugins", "")
        super().__init__(**kwargs)
        self.spool = self.make_spool()
        script = install_script(self.root / "share")
        self.options = BridgeOptions(
            script_path=str(script),
            transport=transport,
            spool=str(self.spool),
            url=url,
            token=token,
            timeout_msecs=timeout_msecs,
            status=status,
        )
        self.extra_config = render_snippet(self.options, "2.3") + self.extra_config

    def take_spool(self) -> list[dict[str, Any]]:
        """The transactions in ``spool/new`` (oldest first), removed from the spool."""
        return take_spool(self.spool)


def take_spool(spool: Path) -> list[dict[str, Any]]:
    """The transactions in ``spool/new`` (oldest first), removed from the spool."""
    return [json.loads(raw) for raw in take_spool_files(spool)]


def take_spool_files(spool: Path) -> list[bytes]:
    """The files in ``spool/new`` as written (oldest first), removed from the spool."""
    entries = sorted((path.stat().st_mtime_ns, path.name, path) for path in (spool / "new").iterdir())
    result = []
    for _, _, path in entries:
        result.append(path.read_bytes())
        path.unlink()
    return result


@dataclass
class Recorded:
    """One request the recording ingress received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """A real aiohttp server on 127.0.0.1 (own thread and loop) that records every request.

    ``status`` is what it answers; ``delay`` seconds before answering (to test timeouts).
    """

    status: int = 202
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/transactions"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"status": "recorded"}, status=self.status)


@contextmanager
def recording_server(status: int = 202, delay: float = 0.0) -> Iterator[RecordingServer]:
    """Run a :class:`RecordingServer` for the ``with`` block."""
    server = RecordingServer(status=status, delay=delay, port=free_port())
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", server._handle)
        # At the end, a request still held by ``delay`` is cut off (it was recorded when it
        # came) rather than waited for: its client, Dovecot's bridge, gave up long before.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", server.port).start()
        ready.set()
        await stop.wait()
        await runner.cleanup()
        held = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("recording server did not start")
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(interval)


def events_of(txns: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(mailbox, event name)`` of every event, in order."""
    return [(t["mailbox"], e["name"]) for t in txns for e in t["events"]]


def e2e_daemon(directory: Path, config_text: str, token: str | None = None) -> DaemonProcess:
    """The daemon for an end-to-end test (not started): ``config_text`` with its state in
    ``DIRECTORY/state`` and, given ``token``, that ingress token."""
    auth = f"ingress_token = {token}\n" if token else ""
    return DaemonProcess(daemon_config(directory, auth + config_text))
