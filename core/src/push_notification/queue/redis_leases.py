"""Who delivers which partition: daemons' heartbeats, rendezvous assignment, leases in Redis.

Per-user order needs one deliverer per (instance, partition) at a time. Every daemon beats
a heartbeat into one sorted set (scored by Redis' own clock, so hosts need no synchronised
clocks); the live daemons are those whose beat is younger than the visibility timeout. Each
(instance, partition) belongs to the live daemon with the highest rendezvous hash, so a
daemon joining or leaving moves only its share. Ownership is a lease (``SET NX PX``) renewed
on every beat: a SIGKILLed daemon's leases lapse after the visibility timeout, and only then
does the next owner take over its unacknowledged deliveries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

#: An (instance, partition) pair.
Pair = tuple[str, int]

#: ``KEYS[1]`` = the daemons zset; ``ARGV`` = me, ttl ms. Beat, forget the dead, list the live.
HEARTBEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

#: ``KEYS`` = lease keys; ``ARGV`` = me, ttl ms. Take free leases, renew ours; 1 per key we hold.
CLAIM = """
local held = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[i] = 1
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

#: ``KEYS`` = lease keys; ``ARGV[1]`` = me. Give up leases we hold (a clean stop, a handover).
RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""


def rendezvous_owner(instance: str, partition: int, daemons: Sequence[str]) -> str | None:
    """The daemon that should deliver ``partition`` of ``instance`` (highest random weight)."""
    best: tuple[bytes, str] | None = None
    for daemon in daemons:
        weight = hashlib.blake2b(f"{instance}\0{partition}\0{daemon}".encode(), digest_size=8).digest()
        if best is None or weight > best[0]:
            best = (weight, daemon)
    return best[1] if best else None


class Leases:
    """This daemon's view of the assignment, refreshed by :meth:`beat`."""

    def __init__(self, client: Any, prefix: str, me: str, partitions: int, ttl: float) -> None:
        self.client = client
        self.prefix = prefix
        self.me = me
        self.partitions = partitions
        self.ttl_ms = max(int(ttl * 1000), 100)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)
        #: How many daemons were alive at the last beat.
        self.live = 1
        #: The pairs rendezvous gave us, and for which instances and live daemons.
        self._assignment: tuple[tuple[str, ...], tuple[str, ...], frozenset[Pair]] | None = None

    def key(self, instance: str, partition: int) -> str:
        return f"{self.prefix}:lease:{instance}:{partition}"

    async def beat(self, instances: Iterable[str], current: set[Pair]) -> tuple[set[Pair], set[Pair]]:
        """Beat, claim what rendezvous gives us and renew what we hold: ``(held, moving)``.

        ``held``: the (instance, partition) pairs we hold after this beat. ``moving``: those of
        them that rendezvous now gives to another daemon; the caller stops reading them and
        releases each with :meth:`release` once its in-flight deliveries are done (until then they are
        renewed, so a handover never cuts a delivery short).
        """
        members = await self._heartbeat(keys=[f"{self.prefix}:daemons"], args=[self.me, self.ttl_ms])
        daemons = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        self.live = max(len(daemons), 1)
        mine = self._mine(tuple(instances), tuple(daemons))
        wanted = sorted(mine | current)
        if not wanted:
            return set(), set()
        result = await self._claim(keys=[self.key(i, p) for i, p in wanted], args=[self.me, self.ttl_ms])
        held = {pair for pair, ok in zip(wanted, result, strict=True) if int(ok)}
        return held, held - mine

    def _mine(self, instances: tuple[str, ...], daemons: tuple[str, ...]) -> frozenset[Pair]:
        """The pairs rendezvous gives us, worked out again only when the instances or the live
        daemons changed (every beat would hash each pair for each daemon)."""
        if self._assignment is None or self._assignment[:2] != (instances, daemons):
            mine = frozenset(
                (instance, p)
                for instance in instances
                for p in range(self.partitions)
                if rendezvous_owner(instance, p, daemons) == self.me
            )
            self._assignment = (instances, daemons, mine)
        return self._assignment[2]

    async def release(self, pairs: Iterable[Pair]) -> None:
        keys = [self.key(i, p) for i, p in pairs]
        if keys:
            await self._release(keys=keys, args=[self.me])

    def release_in(self, pipe: Any, pairs: Iterable[Pair]) -> None:
        """Queue a release in ``pipe`` (written with other outcomes in one round trip)."""
        keys = [self.key(i, p) for i, p in pairs]
        if keys:
            pipe.eval(RELEASE, len(keys), *keys, self.me)

    async def leave(self) -> None:
        """A clean stop: drop our heartbeat so the others take over at their next beat."""
        await self.client.zrem(f"{self.prefix}:daemons", self.me)
