"""The Redis queue's keys and commands, beside the queue logic (as sqlite_store.py is).

Keys, all under one prefix (``pn`` by default):

* ``pn:s:<partition>``: a stream of accepted transactions (``t`` = JSON, ``id`` = its id,
  ``at`` = accepted time where it is not the entry id's, ``only`` = one instance, for a
  requeued dead letter); one consumer group per instance;
* ``pn:r:<instance>``: retry state per pending entry (attempts, next attempt, last error);
* ``pn:d:<instance>``: dead letters per entry (JSON: body, user, attempts, error, times);
  both keyed by :func:`entry_field` (partition and entry id: two streams hand out the same
  entry id for puts in the same millisecond);
* ``pn:daemons``, ``pn:lease:<instance>:<partition>``: see redis_leases.py;
* ``pn:backlog``: per ``<instance>:<partition>``, the backlog its owner counted last (so a
  daemon reads the cluster's backlog with one command, and counts only what it owns);
* ``pn:meta:partitions``: the partition count every daemon must agree on.

Hot paths are one command per batch (a script where a pipeline would be many commands: each
command costs the client more than Redis' work on it).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from push_notification.config.redis_client import safe_url, unusable
from push_notification.errors import PushNotificationError
from push_notification.queue.redis_wire import Wire

#: ``KEYS`` = the stream of each transaction; ``ARGV`` = JSON and id of each. Returns the ids.
ADD_SCRIPT = """
local ids = {}
for i, key in ipairs(KEYS) do
  ids[i] = redis.call('XADD', key, '*', 't', ARGV[2 * i - 1], 'id', ARGV[2 * i])
end
return ids
"""

#: Lua's ``unpack`` takes a few thousand values at most: longer lists go in slices.
_SLICES = """
local function sliced(command, key, first, last, group)
  for i = first, last, 1000 do
    local j = math.min(i + 999, last)
    if group then redis.call(command, key, group, unpack(ARGV, i, j))
    else redis.call(command, key, unpack(ARGV, i, j)) end
  end
end
"""

#: ``KEYS`` = streams, then retry hashes; ``ARGV`` = the number of streams, then per stream:
#: group, count, entry ids; then per retry hash: count, entry ids. A batch of acks, one step.
ACK_SCRIPT = (
    _SLICES
    + """
local a = 2
local n = tonumber(ARGV[1])
for k = 1, n do
  local group, count = ARGV[a], tonumber(ARGV[a + 1])
  sliced('XACK', KEYS[k], a + 2, a + 1 + count, group)
  a = a + 2 + count
end
for k = n + 1, #KEYS do
  local count = tonumber(ARGV[a])
  sliced('HDEL', KEYS[k], a + 1, a + count)
  a = a + 1 + count
end
return 1
"""
)

#: ``KEYS`` = the backlog hash, the dead-letter hash of each instance, then the streams this
#: daemon owns; ``ARGV`` = trim (1/0), the number of instances, the instances, then per stream:
#: its partition, how many instances we own there, those instances. Counts the backlog
#: (pending + lag) of what we own into the shared hash, trims acknowledged entries if asked,
#: and returns the whole backlog hash and the dead-letter counts: the maintenance of one pass.
MAINTAIN_SCRIPT = """
local trim = ARGV[1] == '1'
local n = tonumber(ARGV[2])
local a = 3 + n
for k = n + 2, #KEYS do
  local key, partition, owned = KEYS[k], ARGV[a], tonumber(ARGV[a + 1])
  local counts = {}
  local floor_ms, floor_n
  if redis.call('EXISTS', key) == 1 then
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local info = {}
      for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
      local pending = tonumber(info['pending'])
      counts[info['name']] = pending + (tonumber(info['lag']) or 0)
      if trim then
        local bound = info['last-delivered-id']
        if pending > 0 then bound = redis.call('XPENDING', key, info['name'])[2] or bound end
        local ms, seq = string.match(bound, '(%d+)-(%d+)')
        ms, seq = tonumber(ms), tonumber(seq)
        if floor_ms == nil or ms < floor_ms or (ms == floor_ms and seq < floor_n) then
          floor_ms, floor_n = ms, seq
        end
      end
    end
    if floor_ms ~= nil and (floor_ms > 0 or floor_n > 0) then
      redis.call('XTRIM', key, 'MINID', '~', floor_ms .. '-' .. floor_n)
    end
  end
  for i = a + 2, a + 1 + owned do
    redis.call('HSET', KEYS[1], ARGV[i] .. ':' .. partition, counts[ARGV[i]] or 0)
  end
  a = a + 2 + owned
