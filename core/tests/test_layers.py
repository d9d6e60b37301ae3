"""The package's rooms and what each may import (core/README.md states the rules)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "push_notification"
SUBPACKAGES = {"config", "http", "queue", "server", "dovecot", "testing", "scaffold", "devices", "storm"}
#: What each room may import from the others, beyond the top-level core modules and itself.
ALLOWED = {
    "core": {"push_notification.queue.contract"},
    "config": set(),
    "http": set(),
    # The Redis client helper reads queue_url, shared with devices/ and server/ (one copy).
    "queue": {"push_notification.config.redis_client"},
    "server": {"config", "queue", "devices", "storm"},
    "devices": {"config", "http"},
    "storm": {"queue"},
    "dovecot": {"config"},
    "testing": SUBPACKAGES,
    "scaffold": set(),
}
#: Commands live beside what they drive; the queue's reads the config file to find queue_path.
EXCEPTIONS = {"queue/cli.py": {"config"}, "cli.py": SUBPACKAGES}


def imported(path: Path, *, top_only: bool = False) -> set[str]:
    """Modules ``path`` imports (only those at its top, not inside functions, if asked)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def room_of(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first if first in SUBPACKAGES else "core"


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_what_its_room_may(path: Path) -> None:
    room = room_of(path)
    allowed = ALLOWED[room] | EXCEPTIONS.get(str(path.relative_to(PACKAGE)), set())
    crossing = set()
    for name in imported(path):
        parts = name.split(".")
        if parts[0] != "push_notification" or len(parts) < 2 or parts[1] not in SUBPACKAGES or parts[1] == room:
            continue
        if parts[1] not in allowed and name not in allowed:
            crossing.add(name)
    assert not crossing, f"{room} may not import {sorted(crossing)}"


def test_only_the_pytest_plugin_imports_pytest_at_its_top() -> None:
    importing = [p.name for p in modules() if "pytest" in imported(p, top_only=True)]
    assert importing == ["pytest_plugin.py"]


def test_the_daemon_and_the_testing_kit_load_without_pytest() -> None:
    probe = (
        "import sys, push_notification.server.daemon, push_notification.testing, push_notification.testing.daemon;"
        " print('pytest' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_drivers_import_the_public_core_and_testing_only() -> None:
    drivers = PACKAGE.parents[2] / "drivers"
    crossing = {
        f"{path.relative_to(drivers)}: {name}"
        for path in drivers.glob("*/src/*/**/*.py")
        for name in imported(path)
        if name.startswith("push_notification.") and name.split(".")[1] in SUBPACKAGES - {"testing", "devices", "http"}
    }
    assert not crossing


def test_at_most_twelve_modules_sit_at_the_top() -> None:
    """The eight core concepts, the CLI and three small shared pieces; the rest lives in rooms."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
