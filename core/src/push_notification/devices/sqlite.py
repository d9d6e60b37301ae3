"""The device registry in an SQLite file beside the queue (``state_dir/devices.sqlite``).

Local reads and writes take microseconds, so the async methods run inline; WAL with
``synchronous=NORMAL`` keeps a registration durable across a daemon crash at little cost.
A user's devices are read once and kept until this registry writes or another process (the
CLI) commits to the file, which SQLite's ``data_version`` tells at the cost of one pragma.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Collection
from pathlib import Path
from types import MappingProxyType
from typing import Any

from push_notification.devices.contract import Device, DeviceFields, DeviceRegistry
from push_notification.sqlite_file import open_sqlite

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
        self._db = open_sqlite(path, _SCHEMA, what="device registry", setting="devices_path", synchronous="NORMAL")
        # The CLI and the daemon's thread-run drivers may share one registry.
        self._lock = threading.Lock()
        #: user → all their devices, valid while ``data_version`` stays the same.
        self._cache: dict[str, list[Device]] = {}
        self._version = self._data_version()

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        """Run a write (under the lock); cached devices are read again afterwards."""
        self._cache.clear()
        return self._db.execute(sql, args).rowcount

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
            self._write(
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
        if user is not None:
            with self._lock:
                version = self._data_version()
                if version != self._version:
                    self._cache.clear()
                    self._version = version
                devices = self._cache.get(user)
                if devices is None:
                    rows = self._db.execute(
                        f"SELECT {_COLUMNS} FROM device WHERE user = ? ORDER BY created, id", (user,)
                    ).fetchall()
                    devices = self._cache[user] = [_device(row) for row in rows]
            return [d for d in devices if d.kind in kinds] if kinds else list(devices)
        where = f" WHERE kind IN ({', '.join('?' * len(kinds))})" if kinds else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM device{where} ORDER BY created, id", tuple(kinds)
            ).fetchall()
        return [_device(row) for row in rows]

    async def remove(self, device_id: str) -> bool:
        with self._lock:
            return self._write("DELETE FROM device WHERE id = ?", (device_id,)) > 0

    async def record(self, device_id: str, *, success: bool, now: float | None = None) -> None:
        with self._lock:
            if success:
                self._write(
                    "UPDATE device SET last_success = ?, failures = 0 WHERE id = ?",
                    (time.time() if now is None else now, device_id),
                )
            else:
                self._write("UPDATE device SET failures = failures + 1 WHERE id = ?", (device_id,))

    async def expire(self, older_than: float) -> int:
        with self._lock:
            return self._write("DELETE FROM device WHERE refreshed < ?", (older_than,))

    async def close(self) -> None:
        with self._lock:
            self._db.close()
