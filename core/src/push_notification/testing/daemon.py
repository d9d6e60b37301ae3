"""The daemon as a subprocess, as an admin runs it: ``push-notification serve`` on a port of
127.0.0.1, its log in a file, started, signalled, killed and restarted on the same port.

One runner for every test and benchmark that needs the real daemon::

    daemon = DaemonProcess(daemon_config(tmp_path, "push_notification dlog { }\\n")).start()
    try:
        ...  # post to daemon.ingress, daemon.wait_for_log("..."), daemon.signal(SIGHUP)
    finally:
        daemon.stop()

The blocking calls have ``a``-prefixed twins (``astart``, ``astop``) that wait in a thread,
for async tests whose own event loop serves the endpoint the daemon talks to.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from signal import SIGKILL, SIGTERM
from types import TracebackType

from push_notification.testing.net import free_port

__all__ = ["CLI", "DaemonProcess", "daemon_config"]

#: The ``push-notification`` command of the running interpreter.
CLI = (sys.executable, "-m", "push_notification.cli")


def daemon_config(directory: Path, config_text: str, *, name: str = "daemon") -> Path:
    """``DIRECTORY/NAME.conf``: ``state_dir = DIRECTORY/state``, then ``config_text``."""
    config = directory / f"{name}.conf"
    config.write_text(f"state_dir = {directory / 'state'}\n{config_text}")
    return config


class DaemonProcess:
    """``push-notification serve -c CONFIG --listen 127.0.0.1:PORT`` in a subprocess.

    ``listen="unix:/path"`` serves a Unix socket instead (``url`` is then meaningless).
    ``env`` adds to (or, with ``inherit_env=False``, replaces) the environment; ``pythonpath``
    puts directories first on ``PYTHONPATH`` (drivers found through a ``.dist-info`` beside
    them); ``command`` is the CLI to run (another virtualenv's ``push-notification``). Proxy
    settings are dropped: the daemon talks to loopback endpoints only.
    """

    def __init__(
        self,
        config: Path,
        *,
        log: Path | None = None,
        port: int | None = None,
        listen: str | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        pythonpath: Sequence[Path] = (),
        command: Sequence[str] = CLI,
    ) -> None:
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ingress = f"{self.url}/v1/transactions"
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.log_path = log or config.with_suffix(".log")
        base = dict(os.environ) if inherit_env else {}
        self.env = {k: v for k, v in {**base, **(env or {})}.items() if "proxy" not in k.lower()}
        if pythonpath:
            self.env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), self.env.get("PYTHONPATH", "")])
        self.command = tuple(command)
        self.proc: subprocess.Popen[bytes] | None = None

    # -- running -------------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> DaemonProcess:
        """Start the daemon (its log appended to); with ``wait``, return once it answers HTTP."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, "serve", "-c", str(self.config), "--listen", self.listen],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until ``/healthz`` answers (any status: the daemon is listening; a Unix socket:
        accepts a connection), or fail with the log."""
        deadline = time.monotonic() + timeout
        while not self._answers():
            if not self.running:
                raise AssertionError(f"the daemon exited with {self.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not listen within {timeout:g}s:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if self.listen.startswith("unix:"):
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(self.listen[5:])
                    return True
                except OSError:
                    return False
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` (SIGHUP: reload the config)."""
        assert self.proc is not None, "the daemon was not started"
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: a crash, with no shutdown and no flushing."""
        self.stop(SIGKILL)

    def stop(self, sig: int = SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop it with ``sig`` (SIGKILL after ``timeout``); its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    async def astart(self, *, timeout: float = 20.0) -> DaemonProcess:
        """:meth:`start` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.start, timeout=timeout)

    async def astop(self, sig: int = SIGTERM, timeout: float = 30.0) -> int | None:
        """:meth:`stop` without blocking the caller's event loop (which may serve the daemon's
        endpoint while it finishes its work)."""
        return await asyncio.to_thread(self.stop, sig, timeout)

    def __enter__(self) -> DaemonProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what it says ---------------------------------------------------------------

    def log(self) -> str:
        """Everything it logged so far (every start)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The log, once ``text`` is in it; fail with the log otherwise."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the daemon's log:\n{log[-4000:]}")
            time.sleep(0.02)
        return log

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run another ``push-notification`` command with the daemon's environment."""
        result = subprocess.run([*self.command, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"push-notification {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result
