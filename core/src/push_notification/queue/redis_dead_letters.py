"""``push-notification queue`` against the Redis queue: the same dead letters from any host.

The twin of sqlite_store.py's dead-letter functions (same :class:`Filter`, same
:class:`DeadLetter` rows), over a synchronous client: the command line needs no event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from push_notification.config.redis_client import safe_url, sync_redis_client, unusable
from push_notification.queue.redis_store import partition_of_user
from push_notification.queue.sqlite_store import DeadLetter, Filter, InstanceStatus


class RedisDeadLetters:
    """Dead letters kept in Redis (``pn:d:<instance>`` hashes, keyed by partition and stream
    entry id: ``redis_store.entry_field``)."""

    def __init__(self, url: str, prefix: str = "pn") -> None:
        self.url = url
        self.prefix = prefix
        self.client: Any = sync_redis_client(url)
        try:
            stored = self.client.get(f"{prefix}:meta:partitions")
        except Exception as exc:  # noqa: BLE001 - one line, whatever the client raises
            raise unusable(url, exc) from None
        self.partitions = int(stored) if stored else 0

    def where(self) -> str:
        """What ``queue`` commands say they read."""
        return f"redis queue: {safe_url(self.url)}"

    def status(self) -> list[InstanceStatus]:
        """Per instance (every consumer group): not yet delivered (a group's lag plus what its
        daemons hold), retrying, the next attempt, dead letters, and the oldest undelivered
        transaction's age (a stream id is the time Redis accepted it)."""
        found: dict[str, dict[str, Any]] = {}
        for partition in range(self.partitions):
            stream = f"{self.prefix}:s:{partition}"
            if not self.client.exists(stream):
                continue
            for group in self.client.xinfo_groups(stream):
                row = found.setdefault(group["name"], {"owed": 0, "oldest": None})
                row["owed"] += int(group["pending"]) + int(group.get("lag") or 0)
                first = None
                if int(group["pending"]):
                    first = self.client.xpending(stream, group["name"])["min"]
                elif group.get("lag"):
                    after = self.client.xrange(stream, f"({group['last-delivered-id']}", "+", count=1)
                    first = after[0][0] if after else None
                if first is not None:
                    accepted = int(str(first).partition("-")[0]) / 1000
                    row["oldest"] = accepted if row["oldest"] is None else min(row["oldest"], accepted)
        rows = []
        for instance in sorted(set(found) | set(self._instances(Filter()))):
            retries = [json.loads(v) for v in self.client.hvals(f"{self.prefix}:r:{instance}")]
            row = found.get(instance, {"owed": 0, "oldest": None})
            retrying = min(len(retries), row["owed"])
            rows.append(
                InstanceStatus(
                    instance=instance,
                    pending=row["owed"] - retrying,
                    retrying=retrying,
                    next_attempt=min((r["next_at"] for r in retries), default=None),
                    dead=int(self.client.hlen(f"{self.prefix}:d:{instance}")),
                    oldest_accepted=row["oldest"],
                )
            )
        return rows

    def close(self) -> None:
        self.client.close()

    def _instances(self, which: Filter) -> list[str]:
        if which.instance is not None:
            return [which.instance]
        marker = f"{self.prefix}:d:"
        return sorted(key[len(marker) :] for key in self.client.scan_iter(match=f"{marker}*"))

    def _matching(self, which: Filter) -> Iterator[tuple[str, str, dict[str, Any]]]:
        now = time.time()
        for instance in self._instances(which):
            for entry_id, text in self.client.hgetall(f"{self.prefix}:d:{instance}").items():
                letter = json.loads(text)
                if which.user is not None and letter["user"] != which.user:
                    continue
                if which.txn_id is not None and letter["id"] != which.txn_id:
                    continue
                if which.older_than is not None and letter["accepted_at"] > now - which.older_than:
                    continue
                if which.newer_than is not None and letter["accepted_at"] < now - which.newer_than:
                    continue
                yield instance, entry_id, letter

    @staticmethod
    def _row(instance: str, letter: dict[str, Any]) -> DeadLetter:
        return DeadLetter(
            instance=instance,
            seq=0,
            txn_id=letter["id"],
            username=letter["user"],
            accepted_at=letter["accepted_at"],
            state="dead",
            attempts=letter["attempts"],
            last_error=letter["error"],
            failed_at=letter["failed_at"],
        )

    def dead_letters(self, which: Filter, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters matching ``which``, oldest first."""
        rows = sorted((self._row(i, letter) for i, _, letter in self._matching(which)), key=lambda r: r.accepted_at)
        yield from rows[:limit] if limit is not None else rows

    def dead_letter_body(self, instance: str, txn_id: str) -> tuple[DeadLetter, str] | None:
        for _, _, letter in self._matching(Filter(instance=instance, txn_id=txn_id)):
            return self._row(instance, letter), str(letter["body"])
        return None

    def requeue(self, which: Filter) -> int:
        """Back into the stream for that instance only, with a fresh deadline (the admin fixed
        something); the daemon that owns the user's partition delivers it within a second."""
        if not self.partitions:
            return 0
        count = 0
        for instance, entry_id, letter in list(self._matching(which)):
            stream = f"{self.prefix}:s:{partition_of_user(letter['user'], self.partitions)}"
            with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, {"t": letter["body"], "at": repr(time.time()), "only": instance})
                pipe.hdel(f"{self.prefix}:d:{instance}", entry_id)
                pipe.execute()
            count += 1
        return count

    def purge(self, which: Filter) -> int:
        """Delete matching dead letters for good."""
        count = 0
        for instance, entry_id, _ in list(self._matching(which)):
            count += int(self.client.hdel(f"{self.prefix}:d:{instance}", entry_id))
        return count
