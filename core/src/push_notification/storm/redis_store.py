"""Storm-control windows kept in Redis (with ``queue = redis``).

The window of a user in an instance lives on the daemon that delivers the user's partition, so
it sees every transaction of that user whichever daemon accepted it: a 1 s coalescing window
holds across hosts. What it holds is written here, in Redis, each entry tagged with its daemon.
If that daemon dies, the entries it held go back into the queue (for that instance only) once
its heartbeat has lapsed, and reach the partition's new owner, whose window holds them again:
nothing held is lost with a host.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from push_notification.storm.store import StormStore
from push_notification.transaction import Transaction, transaction_from_dict

log = logging.getLogger("push_notification.storm")

#: KEYS: held hash, daemons zset, stream of each partition (by ARGV). ARGV: prefix, partitions,
#: instance. Entries whose daemon's heartbeat lapsed go back into the queue for ``instance``.
_ADOPT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local moved = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local entry = cjson.decode(all[i + 1])
  local alive = redis.call('ZSCORE', KEYS[2], entry.daemon)
  if not alive or tonumber(alive) < ms then
    local stream = ARGV[1] .. ':s:' .. entry.partition
    redis.call('XADD', stream, '*', 't', entry.txn, 'at', tostring(entry.at), 'only', ARGV[3])
    redis.call('HDEL', KEYS[1], all[i])
    moved = moved + 1
  end
end
return moved
"""

#: How often orphaned windows are looked for.
ADOPT_INTERVAL = 2.0


class RedisStormStore(StormStore):
    """The storm store over the queue's Redis (see the module docstring)."""

    def __init__(self, client: Any, prefix: str, me: str, partition_of: Callable[[str], int]) -> None:
        self.client = client
        self.prefix = prefix
        self.me = me
        self._partition_of = partition_of
        self._instances: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def _key(self, instance: str) -> str:
        return f"{self.prefix}:storm:{instance}"

    async def add(self, instance: str, txn: Transaction, now: float) -> int:
        key = int(await self.client.incr(f"{self.prefix}:storm:seq"))
        entry = {
            "txn": txn.json,
            "at": now,
            "daemon": self.me,
            "partition": self._partition_of(txn.user.username),
        }
        await self.client.hset(self._key(instance), str(key), json.dumps(entry))
        return key

    async def remove(self, keys: list[int]) -> None:
        if not keys:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for instance in self._instances:
                pipe.hdel(self._key(instance), *map(str, keys))
            await pipe.execute()

    async def load(self, instance: str) -> list[tuple[int, Transaction, float]]:
        """What this daemon held for ``instance``: nothing at a start (a new daemon id); a dead
        daemon's windows come back through the queue instead."""
        self._instances.add(instance)
        if self._task is None:
            self._task = asyncio.create_task(self._adopt_orphans(), name="pn-storm-adopt")
        held = await self.client.hgetall(self._key(instance))
        mine = []
        for key, text in held.items():
            entry = json.loads(text)
            if entry["daemon"] == self.me:
                mine.append((int(key), transaction_from_dict(json.loads(entry["txn"])), float(entry["at"])))
        return sorted(mine, key=lambda item: item[0])

    async def _adopt_orphans(self) -> None:
        while True:
            for instance in sorted(self._instances):
                try:
                    moved = await self.client.eval(
                        _ADOPT, 2, self._key(instance), f"{self.prefix}:daemons", self.prefix, 0, instance
                    )
                except Exception as exc:  # noqa: BLE001 - Redis away: the queue says so; try again
                    log.debug("storm: cannot look for orphaned windows: %s", exc)
                    continue
                if moved:
                    log.info(
                        "storm: %d held transaction(s) of a stopped daemon back in the queue for %s", moved, instance
                    )
            await asyncio.sleep(ADOPT_INTERVAL)

    def close(self) -> None:
        """Stop looking for orphans (the client is the queue's, closed with it)."""
        if self._task is not None:
            self._task.cancel()
