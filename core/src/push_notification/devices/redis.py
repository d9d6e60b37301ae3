"""The device registry in Redis (with ``queue = redis``): every daemon wakes any user's devices,
and a user moved to another backend keeps them.

Keys, under the queue's prefix: ``pn:dev:<id>`` (a hash per device), ``pn:dev:addr:<kind>:<sha>``
(the id of the device at that address: one device per kind and address), ``pn:dev:user:<user>``
(a zset of the user's ids by creation), ``pn:dev:all`` (every id by creation) and
``pn:dev:refreshed`` (every id by last registration, for expiry). Registration and removal run
as one Lua script each, so concurrent daemons never leave a half-written device.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Collection
from types import MappingProxyType
from typing import Any

from push_notification.config.redis_client import redis_client
from push_notification.devices.contract import Device, DeviceFields, DeviceRegistry

#: KEYS: addr key, all, refreshed. ARGV: prefix, new id, user, kind, address, keys, label, now.
#: Returns the id of the device now at that address.
_REGISTER = """
local id = redis.call('GET', KEYS[1])
local key
if id then
  key = ARGV[1] .. ':dev:' .. id
  local old_user = redis.call('HGET', key, 'user')
  if old_user and old_user ~= ARGV[3] then
    redis.call('ZREM', ARGV[1] .. ':dev:user:' .. old_user, id)
  end
  redis.call('HSET', key, 'user', ARGV[3], 'keys', ARGV[6], 'refreshed', ARGV[8], 'failures', 0)
  if ARGV[7] ~= '' then redis.call('HSET', key, 'label', ARGV[7]) end
  local created = redis.call('HGET', key, 'created')
  redis.call('ZADD', ARGV[1] .. ':dev:user:' .. ARGV[3], created, id)
else
  id = ARGV[2]
  key = ARGV[1] .. ':dev:' .. id
  redis.call('HSET', key, 'user', ARGV[3], 'kind', ARGV[4], 'address', ARGV[5], 'keys', ARGV[6],
             'label', ARGV[7], 'created', ARGV[8], 'refreshed', ARGV[8], 'failures', 0)
  redis.call('SET', KEYS[1], id)
  redis.call('ZADD', ARGV[1] .. ':dev:user:' .. ARGV[3], ARGV[8], id)
  redis.call('ZADD', KEYS[2], ARGV[8], id)
end
redis.call('ZADD', KEYS[3], ARGV[8], id)
return id
"""

#: KEYS: all, refreshed. ARGV: prefix, id. Returns 1 if there was such a device.
_REMOVE = """
local key = ARGV[1] .. ':dev:' .. ARGV[2]
local fields = redis.call('HMGET', key, 'user', 'kind', 'address')
if not fields[1] then return 0 end
redis.call('DEL', key)
redis.call('DEL', ARGV[1] .. ':dev:addr:' .. fields[2] .. ':' .. redis.sha1hex(fields[3]))
redis.call('ZREM', ARGV[1] .. ':dev:user:' .. fields[1], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


#: KEYS: the device. ARGV: success (1/0), now. Nothing for a device removed meanwhile.
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'last_success', ARGV[2], 'failures', 0)
else
  redis.call('HINCRBY', KEYS[1], 'failures', 1)
end
return 1
"""


def _device(device_id: str, fields: dict[str, str]) -> Device:
    return Device(
        id=device_id,
        user=fields["user"],
        kind=fields["kind"],
        address=fields["address"],
        keys=MappingProxyType(json.loads(fields.get("keys") or "{}")),
        label=fields.get("label", ""),
        created=float(fields["created"]),
        refreshed=float(fields["refreshed"]),
        last_success=float(fields["last_success"]) if fields.get("last_success") else None,
        failures=int(fields.get("failures") or 0),
    )


class RedisDeviceRegistry(DeviceRegistry):
    """The :class:`DeviceRegistry` contract over the queue's Redis."""

    def __init__(self, url: str, prefix: str = "pn") -> None:
        self.client: Any = redis_client(url)
        self.prefix = prefix

    def _addr_key(self, kind: str, address: str) -> str:
        # SHA-1 as Lua's redis.sha1hex computes it, so the removal script finds the same key.
        return f"{self.prefix}:dev:addr:{kind}:{hashlib.sha1(address.encode()).hexdigest()}"

    async def register(
        self, user: str, kind: str, fields: DeviceFields, *, label: str = "", now: float | None = None
    ) -> Device:
        now = time.time() if now is None else now
        keys = json.dumps(dict(fields.keys), sort_keys=True)
        device_id = await self.client.eval(
            _REGISTER,
            3,
            self._addr_key(kind, fields.address),
            f"{self.prefix}:dev:all",
            f"{self.prefix}:dev:refreshed",
            self.prefix,
            secrets.token_urlsafe(12),
            user,
            kind,
            fields.address,
            keys,
            label,
            repr(now),
        )
        device = await self.get(str(device_id))
        assert device is not None, "just registered"
        return device

    async def get(self, device_id: str) -> Device | None:
        fields = await self.client.hgetall(f"{self.prefix}:dev:{device_id}")
        return _device(device_id, fields) if fields else None

    async def list(self, user: str | None = None, kinds: Collection[str] = ()) -> list[Device]:
        index = f"{self.prefix}:dev:user:{user}" if user is not None else f"{self.prefix}:dev:all"
        ids = await self.client.zrange(index, 0, -1)
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.hgetall(f"{self.prefix}:dev:{device_id}")
            rows = await pipe.execute()
        devices = [_device(i, fields) for i, fields in zip(ids, rows, strict=True) if fields]
        return [d for d in devices if d.kind in kinds] if kinds else devices

    async def remove(self, device_id: str) -> bool:
        removed = await self.client.eval(
            _REMOVE, 2, f"{self.prefix}:dev:all", f"{self.prefix}:dev:refreshed", self.prefix, device_id
        )
        return bool(int(removed))

    async def record(self, device_id: str, *, success: bool, now: float | None = None) -> None:
        when = repr(time.time() if now is None else now)
        await self.client.eval(_RECORD, 1, f"{self.prefix}:dev:{device_id}", "1" if success else "0", when)

    async def expire(self, older_than: float) -> int:
        stale = await self.client.zrangebyscore(f"{self.prefix}:dev:refreshed", "-inf", f"({older_than!r}")
        count = 0
        for device_id in stale:
            count += int(await self.remove(device_id))
        return count

    async def close(self) -> None:
        await self.client.aclose()