end
local dead = {}
for i = 1, n do dead[i] = redis.call('HLEN', KEYS[1 + i]) end
return {redis.call('HGETALL', KEYS[1]), dead}
"""

_ADD_SHA = hashlib.sha1(ADD_SCRIPT.encode(), usedforsecurity=False).hexdigest()
_ACK_SHA = hashlib.sha1(ACK_SCRIPT.encode(), usedforsecurity=False).hexdigest()

#: ``KEYS`` = stream, dead hash, retry hash; ``ARGV`` = group, entry id, letter JSON, the
#: entry's field. One step, so a dead letter is never both kept and still pending (or neither).
DEAD_SCRIPT = """
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[4])
return 1
"""


def entry_field(stream: str, entry_id: str) -> str:
    """An entry's field in the per-instance retry and dead-letter hashes: its partition and
    id, since every stream numbers its entries by the clock (``<ms>-<n>``) on its own, and
    keyed by id alone two users' dead letters of one millisecond overwrote each other."""
    return f"{stream.rpartition(':')[2]}/{entry_id}"


#: Stream ids are ``<ms>-<n>``; lanes order entries by one integer, ``ms * SEQ_PER_MS + n``.
SEQ_PER_MS = 10**7


def encode_id(entry_id: str) -> int:
    ms, _, n = entry_id.partition("-")
    return int(ms) * SEQ_PER_MS + int(n or 0)


def decode_id(seq: int) -> str:
    return f"{seq // SEQ_PER_MS}-{seq % SEQ_PER_MS}"


def partition_of_user(username: str, partitions: int) -> int:
    """The stream a user's transactions go to: all of one user's, so their order holds."""
    return zlib.crc32(username.encode("utf-8", "surrogatepass")) % partitions


