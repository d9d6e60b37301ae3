"""Another git revision's code beside this tree's, for before/after figures in one run.

``git archive`` unpacks the revision's ``core/src`` and every ``drivers/*/src`` into a scratch
folder; a child process with those folders first on ``PYTHONPATH`` imports that revision's
``push_notification`` and drivers instead of the installed (editable) ones, while the installed
distributions' entry points still name the drivers.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_paths(rev: str | None, scratch: Path) -> list[Path]:
    """The ``src`` folders of this tree (``rev`` None) or of git revision ``rev``, core first."""
    base = ROOT
    if rev is not None:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "core/src", "drivers"], check=True, capture_output=True
        ).stdout
        base = scratch / rev.replace("/", "_")
        base.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(base, filter="data")
    return [base / "core" / "src", *sorted(p for p in (base / "drivers").glob("*/src") if p.is_dir())]
