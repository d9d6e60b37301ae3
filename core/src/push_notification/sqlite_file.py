"""One way to open the daemon's small SQLite files (METADATA, devices, storm control).

WAL, autocommit, usable from the loop and from thread-run drivers; a file that cannot be
opened is one line naming it, what it is for and the setting that places it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from push_notification.errors import PushNotificationError


def open_sqlite(
    path: str | Path, schema: str, *, what: str, setting: str, synchronous: str = "FULL"
) -> sqlite3.Connection:
    """``path`` (``:memory:`` too) opened with ``schema`` applied; ``synchronous=NORMAL``
    keeps every commit across a daemon crash and loses at most the last ones to a power cut."""
    name = str(path)
    try:
        if name != ":memory:":
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as exc:
        raise PushNotificationError(
            f"{what} {name}: cannot open: {exc}; check the path and its permissions (setting {setting})"
        ) from None
    return db
