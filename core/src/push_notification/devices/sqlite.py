"""The device registry in an SQLite file beside the queue (``state_dir/devices.sqlite``).

Local reads and writes take microseconds, so the async methods run inline; WAL with
``synchronous=NORMAL`` keeps a registration durable across a daemon crash at little cost.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Collection
from pathlib import Path
from types import MappingProxyType
from typing import Any

from push_notification.devices.contract import Device, DeviceFields, DeviceRegistry
from push_notification.errors import PushNotificationError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    keys TEXT NOT NULL,
    label TEXT NOT NULL,
    created REAL NOT NULL,
    refreshed REAL NOT NULL,
    last_success REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, address)
);
CREATE INDEX IF NOT EXISTS device_user ON device (user);
"""
_COLUMNS = "id, user, kind, address, keys, label, created, refreshed, last_success, failures"


def _device(row: tuple[Any, ...]) -> Device:
    keys = json.loads(row[4])
    return Device(
        id=row[0],
        user=row[1],
        kind=row[2],
        address=row[3],
        keys=MappingProxyType(keys),
        label=row[5],
        created=row[6],
        refreshed=row[7],
        last_success=row[8],
        failures=row[9],
    )


class SqliteDeviceRegistry(DeviceRegistry):
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise PushNotificationError(
                f"device registry {self.path}: cannot open: {exc}; check the path and its permissions"
                " (setting state_dir)"
            ) from None
        # The CLI and the daemon's thread-run drivers may share one registry.
        self._lock = threading.Lock()

    def _one(self, sql: str, args: tuple[Any, ...]) -> Device | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else _device(row)

    async def register(
        self, user: str, kind: str, fields: DeviceFields, *, label: str = "", now: float | None = None
    ) -> Device:
        now = time.time() if now is None else now
        keys = json.dumps(dict(fields.keys), sort_keys=True)
        with self._lock:
            self._db.execute(
                f"INSERT INTO device ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)"
                " ON CONFLICT (kind, address) DO UPDATE SET user = excluded.user, keys = excluded.keys,"
                " label = CASE WHEN excluded.label = '' THEN device.label ELSE excluded.label END,"
                " refreshed = excluded.refreshed, failures = 0",
                (secrets.token_urlsafe(12), user, kind, fields.address, keys, label, now, now),
            )
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM device WHERE kind = ? AND address = ?", (kind, fields.address)
            ).fetchone()
        return _device(row)

    async def get(self, device_id: str) -> Device | None:
        return self._one(f"SELECT {_COLUMNS} FROM device WHERE id = ?", (device_id,))

    async def list(self, user: str | None = None, kinds: Collection[str] = ()) -> list[Device]:
        where, args = [], []
        if user is not None:
            where.append("user = ?")
            args.append(user)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        sql = f"SELECT {_COLUMNS} FROM device"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created, id", args).fetchall()
        return [_device(row) for row in rows]

    async def remove(self, device_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM device WHERE id = ?", (device_id,)).rowcount > 0

    async def record(self, device_id: str, *, success: bool, now: float | None = None) -> None:
        with self._lock:
            if success:
                self._db.execute(
                    "UPDATE device SET last_success = ?, failures = 0 WHERE id = ?",
                    (time.time() if now is None else now, device_id),
                )
            else:
                self._db.execute("UPDATE device SET failures = failures + 1 WHERE id = ?", (device_id,))

    async def expire(self, older_than: float) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM device WHERE refreshed < ?", (older_than,)).rowcount

    async def close(self) -> None:
        with self._lock:
            self._db.close()
