"""The Redis queue's keys and commands, beside the queue logic (as sqlite_store.py is).

Keys, all under one prefix (``pn`` by default):

* ``pn:s:<partition>``: a stream of accepted transactions (``t`` = JSON, ``at`` = accepted
  time, ``only`` = one instance, for a requeued dead letter); one consumer group per instance;
* ``pn:r:<instance>``: retry state per pending entry (attempts, next attempt, last error);
* ``pn:d:<instance>``: dead letters per entry id (JSON: body, user, attempts, error, times);
* ``pn:daemons``, ``pn:lease:<instance>:<partition>``: see redis_leases.py;
* ``pn:meta:partitions``: the partition count every daemon must agree on.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from push_notification.errors import PushNotificationError
from push_notification.settings import mask_url

#: ``KEYS`` = stream, dead hash, retry hash; ``ARGV`` = group, entry id, letter JSON. One step,
#: so a dead letter is never both kept and still pending (or neither).
DEAD_SCRIPT = """
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""

try:
    from redis.exceptions import RedisError as RedisError
except ImportError:  # the extra is not installed: redis_client() says so when a queue is made

    class RedisError(Exception):  # type: ignore[no-redef]
        """Stands in for the client's base error."""


#: Stream ids are ``<ms>-<n>``; lanes order entries by one integer.
_SEQ_BASE = 10**7


def encode_id(entry_id: str) -> int:
    ms, _, n = entry_id.partition("-")
    return int(ms) * _SEQ_BASE + int(n or 0)


def decode_id(seq: int) -> str:
    return f"{seq // _SEQ_BASE}-{seq % _SEQ_BASE}"


def partition_of_user(username: str, partitions: int) -> int:
    """The stream a user's transactions go to: all of one user's, so their order holds."""
    return zlib.crc32(username.encode("utf-8", "surrogatepass")) % partitions


MISSING_CLIENT = "queue = redis needs the Redis client: pip install 'push-notification[redis]'"


def sync_redis_client(url: str, **options: Any) -> Any:
    """A synchronous client for ``url``, for callers without an event loop (the METADATA store
    drivers call from their hooks and threads, the ``queue`` commands); one clear line when the
    client library is missing."""
    try:
        import redis
    except ImportError:
        raise PushNotificationError(MISSING_CLIENT) from None
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0, **options)


def redis_client(url: str) -> Any:
    """An asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://``, or
    ``redis+sentinel://host:port[,host:port]/service[/db]``); one clear line when the client
    library is missing. Commands fail fast (no hidden retries): the queue decides what to do."""
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:
        raise PushNotificationError(MISSING_CLIENT) from None
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "retry": Retry(NoBackoff(), 0),
    }
    if url.startswith("redis+sentinel://"):
        return _sentinel_client(url, options)
    try:
        return aioredis.from_url(url, **options)
    except ValueError as exc:
        raise PushNotificationError(f"queue_url {mask_url(url)}: {exc}") from None


def _sentinel_client(url: str, options: dict[str, Any]) -> Any:
    from urllib.parse import unquote, urlsplit

    from redis.asyncio.sentinel import Sentinel

    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise PushNotificationError(
            f"queue_url {mask_url(url)}: name the Sentinel service: redis+sentinel://host:26379/mymaster"
        )
    db = int(path[1]) if len(path) > 1 else 0
    password = unquote(parts.password) if parts.password else None
    make: Any = Sentinel  # untyped in redis-py
    sentinel = make(hosts, sentinel_kwargs={"socket_connect_timeout": 2.0}, password=password, db=db, **options)
    return sentinel.master_for(path[0])


