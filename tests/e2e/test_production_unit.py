"""The shipped systemd unit and example config work with the spool as ``dovecot-config``
prints it: a real Dovecot writes the spool as its mail user (files mode 0600; one account
for all mail, or system users each with their own uid and ``mail_access_groups = mail``), and
the daemon, run as another user with exactly the unit's group and capability, reads and
deletes them. A daemon without them stops at start-up with one line naming its user and
the fix (issue 14)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from e2e_support import BridgedDovecot, require_dovecot, wait_until
from push_notification.dovecot.setup import DEFAULT_SPOOL, dovecot_config
from push_notification.testing.dovecot import free_port

require_dovecot()
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to run as another user"
)

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "systemd" / "push-notification.service"
EXAMPLE = REPO / "contrib" / "push-notification.conf"
#: The unit's User=push-notification: an account that is neither Dovecot's nor the mail user.
DAEMON_USER = "daemon"
MAIL = pwd.getpwnam("mail")


def unit_settings() -> dict[str, str]:
    """The [Service] section of the shipped unit (a key given twice keeps the last)."""
    settings: dict[str, str] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_the_unit_and_the_example_config_agree_with_dovecot_config() -> None:
    unit = unit_settings()
    assert unit["ExecStart"] == (
        "/opt/push-notification/venv/bin/push-notification serve -c /etc/push-notification/push-notification.conf"
    )
    assert DEFAULT_SPOOL in unit["ReadWritePaths"].split()
    assert int(unit["LimitNOFILE"]) >= 8192
    assert unit["AmbientCapabilities"] == unit["CapabilityBoundingSet"] == "CAP_DAC_READ_SEARCH"
    assert f"spool_dir = {DEFAULT_SPOOL}" in EXAMPLE.read_text().splitlines()
    printed = CliRunner().invoke(dovecot_config, ["--no-install", "--version", "2.3", "--mail-user", "mail"]).output
    assert f"SupplementaryGroups={unit['SupplementaryGroups']}" in printed
    assert f"ReadWritePaths={DEFAULT_SPOOL}" in printed


def as_daemon_user(*, groups: list[int], caps: str | None) -> list[str]:
    """setpriv: the unit's User=, SupplementaryGroups= and AmbientCapabilities=."""
    args = ["setpriv", f"--reuid={DAEMON_USER}", f"--regid={pwd.getpwnam(DAEMON_USER).pw_gid}"]
    args.append(f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups")
    if caps:
        cap = caps.removeprefix("CAP_").lower()
        args += [f"--inh-caps=+{cap}", f"--ambient-caps=+{cap}"]
    return args


def daemon_config(dovecot: BridgedDovecot, port: int) -> Path:
    state = dovecot.root / "daemon-state"
    state.mkdir()
    os.chown(state, pwd.getpwnam(DAEMON_USER).pw_uid, -1)
    config = dovecot.root / "pn.conf"
    config.write_text(
        f"listen = 127.0.0.1:{port}\nstate_dir = {state}\nspool_dir = {dovecot.spool}\npush_notification dlog {{ }}\n"
    )
    os.chmod(config, 0o644)
    return config


def spool_as_printed(dovecot: BridgedDovecot) -> None:
    """``dovecot-config --mail-user mail``: ``install -d -o mail -g mail -m 2770 SPOOL …``."""
    for path in (dovecot.spool, dovecot.spool / "tmp", dovecot.spool / "new", dovecot.spool / "bad"):
        path.mkdir(exist_ok=True)
        os.chown(path, MAIL.pw_uid, MAIL.pw_gid)
        os.chmod(path, 0o2770)


@pytest.mark.parametrize(
    "mail_user, extra_config",
    [
        ("mail", ""),  # one account for all mail (as vmail)
        ("nobody", "mail_access_groups = mail\n"),  # system users: each their own uid, all in group mail
    ],
)
def test_the_units_user_group_and_capability_read_and_empty_dovecots_spool(mail_user: str, extra_config: str) -> None:
    unit = unit_settings()
    assert unit["SupplementaryGroups"] == grp.getgrgid(MAIL.pw_gid).gr_name
    with BridgedDovecot(mail_user=mail_user, extra_config=extra_config) as dovecot:
        spool_as_printed(dovecot)
        port = free_port()
        config = daemon_config(dovecot, port)
        log = dovecot.root / "daemon.log"
        command = [*as_daemon_user(groups=[MAIL.pw_gid], caps=unit["AmbientCapabilities"]),
                   sys.executable, "-m", "push_notification.cli", "serve", "-c", str(config)]  # fmt: skip
        with log.open("wb") as out:
            daemon = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert wait_until(lambda: "listening on" in log.read_text() or daemon.poll() is not None, 20)
            dovecot.deliver("From: bob@example.org\r\nSubject: unit\r\n\r\nhello\r\n", ["alice@example.com"])
            assert wait_until(lambda: "delivered transaction" in log.read_text(), 20), log.read_text()
            assert wait_until(lambda: not any((dovecot.spool / "new").iterdir()), 10)
        finally:
            daemon.terminate()
            daemon.wait(20)
        text = log.read_text()
        assert "(user alice@example.com, mailbox INBOX)" in text
        assert " ERROR " not in text and "Traceback" not in text
        assert dovecot.log_errors() == []


def require_interpreter_for_daemon_user() -> None:
    """This test runs the daemon as the unit's user with no capability: the interpreter must be
    one that user can run (a pyenv under a 0700 /root is not; the unit's /opt venv is)."""
    probe = subprocess.run(
        [*as_daemon_user(groups=[], caps=None), sys.executable, "-c", "pass"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"{sys.executable} cannot run as {DAEMON_USER}: {probe.stderr.strip()[:200]}")


def test_a_daemon_outside_the_spools_group_says_who_it_runs_as_and_the_fix() -> None:
    require_interpreter_for_daemon_user()
    with BridgedDovecot() as dovecot:
        spool_as_printed(dovecot)
        config = daemon_config(dovecot, free_port())
        started = time.monotonic()
        done = subprocess.run(
            [*as_daemon_user(groups=[], caps=None), sys.executable, "-m", "push_notification.cli",
             "serve", "-c", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1 and time.monotonic() - started < 60
    (line,) = [line for line in done.stderr.splitlines() if "ERROR" in line or "Error:" in line]
    assert line.startswith(f"Error: spool_dir {dovecot.spool}:")
    assert f"runs as {DAEMON_USER} (uid" in line
    assert f"SupplementaryGroups={grp.getgrgid(MAIL.pw_gid).gr_name}" in line
    assert "Traceback" not in done.stderr
