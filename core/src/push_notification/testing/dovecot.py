"""A real Dovecot for tests and benchmarks: self-contained config in a temp dir, own ports.

``Dovecot`` writes a config (base_dir, state_dir, log inside its directory; IMAP, LMTP and
optionally doveadm HTTP on 127.0.0.1 with free ports; passwd-file users; Maildir; server
METADATA), starts ``dovecot -F -c CONFIG`` in its own process group, waits until the ports
answer and stops the master by PID with SIGTERM. Nothing here touches the system service::

    with Dovecot(plugin={"push_notification_driver": "dlog"}) as dovecot:
        dovecot.deliver("Subject: hi\\r\\n\\r\\nbody\\r\\n", "alice@example.com")
        imap = dovecot.imap("alice@example.com")
        print(dovecot.log_text())

Run as root, mail processes run as ``mail_user`` (default: the system ``mail`` account);
as another user, everything runs as that user.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import os
import poplib
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Self

from push_notification.testing.net import free_port

__all__ = ["Dovecot", "DovecotUnavailable", "dovecot_binary", "lmtp_send"]

#: The plugins a push-notification Lua setup needs (Dovecot's dependency order).
PUSH_MAIL_PLUGINS = "notify push_notification mail_lua push_notification_lua"
DEFAULT_PASSWORD = "pass"
#: Where Debian (bookworm and trixie) installs the local delivery agent.
LDA_BINARY = "/usr/lib/dovecot/dovecot-lda"
_counter = itertools.count(1)


class DovecotUnavailable(RuntimeError):
    """Dovecot is not installed here (the message says how to install it)."""


def dovecot_binary() -> str:
    """Path of the ``dovecot`` binary, or :class:`DovecotUnavailable` naming the fix."""
    found = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)
    if found is None:
        raise DovecotUnavailable(
            "dovecot is not installed: run scripts/install-dovecot as root"
            " (apt-get install dovecot-core dovecot-imapd dovecot-lmtpd)"
        )
    return found


def doveadm_binary() -> str:
    found = shutil.which("doveadm") or "/usr/bin/doveadm"
    if not os.access(found, os.X_OK):
        raise DovecotUnavailable("doveadm is not installed: run scripts/install-dovecot as root")
    return found


def lmtp_send(
    conn: smtplib.LMTP, message: bytes | str | Message, recipients: Sequence[str], sender: str
) -> list[tuple[int, str]]:
    """Deliver one message over an open LMTP connection; one ``(code, text)`` per recipient.

    LMTP answers DATA once per accepted recipient; smtplib reads only the first reply, so the
    others are read here (otherwise they would poison the next command on the connection).
    """
    if isinstance(message, Message):
        message = message.as_bytes()
    if isinstance(message, str):
        message = message.encode()
    code, text = conn.mail(sender)
    if code != 250:
        conn.rset()
        return [(code, text.decode(errors="replace"))] * len(recipients)
    replies: list[tuple[int, str] | None] = []
    for rcpt in recipients:
        code, text = conn.rcpt(rcpt)
        replies.append(None if code == 250 else (code, text.decode(errors="replace")))
    accepted = [i for i, r in enumerate(replies) if r is None]
    if not accepted:
        conn.rset()
        return [r for r in replies if r is not None]
    code, text = conn.data(message)
    answers = [(code, text.decode(errors="replace"))]
    for _ in accepted[1:]:
        code, text = conn.getreply()
        answers.append((code, text.decode(errors="replace")))
    for i, answer in zip(accepted, answers, strict=True):
        replies[i] = answer
    return [r for r in replies if r is not None]


def _mail_account(name: str | None) -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    for candidate in [name] if name else ["mail", "nobody"]:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(candidate)
            return entry.pw_uid, entry.pw_gid
    raise DovecotUnavailable(f"no system account {name!r} for the mail processes; pass mail_user=<existing user>")


class Dovecot:
    """One private Dovecot instance (context manager). Attributes after :meth:`start`:
    ``imap_port``, ``lmtp_port``, ``doveadm_port`` (``None`` unless ``doveadm_http``),
    ``pop3_port`` (0 unless ``pop3``: needs Debian's dovecot-pop3d), ``pid``; always: ``root``
    (its directory), ``config_path``, ``log_path``, ``users``.

    ``plugin``: keys for the ``plugin { }`` block (e.g. ``push_notification_driver``).
    ``extra_config``: raw dovecot.conf text appended at the end. ``environment``: variables
    passed through ``import_environment`` (the only way they reach Lua scripts).
    """

    def __init__(
        self,
        *,
        users: Sequence[str] = ("alice@example.com", "bob@example.com"),
        password: str = DEFAULT_PASSWORD,
        plugin: Mapping[str, str] | None = None,
        extra_config: str = "",
        mail_plugins: str = PUSH_MAIL_PLUGINS,
        mail_debug: bool = False,
        doveadm_http: bool = False,
        pop3: bool = False,
        doveadm_api_key: str | None = None,
        environment: Mapping[str, str] | None = None,
        mail_user: str | None = None,
        directory: Path | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        self.binary = self._find_binary()
        self.users = tuple(users)
        self.password = password
        self.plugin = dict(plugin or {})
        self.extra_config = extra_config
        self.mail_plugins = mail_plugins
        self.mail_debug = mail_debug
        self.doveadm_http = doveadm_http
        self.pop3_enabled = pop3
        self.doveadm_api_key = doveadm_api_key or (secrets.token_hex(16) if doveadm_http else None)
        self.environment = dict(environment or {})
        self.mail_uid, self.mail_gid = self._mail_account(mail_user)
        self.start_timeout = start_timeout
        self._own_dir = directory is None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="pn-dovecot-", dir=self._temp_parent()))
        self.root = Path(directory)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # mail processes (another uid when root) must reach the homes
        self.instance_name = f"pn-test-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.imap_port = 0
        self.lmtp_port = 0
        self.doveadm_port: int | None = None
        self.pop3_port = 0
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------- hooks for another Dovecot (2.4 chroot)
    def _find_binary(self) -> str:
        return dovecot_binary()

    def _mail_account(self, name: str | None) -> tuple[int, int]:
        return _mail_account(name)

    def _temp_parent(self) -> str | None:
        return None

    def conf_path(self, path: Path) -> str:
        """``path`` as Dovecot sees it (the same here; inside a chroot it differs)."""
        return str(path)

    def _command(self, program: str, *args: str) -> list[str]:
        """The argv that runs Dovecot's ``program`` (``dovecot``, ``doveadm`` or ``dovecot-lda``)."""
        if program == "dovecot":
            binary = self.binary
        elif program == "dovecot-lda":
            binary = LDA_BINARY
        else:
            binary = doveadm_binary()
        return [binary, *args]

    # ----------------------------------------------------------------- config
    def home(self, user: str) -> Path:
        """The user's home directory (Maildir lives in ``home/Maildir``)."""
        return self.root / "home" / user

    def chown_for_mail(self, path: Path) -> None:
        """Give ``path`` to the account the mail processes run as (no-op unless root)."""
        if os.geteuid() == 0:
            os.chown(path, self.mail_uid, self.mail_gid)

    def make_spool(self) -> Path:
        """``ROOT/spool`` with ``tmp/`` and ``new/``, owned by the mail account: the bridge's
        spool directory as ``push-notification dovecot-config`` tells an admin to create it."""
        spool = self.root / "spool"
        for path in (spool, spool / "tmp", spool / "new"):
            path.mkdir(exist_ok=True)
            self.chown_for_mail(path)
        return spool

    def _write_config(self) -> None:
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir(exist_ok=True)
        os.chmod(self.root / "home", 0o755)
        lines = []
        for user in self.users:
            home = self.home(user)
            home.mkdir(exist_ok=True)
            self.chown_for_mail(home)
            lines.append(f"{user}:{{PLAIN}}{self.password}:{self.mail_uid}:{self.mail_gid}::{self.conf_path(home)}::\n")
        passwd = self.root / "passwd"
        passwd.write_text("".join(lines))
        os.chmod(passwd, 0o644)
        self.config_path.write_text(self.render_config())

    def render_config(self) -> str:
        """The dovecot.conf text for the current ports and options."""
        if os.geteuid() == 0:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            internal_user, internal_group, login_user = me, me, me
        passwd = self.root / "passwd"
        env = " ".join(f"{k}={v}" for k, v in self.environment.items())
        plugin = "".join(f"  {key} = {value}\n" for key, value in self.plugin.items())
        doveadm = ""
        if self.doveadm_port is not None:
            doveadm = (
                f"doveadm_api_key = {self.doveadm_api_key}\n"
                "service doveadm {\n"
                f"  inet_listener http {{\n    address = 127.0.0.1\n    port = {self.doveadm_port}\n  }}\n"
                "}\n"
            )
        return f"""# Written by push_notification.testing.dovecot for one test instance.
instance_name = {self.instance_name}
base_dir = {self.root / "run"}
state_dir = {self.root / "state"}
log_path = {self.log_path}
listen = 127.0.0.1
protocols = imap lmtp{" pop3" if self.pop3_enabled else ""}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
mail_debug = {"yes" if self.mail_debug else "no"}
import_environment = $import_environment {env}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
mail_location = maildir:~/Maildir
mail_attribute_dict = file:%h/dovecot-attributes
mail_plugins = $mail_plugins {self.mail_plugins}
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  imap_metadata = yes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
{doveadm}plugin {{
{plugin}}}
{self.extra_config}
"""

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Write the config, start Dovecot in the foreground and wait until its ports answer."""
        if self._process is not None:
            return self
        self.imap_port, self.lmtp_port = free_port(), free_port()
        if self.doveadm_http:
            self.doveadm_port = free_port()
        if self.pop3_enabled:
            self.pop3_port = free_port()
        self._write_config()
        log = (self.root / "dovecot.stderr").open("ab")
        self._process = subprocess.Popen(
            self._command("dovecot", "-F", "-c", self.conf_path(self.config_path)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.pid = self._process.pid
        # IMAP, LMTP and POP3 wait for their greeting: the master listens at once, but a
        # process still starting when SIGTERM comes holds up Dovecot's shutdown for seconds.
        greeted = [self.imap_port, self.lmtp_port] + ([self.pop3_port] if self.pop3_port else [])
        ports = [*greeted, *([self.doveadm_port] if self.doveadm_port else [])]
        deadline = time.monotonic() + self.start_timeout
        for port in ports:
            while not (_greets(port, deadline) if port in greeted else _port_open(port)):
                if self._process.poll() is not None:
                    problem = self._startup_problem()
                    self._process = None
                    raise DovecotUnavailable(f"dovecot exited at start-up: {problem}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise DovecotUnavailable(f"dovecot did not open port {port} within {self.start_timeout:g}s")
                time.sleep(0.05)
        return self

    def _startup_problem(self) -> str:
        text = ""
        for path in (self.root / "dovecot.stderr", self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        errors = [line for line in text.splitlines() if "Fatal" in line or "Error" in line]
        return (errors or text.splitlines() or ["no output"])[-1].strip()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the master PID; its children go with it. SIGKILL the group if it hangs."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Children (lmtp, imap...) notice the master's exit; give them a moment to go.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(process.pid):
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Stop and remove the instance's directory (if this object created it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ---------------------------------------------------------------- clients
    def lmtp(self, timeout: float = 30.0) -> smtplib.LMTP:
        """An open LMTP connection (LHLO done); close it with ``quit()``."""
        conn = smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=timeout)
        conn.ehlo_or_helo_if_needed()
        return conn

    def deliver(
        self,
        message: bytes | str | Message,
        recipients: str | Sequence[str] = "alice@example.com",
        sender: str = "sender@example.org",
    ) -> list[tuple[int, str]]:
        """Deliver one message over a fresh LMTP connection; ``(code, text)`` per recipient."""
        rcpts = [recipients] if isinstance(recipients, str) else list(recipients)
        conn = self.lmtp()
        try:
            return lmtp_send(conn, message, rcpts, sender)
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()

    def deliver_lda(
        self, message: bytes | str, recipient: str = "alice@example.com", sender: str = "sender@example.org"
    ) -> subprocess.CompletedProcess[bytes]:
        """Deliver one message with ``dovecot-lda -d RECIPIENT`` (as an MTA's pipe would); the
        result's returncode is LDA's exit code (0: delivered)."""
        data = message.encode() if isinstance(message, str) else message
        argv = self._command("dovecot-lda", "-c", self.conf_path(self.config_path), "-d", recipient, "-f", sender)
        return subprocess.run(argv, input=data, capture_output=True, timeout=60, check=False)

    def imap(self, user: str = "alice@example.com", password: str | None = None) -> imaplib.IMAP4:
        """A logged-in IMAP connection; ``logout()`` when done."""
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)
        conn.login(user, password or self.password)
        return conn

    def pop3(self, user: str = "alice@example.com", password: str | None = None) -> poplib.POP3:
        """A logged-in POP3 connection (needs ``pop3=True``); ``quit()`` commits deletions."""
        if not self.pop3_port:
            raise RuntimeError("POP3 is off: create Dovecot(pop3=True)")
        conn = poplib.POP3("127.0.0.1", self.pop3_port, timeout=30)
        conn.user(user)
        conn.pass_(password or self.password)
        return conn

    def doveadm(
        self, *args: str, check: bool = True, timeout: float = 60.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c CONFIG ARGS`` (``stdin``: e.g. the message for ``doveadm save``);
        with ``check`` a failure raises with its output."""
        result = subprocess.run(
            self._command("doveadm", "-c", self.conf_path(self.config_path), *args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def set_metadata(self, user: str, key: str, value: str | None) -> None:
        """Set (or with ``None`` unset) a server METADATA entry, as OX does for a user."""
        if value is None:
            self.doveadm("mailbox", "metadata", "unset", "-u", user, "-s", "", key)
        else:
            self.doveadm("mailbox", "metadata", "set", "-u", user, "-s", "", key, value)

    @property
    def doveadm_http_url(self) -> str:
        """Base URL of the doveadm HTTP API (``…/doveadm/v1``); needs ``doveadm_http=True``."""
        if self.doveadm_port is None:
            raise RuntimeError("doveadm HTTP is off: create Dovecot(doveadm_http=True)")
        return f"http://127.0.0.1:{self.doveadm_port}/doveadm/v1"

    # -------------------------------------------------------------------- log
    def log_text(self) -> str:
        """Everything Dovecot logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern: str | None = None) -> list[str]:
        """Log lines, optionally only those matching the regular expression ``pattern``."""
        lines = self.log_text().splitlines()
        if pattern is None:
            return lines
        regex = re.compile(pattern)
        return [line for line in lines if regex.search(line)]

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Wait until at least ``count`` log lines match ``pattern``; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.log_lines(pattern)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def log_errors(self) -> list[str]:
        """Lines Dovecot logged as Error, Fatal or Panic."""
        return self.log_lines(r"(Error|Fatal|Panic):")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _greets(port: int, deadline: float) -> bool:
    """Whether the server on ``port`` sends its greeting line (its process is ready). The
    line is read whole, so closing is a plain end of connection, not a reset."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.settimeout(max(0.2, deadline - time.monotonic()))
            with sock.makefile("rb") as stream:
                return stream.readline(4096).endswith(b"\n")
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. A zombie does not count: it holds no
    port, file or lock, and once the master is gone it waits for the system's init to reap
    it, which in a container can take seconds."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no /proc: the group exists, count it as alive
    return any(entry.isdigit() and _running_in_group(Path("/proc", entry, "stat"), pgid) for entry in entries)


def _running_in_group(stat: Path, pgid: int) -> bool:
    """Whether ``/proc/PID/stat`` is a process of group ``pgid`` that is not a zombie."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False  # gone meanwhile
    state, group = fields[0], int(fields[2])
    return group == pgid and state not in ("Z", "X")