class RedisStore:
    """The queue's Redis commands, batched where the queue batches."""

    def __init__(self, client: Any, prefix: str, partitions: int) -> None:
        self.client = client
        self.prefix = prefix
        self.partitions = partitions
        self._groups: set[str] = set()

    @staticmethod
    def safe_url(url: str) -> str:
        return mask_url(url)

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
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PushNotificationError(
                f"queue_url {mask_url(url)}: cannot use Redis: {text} (is redis-server running and queue_url right?)"
            ) from None
        policy = await self._eviction_policy()
        if policy.startswith("allkeys"):
            raise PushNotificationError(
                f"queue_url {mask_url(url)}: Redis evicts keys when full (maxmemory-policy {policy}), which would"
                " drop accepted transactions; set maxmemory-policy noeviction in redis.conf"
            )
        if stored != self.partitions:
            raise PushNotificationError(
                f"queue_partitions = {self.partitions}, but the queue at {mask_url(url)} was made with"
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

    async def add(self, batch: Sequence[tuple[str, dict[str, str], Any]]) -> list[str]:
        async with self.client.pipeline(transaction=False) as pipe:
            for stream, fields, _ in batch:
                pipe.xadd(stream, fields)
            return [str(entry_id) for entry_id in await pipe.execute()]

    async def read(
        self, group: str, consumer: str, streams: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
        reply = await self.client.xreadgroup(group, consumer, streams, count=count, block=block_ms)
        return [(stream, entries) for stream, entries in reply or []]

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

    async def retry_states(self, instance: str, ids: Sequence[str]) -> dict[str, Any]:
        if not ids:
            return {}
        values = await self.client.hmget(self.retries(instance), list(ids))
        return {entry_id: json.loads(value) for entry_id, value in zip(ids, values, strict=True) if value}

    async def record(self, writes: Sequence[tuple[str, Any]], leases: Any) -> None:
        """Outcomes in one round trip: retry states and dead letters in order, then the acks (one
        ``XACK`` per stream and group), then lease releases, which must follow their acks."""
        acks: dict[tuple[str, str], list[str]] = {}
        cleared: dict[str, list[str]] = {}
        releases = []
        async with self.client.pipeline(transaction=False) as pipe:
            for kind, args in writes:
                if kind == "ack":
                    stream, group, entry_id, had_state = args
                    acks.setdefault((stream, group), []).append(entry_id)
                    if had_state:
                        cleared.setdefault(group, []).append(entry_id)
                elif kind == "retry":
                    instance, entry_id, state = args
                    pipe.hset(self.retries(instance), entry_id, state)
                elif kind == "dead":
                    stream, instance, entry_id, letter = args
                    keys = [stream, self.dead(instance), self.retries(instance)]
                    pipe.eval(DEAD_SCRIPT, len(keys), *keys, instance, entry_id, letter)
                elif kind == "release":
                    releases.append(args)
            for (stream, group), ids in acks.items():
                pipe.xack(stream, group, *ids)
            for group, ids in cleared.items():
                pipe.hdel(self.retries(group), *ids)
            leases.release_in(pipe, releases)
            await pipe.execute()

    async def bury(self, instance: str, letters: Mapping[str, str]) -> None:
        """Dead letters that have no stream entry (any more): field → letter JSON."""
        await self.client.hset(self.dead(instance), mapping=dict(letters))

    async def count(self, instances: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
        """Per instance: its backlog (not yet acknowledged, over all partitions) and dead letters."""
        if not instances:
            return {}, {}
        async with self.client.pipeline(transaction=False) as pipe:
            for partition in range(self.partitions):
                pipe.xinfo_groups(self.stream(partition))
            for name in instances:
                pipe.hlen(self.dead(name))
            results = await pipe.execute(raise_on_error=False)
        backlog = dict.fromkeys(instances, 0)
        for groups in results[: self.partitions]:
            if isinstance(groups, Exception):
                continue
            for group in groups:
                name = group["name"]
                if name in backlog:
                    lag = group.get("lag")
                    backlog[name] += int(group["pending"]) + int(lag or 0)
        dead = {
            name: int(n) for name, n in zip(instances, results[self.partitions :], strict=True) if isinstance(n, int)
        }
        return backlog, dead

    async def trim(self, partitions: Iterable[int]) -> None:
        """Drop entries every group has acknowledged (``XTRIM MINID``)."""
        for partition in partitions:
            stream = self.stream(partition)
            if not await self.client.exists(stream):
                continue
            groups = await self.client.xinfo_groups(stream)
            if not groups:
                continue
            floor: int | None = None
            for group in groups:
                bound = group["last-delivered-id"]
                if int(group["pending"]):
                    summary = await self.client.xpending(stream, group["name"])
                    bound = summary["min"] or bound
                value = encode_id(bound)
                floor = value if floor is None else min(floor, value)
            if floor:
                await self.client.xtrim(stream, minid=decode_id(floor), approximate=True)
