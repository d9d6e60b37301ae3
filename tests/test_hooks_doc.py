"""The guide's hooks and events reference is generated from the code and checked in CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gen-hooks-doc"
GUIDE = REPO / "docs" / "writing-a-driver.md"


def gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_the_checked_in_guide_is_current() -> None:
    done = gen("--check")
    assert done.returncode == 0, done.stderr


def test_a_stale_guide_fails_the_check_and_regenerating_fixes_it(tmp_path: Path) -> None:
    stale = tmp_path / "guide.md"
    stale.write_text(GUIDE.read_text().replace("A message was delivered by LMTP/LDA", "Something happened"))
    done = gen("--check", "--doc", str(stale))
    assert done.returncode == 1
    assert "is out of date with hookspecs.py/events.py; run scripts/gen-hooks-doc" in done.stderr
    assert gen("--doc", str(stale)).returncode == 0
    assert stale.read_text() == GUIDE.read_text()


def test_every_hook_and_event_is_in_the_guide() -> None:
    from push_notification import hookspecs
    from push_notification.events import EVENT_TYPES

    text = GUIDE.read_text()
    hooks = [name for name, f in vars(hookspecs).items() if hasattr(f, "push_notification_spec")]
    assert len(hooks) == 20
    for name in hooks:
        assert f"#### `{name}(" in text
    for name in EVENT_TYPES:
        assert f"#### {name}\n" in text
