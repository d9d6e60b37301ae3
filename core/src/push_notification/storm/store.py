"""Where held transactions wait: a small contract, and SQLite beside the queue.

A transaction is written here before the queue is told it was delivered, and removed once its
merged delivery ended; whatever a crash leaves here is loaded again at the next start.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from push_notification.sqlite_file import open_sqlite
from push_notification.transaction import Transaction, transaction_from_dict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS held (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance TEXT NOT NULL,
    txn TEXT NOT NULL,
    held_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS held_instance ON held (instance, seq);
"""


class StormStore(ABC):
    """Async, so a networked store (Redis, for windows shared by many daemons) fits too."""

    @abstractmethod
    async def add(self, instance: str, txn: Transaction, now: float) -> int:
        """Keep ``txn`` for ``instance``; its key."""

    @abstractmethod
    async def remove(self, keys: list[int]) -> None: ...

    @abstractmethod
    async def load(self, instance: str) -> list[tuple[int, Transaction, float]]:
        """What ``instance`` holds, oldest first: (key, transaction, held since)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""


class SqliteStormStore(StormStore):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_sqlite(path, _SCHEMA, what="storm-control store", setting="state_dir", synchronous="NORMAL")
        self._lock = threading.Lock()

    async def add(self, instance: str, txn: Transaction, now: float) -> int:
        text = json.dumps(txn.to_dict(), separators=(",", ":"))
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO held (instance, txn, held_at) VALUES (?, ?, ?)", (instance, text, now)
            )
        return int(cursor.lastrowid or 0)

    async def remove(self, keys: list[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM held WHERE seq = ?", [(key,) for key in keys])

    async def load(self, instance: str) -> list[tuple[int, Transaction, float]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, txn, held_at FROM held WHERE instance = ? ORDER BY seq", (instance,)
            ).fetchall()
        return [(int(seq), transaction_from_dict(json.loads(text)), float(at)) for seq, text, at in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
