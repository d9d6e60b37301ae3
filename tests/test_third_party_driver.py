"""A driver published by someone else: only a pyproject.toml entry point and a module.

Installed for real with pip (into a target directory put on the daemon's path), listed by
``push-notification drivers``, enabled by name in a config, and fed events by the daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "push-notification-tally"
version = "1.2.3"
dependencies = []

[project.entry-points."push_notification.drivers"]
tally = "push_notification_tally:Tally"
"""

MODULE = '''\
"""Appends one JSON line per event to the file named by its ``out`` setting."""
import json

from push_notification import hookimpl


class Tally:
    def __init__(self, ctx):
        self.out = ctx.settings.get_str("out", required=True)
        ctx.settings.check_unknown()

    @hookimpl
    def message_new(self, txn, event):
        with open(self.out, "a") as f:
            f.write(json.dumps({"user": txn.user.username, "uid": event.uid, "subject": event.subject}) + "\\n")
'''


@pytest.fixture(scope="module")
def installed_tally(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    project = tmp_path_factory.mktemp("tally")
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "push_notification_tally.py").write_text(MODULE)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


def test_an_installed_driver_is_listed_with_its_distribution_and_hooks(installed_tally: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "push_notification.cli", "drivers", "--json"],
        capture_output=True, text=True, env={**os.environ, **installed_tally}, check=True,
    )  # fmt: skip
    drivers = {row["name"]: row for row in json.loads(result.stdout)}
    assert drivers["tally"] == {
        "name": "tally", "distribution": "push-notification-tally", "version": "1.2.3", "hooks": ["message_new"],
    }  # fmt: skip


def test_a_driver_enabled_by_name_receives_events_beside_dlog(start_daemon, installed_tally, tmp_path: Path) -> None:
    out = tmp_path / "tally.jsonl"
    daemon = start_daemon(
        textwrap.dedent(f"""\
            push_notification counted {{
              driver = tally
              out = {out}
            }}
            push_notification dlog {{ }}
        """),
        env=installed_tally,
    )
    for uid in (1, 2):
        daemon.cli("send", "MessageNew", "-u", "alice", "-f", f"uid={uid}", "-f", "uid_validity=7", "-f", "subject=Hi",
                   "--url", daemon.url)  # fmt: skip
    daemon.wait_for_log("UID [2], UIDVALIDITY [7]")
    daemon.stop()
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"user": "alice", "uid": 1, "subject": "Hi"},
        {"user": "alice", "uid": 2, "subject": "Hi"},
    ]


def test_a_driver_that_is_not_installed_is_one_line_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "pn.conf"
    config.write_text("push_notification ox1 {\n  driver = nosuch\n}\n")
    result = subprocess.run(
        [sys.executable, "-m", "push_notification.cli", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {config}:1: push_notification ox1: driver 'nosuch' is not installed (installed: "
        + result.stderr.split("(installed: ")[1].split(")")[0]
        + "); install it with: pip install push-notification-nosuch\n"
    )


def test_two_distributions_claiming_one_driver_name_is_a_clear_error(
    installed_tally: dict[str, str], tmp_path: Path
) -> None:
    rival = tmp_path / "rival"
    rival.mkdir()
    (rival / "pyproject.toml").write_text(
        PYPROJECT.replace("push-notification-tally", "rival-tally").replace("push_notification_tally:", "rival_tally:")
    )
    (rival / "rival_tally.py").write_text(MODULE)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(rival)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), installed_tally["PYTHONPATH"]])}
    result = subprocess.run(
        [sys.executable, "-m", "push_notification.cli", "drivers"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    assert "driver 'tally' is provided by two distributions:" in result.stderr
    assert "rival-tally 1.2.3" in result.stderr and "push-notification-tally 1.2.3" in result.stderr
    assert result.stderr.strip().endswith("uninstall one of them")
