"""Dead letters as ``push-notification queue`` sees them, whichever queue keeps them.

A small interface with one implementation per durable queue: the SQLite file of one daemon,
or Redis shared by many (``redis_dead_letters.py``), so the commands work unchanged on both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Protocol

from push_notification.errors import PushNotificationError
from push_notification.queue.sqlite_store import (
    DeadLetter,
    Filter,
    InstanceStatus,
    dead_letter_body,
    dead_letters,
    open_store,
    purge,
    queue_status,
    requeue,
)


class DeadLetterBook(Protocol):
    """List, show, retry and purge the dead letters of one queue."""

    def where(self) -> str:
        """The queue read, for the commands to say (never with a password)."""

    def status(self) -> list[InstanceStatus]:
        """Per instance: pending, retrying (and the next attempt), dead, the oldest's age."""

    def dead_letters(self, which: Filter, *, limit: int | None = None) -> Iterator[DeadLetter]: ...

    def dead_letter_body(self, instance: str, txn_id: str) -> tuple[DeadLetter, str] | None: ...

    def requeue(self, which: Filter) -> int: ...

    def purge(self, which: Filter) -> int: ...

    def close(self) -> None: ...


class SqliteDeadLetters:
    """The dead letters in one daemon's queue file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection = open_store(path, create=False)

    def where(self) -> str:
        return f"queue file: {self.path}"

    def status(self) -> list[InstanceStatus]:
        return queue_status(self.conn)

    def dead_letters(self, which: Filter, *, limit: int | None = None) -> Iterator[DeadLetter]:
        return dead_letters(self.conn, which, limit=limit)

    def dead_letter_body(self, instance: str, txn_id: str) -> tuple[DeadLetter, str] | None:
        return dead_letter_body(self.conn, instance, txn_id)

    def requeue(self, which: Filter) -> int:
        return requeue(self.conn, which)

    def purge(self, which: Filter) -> int:
        return purge(self.conn, which)

    def close(self) -> None:
        self.conn.close()


def open_dead_letters(queue: str, *, path: str, url: str | None, source: str) -> DeadLetterBook:
    """The book of the queue named by the config's ``queue`` (``source``: the config, for the error)."""
    if queue == "sqlite":
        return SqliteDeadLetters(path)
    if queue == "redis" and url:
        from push_notification.queue.redis_dead_letters import RedisDeadLetters

        return RedisDeadLetters(url)
    raise PushNotificationError(f"{source}: queue = {queue} keeps no dead letters (set queue = sqlite or redis)")
