"""A throwaway Dovecot 2.3 with its doveadm HTTP API on 127.0.0.1, for the mailbox-status tests.

Self-contained: config, state and mail in a temp dir, own ports, started as ``dovecot -F`` in
its own process group and stopped by PID (never the system service).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USERNAME = "alice@example.com"


def dovecot_missing() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists():
        return "dovecot is not installed (apt-get install dovecot-core dovecot-imapd dovecot-lmtpd)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DovecotServer:
    """``with DovecotServer() as dovecot:`` then ``dovecot.doveadm(...)``, ``dovecot.api_url``."""

    def __init__(self, *, lmtp: bool = False, extra_config: str = "") -> None:
        # Dovecot's unprivileged processes must reach these files: not pytest's 0700 tmp dirs.
        self.root = Path(tempfile.mkdtemp(prefix="pn-lua-dovecot-"))
        self.root.chmod(0o755)
        self.api_key = secrets.token_hex(12)
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/doveadm/v1"
        self.lmtp_port = _free_port() if lmtp else None
        self.extra_config = extra_config
        self.config = self.root / "dovecot.conf"
        self.process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("mail")
            self.uid, self.gid = account.pw_uid, account.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()

    def _write(self) -> None:
        home = self.root / "home" / "alice"
        home.mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(home, self.uid, self.gid)
        (self.root / "passwd").write_text(f"{USERNAME}:{{PLAIN}}pass:{self.uid}:{self.gid}::{home}\n")
        me = pwd.getpwuid(os.getuid()).pw_name
        internal = "dovecot" if os.geteuid() == 0 else me
        login = "dovenull" if os.geteuid() == 0 else me
        self.config.write_text(
            f"""base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
instance_name = pn-lua-{self.port}
listen = 127.0.0.1
protocols = {"lmtp" if self.lmtp_port else ""}
ssl = no
disable_plaintext_auth = no
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {self.root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {self.root}/passwd
}}
doveadm_api_key = {self.api_key}
service doveadm {{
  inet_listener http {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
"""
            + (
                f"service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n"
                f"    port = {self.lmtp_port}\n  }}\n}}\n"
                if self.lmtp_port
                else ""
            )
            + self.extra_config
        )

    def __enter__(self) -> DovecotServer:
        self._write()
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.process = subprocess.Popen([binary, "-F", "-c", str(self.config)], start_new_session=True)
        deadline = time.monotonic() + 20
        ports = [self.port] + ([self.lmtp_port] if self.lmtp_port else [])
        while time.monotonic() < deadline:
            if all(_listening(port) for port in ports):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.root / "dovecot.log").read_text() if (self.root / "dovecot.log").exists() else ""
        self.__exit__()
        raise RuntimeError(f"dovecot did not start: {log[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def deliver(self, message: str, recipient: str = USERNAME) -> None:
        """Deliver over LMTP, as an MTA does (the push plugins see MessageNew)."""
        assert self.lmtp_port is not None, "DovecotServer(lmtp=True) delivers"
        client = smtplib.LMTP("127.0.0.1", self.lmtp_port)
        try:
            client.sendmail("sender@example.org", [recipient], message.encode())
        finally:
            client.quit()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def doveadm(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["doveadm", "-c", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout
