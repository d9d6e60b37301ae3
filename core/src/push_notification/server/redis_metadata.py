"""Server METADATA in Redis (with ``queue = redis``): every daemon reads and writes the same
keys, so a user moved to another backend keeps OX activation and what Lua scripts wrote.

One hash per user (``pn:md:<user>``), a field per ``<mailbox>\\0<key>``. Synchronous on
purpose: drivers call the :class:`~push_notification.Metadata` protocol from their hooks and
from Lua threads; one small round trip, as the SQLite store costs one file read.
"""

from __future__ import annotations

from typing import Any

from push_notification.config.redis_client import safe_url, sync_redis_client
from push_notification.errors import PushNotificationError
from push_notification.server.metadata import check_key


class RedisMetadataStore:
    """The :class:`~push_notification.Metadata` protocol over Redis."""

    def __init__(self, url: str, prefix: str = "pn") -> None:
        self.url = url
        self.prefix = prefix
        self._client: Any = sync_redis_client(url)

    def _key(self, username: str) -> str:
        return f"{self.prefix}:md:{username}"

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._client, method)(*args)
        except Exception as exc:  # noqa: BLE001 - one line naming the store, whatever the client raised
            raise PushNotificationError(f"metadata in {safe_url(self.url)}: {type(exc).__name__}: {exc}") from None

    def get(self, username: str, key: str, mailbox: str = "") -> str | None:
        value = self._call("hget", self._key(username), f"{mailbox}\0{check_key(key)}")
        return None if value is None else str(value)

    def set(self, username: str, key: str, value: str | None, mailbox: str = "") -> None:
        """Set ``key``; ``None`` unsets it (as Dovecot's Lua ``metadata_set`` does)."""
        if value is None:
            self.unset(username, key, mailbox)
            return
        self._call("hset", self._key(username), f"{mailbox}\0{check_key(key)}", value)

    def unset(self, username: str, key: str, mailbox: str = "") -> None:
        self._call("hdel", self._key(username), f"{mailbox}\0{check_key(key)}")

    def list(self, username: str, prefix: str = "", mailbox: str = "") -> dict[str, str]:
        """Every key under ``prefix`` with its value, sorted."""
        marker = f"{mailbox}\0"
        fields = self._call("hgetall", self._key(username))
        return {
            field[len(marker) :]: str(value)
            for field, value in sorted(fields.items())
            if field.startswith(marker) and field[len(marker) :].startswith(prefix)
        }

    def close(self) -> None:
        self._client.close()
