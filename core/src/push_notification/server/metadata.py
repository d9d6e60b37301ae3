"""Server METADATA per user, as Dovecot keeps it, for drivers that read it (OX activation,
Lua ``metadata_get``/``metadata_set``).

An embedded SQLite file, so it needs no server and survives restarts; managed with
``push-notification metadata set|get|unset``, mirroring ``doveadm mailbox metadata``.
Transactions forwarded by the Dovecot bridge carry the user's metadata themselves; this store
serves the other senders and Lua scripts that write metadata.
"""

from __future__ import annotations

import threading
from pathlib import Path

from push_notification.errors import PushNotificationError
from push_notification.sqlite_file import open_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata (
    username TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (username, mailbox, key)
)
"""


def check_key(key: str) -> str:
    """METADATA keys live under ``/private/`` or ``/shared/`` (RFC 5464)."""
    if not isinstance(key, str) or not (key.startswith("/private/") or key.startswith("/shared/")):
        raise PushNotificationError(
            f"metadata key {key!r} must start with /private/ or /shared/"
            " (e.g. /private/vendor/vendor.dovecot/http-notify)"
        )
    return key


class MetadataStore:
    """Per-user, per-mailbox METADATA; mailbox ``""`` is server metadata (``-s ""`` in doveadm)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db = open_sqlite(path, _SCHEMA, what="metadata store", setting="metadata_path")
        self._lock = threading.Lock()

    def get(self, username: str, key: str, mailbox: str = "") -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM metadata WHERE username=? AND mailbox=? AND key=?",
                (username, mailbox, check_key(key)),
            ).fetchone()
        return None if row is None else str(row[0])

    def set(self, username: str, key: str, value: str | None, mailbox: str = "") -> None:
        """Set ``key``; ``None`` unsets it (as Dovecot's Lua ``metadata_set`` does)."""
        if value is None:
            self.unset(username, key, mailbox)
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO metadata (username, mailbox, key, value) VALUES (?, ?, ?, ?)",
                (username, mailbox, check_key(key), value),
            )

    def unset(self, username: str, key: str, mailbox: str = "") -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM metadata WHERE username=? AND mailbox=? AND key=?",
                (username, mailbox, check_key(key)),
            )

    def list(self, username: str, prefix: str = "", mailbox: str = "") -> dict[str, str]:
        """Every key under ``prefix`` with its value."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM metadata WHERE username=? AND mailbox=? AND key LIKE ? ESCAPE '\\'"
                " ORDER BY key",
                (username, mailbox, escaped + "%"),
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
