"""``push-notification new-driver``: a generated driver installs, is found and works.

The end-to-end tests build a fresh venv (one for the module) with the core from this checkout
and install generated projects into it, as a driver author would, and run the generated tests there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from click.testing import CliRunner
from push_notification.scaffold import NAME_RULE, new_driver
from push_notification.testing.daemon import DaemonProcess

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core"
HAS_NEW_DRIVER = "new_driver" in (CORE / "src" / "push_notification" / "cli.py").read_text()


def scaffold(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(new_driver, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["X", "a", "Matrix", "my-push", "9lives", "push__it", "trailing_", "a" * 33, "class"])
def test_invalid_names_are_refused_with_the_rule(tmp_path: Path, name: str) -> None:
    code, output = scaffold(name, "--dir", str(tmp_path / "out"))
    assert code == 1
    assert output.strip() == f"Error: invalid driver name {name!r}: {NAME_RULE}"
    assert not (tmp_path / "out").exists()


def test_names_of_shipped_drivers_are_refused(tmp_path: Path) -> None:
    code, output = scaffold("webhook", "--dir", str(tmp_path / "out"))
    assert code == 1
    assert "driver name 'webhook' is taken by a driver shipped with push-notification" in output


def test_an_existing_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    code, output = scaffold("matrix", "--dir", str(tmp_path))
    assert code == 1
    assert "already exists and is not empty" in output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_the_project_has_everything_a_distribution_needs(tmp_path: Path) -> None:
    code, output = scaffold("my_push", "--dir", str(tmp_path / "p"))
    assert code == 0, output
    files = sorted(str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "noxfile.py",
        "pyproject.toml",
        "src/push_notification_my_push/__init__.py",
        "src/push_notification_my_push/driver.py",
        "src/push_notification_my_push/py.typed",
        "tests/test_driver.py",
    ]
    pyproject = (tmp_path / "p" / "pyproject.toml").read_text()
    assert 'name = "push-notification-my-push"' in pyproject
    assert 'my_push = "push_notification_my_push:MyPushDriver"' in pyproject
    driver = (tmp_path / "p" / "src/push_notification_my_push/driver.py").read_text()
    assert "class MyPushDriver:" in driver
    assert "def begin_txn(" in driver and "def message_new(" in driver and "def end_txn(" in driver


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_for(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text() if path.exists() else ""


FreshVenv = tuple[str, str, list[str], dict[str, str]]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    """A venv with the core from this checkout: its python, its CLI, ``pip install`` and the env.

    One per module: creating it and installing the core is most of these tests' time. Each
    test installs drivers of its own names into it, and none depends on another's being absent.
    """
    env_dir = tmp_path_factory.mktemp("scaffold") / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    python, cli = str(bin_dir / "python"), str(bin_dir / "push-notification")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, str(CORE)], env_dir.parent, env)
    return python, cli, pip, env


def test_a_generated_driver_installs_beside_the_core_and_delivers(tmp_path: Path, fresh_venv: FreshVenv) -> None:
    started = time.monotonic()
    python, cli, pip, env = fresh_venv

    project = tmp_path / "push-notification-matrix"
    if HAS_NEW_DRIVER:
        _run([cli, "new-driver", "matrix", "--dir", str(project)], tmp_path, env)
    else:  # until the CLI registers the command
        _run([python, "-m", "push_notification.scaffold", "matrix", "--dir", str(project)], tmp_path, env)
    _run([*pip, "-e", ".[test]"], project, env)
    installed = time.monotonic()

    # The generated tests pass right after `pip install -e ".[test]"` (pytest is in its test extra).
    assert "4 passed" in _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project, env)

    # push-notification drivers lists it...
    listing = {row["name"]: row for row in json.loads(_run([cli, "drivers", "--json"], tmp_path, env))}
    assert listing["matrix"] == {
        "name": "matrix",
        "distribution": "push-notification-matrix",
        "version": "0.1.0",
        "hooks": ["begin_txn", "end_txn", "message_new"],
    }

    # ...and the daemon, with the driver enabled by name in its config, delivers events to it.
    out = tmp_path / "mail.jsonl"
    config = tmp_path / "pn.conf"
    config.write_text(
        f"state_dir = {tmp_path / 'state'}\npush_notification matrix {{\n  driver = matrix\n  matrix_path = {out}\n}}\n"
    )
    with DaemonProcess(config, env=env, inherit_env=False, command=[cli]) as daemon:
        fields = ["-f", "uid=5", "-f", "uid_validity=7", "-f", "subject_utf8=Hi"]
        _run([cli, "send", "MessageNew", "-u", "bob", *fields, "--url", daemon.url], tmp_path, env)
        lines = _wait_for(out)
    assert lines == '{"user": "bob", "mailbox": "INBOX", "uid": 5, "from": null, "subject": "Hi"}\n'
    print(
        f"\nscaffold end-to-end: driver install {installed - started:.1f}s, total {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )


def test_a_driver_installed_editable_while_the_daemon_runs_is_found_on_reload(
    tmp_path: Path, fresh_venv: FreshVenv
) -> None:
    """``pip install -e`` puts the driver's source on sys.path through a ``.pth`` file, which
    Python reads only at start-up: SIGHUP re-reads new ones, so no restart is needed."""
    _, cli, pip, env = fresh_venv
    for name in ("first", "later"):
        _run([cli, "new-driver", name, "--dir", str(tmp_path / name)], tmp_path, env)
    _run([*pip, "-e", "."], tmp_path / "first", env)

    config = tmp_path / "pn.conf"
    block = "push_notification {0} {{\n  driver = {0}\n  {0}_path = {1}/{0}.jsonl\n}}\n"
    config.write_text(f"state_dir = {tmp_path / 'state'}\n" + block.format("first", tmp_path))
    with DaemonProcess(config, env=env, inherit_env=False, command=[cli]) as daemon:
        _run([*pip, "-e", "."], tmp_path / "later", env)
        config.write_text(config.read_text() + block.format("later", tmp_path))
        daemon.signal(signal.SIGHUP)
        assert "added later" in daemon.wait_for_log("reloaded ", timeout=20)
        _run([cli, "send", "MessageNew", "-u", "bob", "-f", "uid=5", "-f", "uid_validity=7", "--url", daemon.url],
             tmp_path, env)  # fmt: skip
        lines = _wait_for(tmp_path / "later.jsonl")
    assert '"user": "bob"' in lines