def _pairs(flat: list[str]) -> dict[str, str]:
    """A stream entry's fields from Redis' flat ``[field, value, ...]`` list."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStore:
    """The queue's Redis commands, batched where the queue batches."""

    def __init__(self, client: Any, prefix: str, partitions: int) -> None:
        self.client = client
        self.prefix = prefix
        self.partitions = partitions
        self.backlog_key = f"{prefix}:backlog"
        self._groups: set[str] = set()
        self.wire = Wire(client)
        self._read_wires: dict[str, Wire] = {}
        self._ack = client.register_script(ACK_SCRIPT)
        self._maintain = client.register_script(MAINTAIN_SCRIPT)

    def stream(self, partition: int) -> str:
        return f"{self.prefix}:s:{partition}"

    def partition_of(self, stream: str) -> int:
        return int(stream.rpartition(":")[2])

    def retries(self, instance: str) -> str:
        return f"{self.prefix}:r:{instance}"

    def dead(self, instance: str) -> str:
        return f"{self.prefix}:d:{instance}"

    async def check(self, url: str) -> None:
        """Reach Redis and agree on the partition count, or one line saying what to fix."""
        try:
            await self.client.ping()
            key = f"{self.prefix}:meta:partitions"
            await self.client.set(key, self.partitions, nx=True)
            stored = int(await self.client.get(key))
        except PushNotificationError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the client raises, one line
            raise unusable(url, exc) from None
        policy = await self._eviction_policy()
        if policy.startswith("allkeys"):
            raise PushNotificationError(
                f"queue_url {safe_url(url)}: Redis evicts keys when full (maxmemory-policy {policy}), which would"
                " drop accepted transactions; set maxmemory-policy noeviction in redis.conf"
            )
        if stored != self.partitions:
            raise PushNotificationError(
                f"queue_partitions = {self.partitions}, but the queue at {safe_url(url)} was made with"
                f" {stored}; set queue_partitions = {stored} on every daemon"
            )

    async def _eviction_policy(self) -> str:
        """Redis' ``maxmemory-policy``, or ``""`` where CONFIG is disabled (managed services)."""
        try:
            reply = await self.client.config_get("maxmemory-policy")
        except Exception:  # noqa: BLE001 - CONFIG may be renamed or refused; nothing to check then
            return ""
        return str(reply.get("maxmemory-policy", ""))

    async def ensure_groups(self, instances: Iterable[str]) -> None:
        """One consumer group per instance on every stream, from now on (``$``)."""
        missing = [name for name in instances if name not in self._groups]
        if not missing:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for name in missing:
                for partition in range(self.partitions):
                    pipe.xgroup_create(self.stream(partition), name, id="$", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
        self._groups.update(missing)

    async def add(self, batch: Sequence[tuple[str, str, str]]) -> list[str]:
        """``XADD`` each ``(stream, JSON, id)`` in one command; the entry ids, in order."""
        keys = [stream for stream, _, _ in batch]
        args = [value for _, text, txn_id in batch for value in (text, txn_id)]
        return [str(entry_id) for entry_id in await self.wire.script(ADD_SCRIPT, _ADD_SHA, keys, args)]

    async def read(
        self, group: str, consumer: str, streams: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
        """``XREADGROUP`` over the group's own connection (a blocking read holds its connection)."""
        wire = self._read_wires.get(group)
        if wire is None:
            wire = self._read_wires[group] = Wire(self.client)
        args = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count, "BLOCK", block_ms, "STREAMS"]
        reply = await wire.call(*args, *streams, *streams.values(), timeout=block_ms / 1000)
        by_stream = reply.items() if isinstance(reply, dict) else (reply or [])  # RESP3 map, RESP2 list
        return [
            (stream, [(entry_id, _pairs(fields)) for entry_id, fields in entries if fields is not None])
            for stream, entries in by_stream
        ]

    async def close(self) -> None:
        """Close the connections of our own (the client's pool is closed by the client)."""
        for wire in [self.wire, *self._read_wires.values()]:
            await wire.close()

    async def claim(
        self, stream: str, group: str, consumer: str, start: str, count: int, min_idle_ms: int = 0
    ) -> tuple[str, list[tuple[str, dict[str, str]]], list[str]]:
        """``XAUTOCLAIM`` from ``start``: (next start, entries, ids of entries trimmed away)."""
        reply = await self.client.xautoclaim(
            stream, group, consumer, min_idle_time=min_idle_ms, start_id=start, count=count
        )
        cursor, entries = reply[0], reply[1]
        deleted = list(reply[2]) if len(reply) > 2 else []
        return str(cursor), [(i, f) for i, f in entries if f is not None], deleted

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        await self.client.xack(stream, group, *ids)

    async def retry_states(self, instance: str, stream: str, ids: Sequence[str]) -> dict[str, Any]:
        """The retry states kept for entries ``ids`` of ``stream``, by entry id."""
        if not ids:
            return {}
        values = await self.client.hmget(self.retries(instance), [entry_field(stream, i) for i in ids])
        return {entry_id: json.loads(value) for entry_id, value in zip(ids, values, strict=True) if value}

    async def record(self, writes: Sequence[tuple[str, Any]], leases: Any) -> None:
        """Outcomes in one round trip: retry states and dead letters in order, then the acks (one
        script for every stream and group), then lease releases, which must follow their acks."""
        acks: dict[tuple[str, str], list[str]] = {}
        cleared: dict[str, list[str]] = {}
        others: list[tuple[str, Any]] = []
        releases = []
        for kind, args in writes:
            if kind == "ack":
                stream, group, entry_id, had_state = args
                acks.setdefault((stream, group), []).append(entry_id)
                if had_state:
                    cleared.setdefault(group, []).append(entry_field(stream, entry_id))
            elif kind == "release":
                releases.append(args)
            else:
                others.append((kind, args))
        if acks and not others and not releases:  # the usual batch: one command, no pipeline
            await self.wire.script(ACK_SCRIPT, _ACK_SHA, **self._ack_call(acks, cleared))
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for kind, args in others:
                if kind == "retry":
                    stream, instance, entry_id, state = args
                    pipe.hset(self.retries(instance), entry_field(stream, entry_id), state)
                elif kind == "dead":
                    stream, instance, entry_id, letter = args
                    keys = [stream, self.dead(instance), self.retries(instance)]
                    pipe.eval(DEAD_SCRIPT, len(keys), *keys, instance, entry_id, letter, entry_field(stream, entry_id))
            if acks:
                await self._ack(**self._ack_call(acks, cleared), client=pipe)
            leases.release_in(pipe, releases)
            await pipe.execute()

    async def bury(self, instance: str, letters: Mapping[str, str]) -> None:
        """Dead letters that have no stream entry (any more): field → letter JSON."""
        await self.client.hset(self.dead(instance), mapping=dict(letters))

    def _ack_call(self, acks: dict[tuple[str, str], list[str]], cleared: dict[str, list[str]]) -> dict[str, Any]:
        keys: list[str] = [stream for stream, _ in acks]
        args: list[Any] = [len(acks)]
        for (_, group), ids in acks.items():
            args += [group, len(ids), *ids]
        for group, ids in cleared.items():
            keys.append(self.retries(group))
            args += [len(ids), *ids]
        return {"keys": keys, "args": args}

    async def maintain(
        self, instances: Sequence[str], owned: Iterable[tuple[str, int]], *, trim: bool
    ) -> tuple[dict[str, int], dict[str, int]]:
        """One pass of upkeep in one command: count the backlog of the pairs we own into the shared
        hash (and trim their streams if ``trim``), then read every instance's backlog across the
        cluster and its dead letters. Work per daemon: what it owns, not the whole queue."""
        if not instances:
            return {}, {}
        per_stream: dict[int, list[str]] = {}
        for instance, partition in sorted(owned):
            per_stream.setdefault(partition, []).append(instance)
        keys = [self.backlog_key, *(self.dead(name) for name in instances)]
        args: list[Any] = ["1" if trim else "0", len(instances), *instances]
        for partition, names in per_stream.items():
            keys.append(self.stream(partition))
            args += [partition, len(names), *names]
        fields, dead_counts = await self._maintain(keys=keys, args=args)
        backlog = dict.fromkeys(instances, 0)
        pairs = fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2], strict=True)
        for field, value in pairs:
            name = str(field).rpartition(":")[0]
            if name in backlog:
                backlog[name] += int(value)
        return backlog, {name: int(n) for name, n in zip(instances, dead_counts, strict=True)}
