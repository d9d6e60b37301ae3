"""The one way to reach the Redis that ``queue_url`` names, for every room that uses it.

The queue, the METADATA store, the device registry and the ``queue`` commands all connect to
the same URL; here is the URL's reading (``redis://``, ``rediss://``, ``unix://``,
``redis+sentinel://``), the masking of its password, the client options and the one line
said when Redis cannot be used. It lives in config/ because it reads a setting and every
room that needs it may import config/.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from push_notification.errors import PushNotificationError
from push_notification.settings import mask_url

MISSING_CLIENT = "queue = redis needs the Redis client: pip install 'push-notification[redis]'"

try:
    from redis.exceptions import RedisError as RedisError
except ImportError:  # the extra is not installed: the client functions say so when called

    class RedisError(Exception):  # type: ignore[no-redef]
        """Stands in for the client's base error."""


def safe_url(url: str) -> str:
    """``url`` with its password (and anything secret-looking) masked, for logs and errors."""
    return mask_url(url)


def unusable(url: str, exc: BaseException) -> PushNotificationError:
    """The one line for a Redis that cannot be used (refused, unknown host, bad password)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return PushNotificationError(
        f"queue_url {mask_url(url)}: cannot use Redis: {text} (is redis-server running and queue_url right?)"
    )


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return {"decode_responses": True, "socket_connect_timeout": 2.0, "socket_timeout": 5.0, **options}


class _HiredisPacking:
    """Packs commands with hiredis' C packer: the asyncio client packs in Python, which costs
    more than anything else the queue does per transaction (the synchronous client already
    packs with hiredis)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [_pack(args)]

    def pack_commands(self, commands: Any) -> list[bytes]:
        return [b"".join(_pack(tuple(command)) for command in commands)]


def _pack(args: tuple[Any, ...]) -> bytes:
    import hiredis

    first = args[0]
    if isinstance(first, str) and " " in first:  # "XINFO GROUPS": words go separately
        args = (*first.split(), *args[1:])
    packed: bytes = hiredis.pack_command(args)
    return packed


def _pack_with_hiredis(client: Any) -> Any:
    """Give ``client``'s connections the C packer where hiredis is installed (the extra's)."""
    try:
        import hiredis

        hiredis.pack_command(("PING",))
    except (ImportError, AttributeError):
        return client
    pool = client.connection_pool
    base = pool.connection_class
    pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client


def redis_client(url: str, **options: Any) -> Any:
    """An asyncio client for ``url``; commands fail fast (no hidden retries): the caller
    decides what a failure means (a 503, a retry at the next beat)."""
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.asyncio.sentinel import Sentinel
        from redis.backoff import NoBackoff
    except ImportError:
        raise PushNotificationError(MISSING_CLIENT) from None
    settings = _options({"retry": Retry(NoBackoff(), 0), **options})
    if url.startswith("redis+sentinel://"):
        return _pack_with_hiredis(_sentinel_master(Sentinel, url, settings))
    try:
        return _pack_with_hiredis(aioredis.from_url(url, **settings))
    except ValueError as exc:
        raise PushNotificationError(f"queue_url {mask_url(url)}: {exc}") from None


def sync_redis_client(url: str, **options: Any) -> Any:
    """A synchronous client for ``url``, for callers without an event loop (METADATA from
    drivers' hooks and threads, the ``queue`` commands)."""
    try:
        import redis
        from redis.sentinel import Sentinel
    except ImportError:
        raise PushNotificationError(MISSING_CLIENT) from None
    settings = _options(options)
    if url.startswith("redis+sentinel://"):
        return _sentinel_master(Sentinel, url, settings)
    try:
        return redis.Redis.from_url(url, **settings)
    except ValueError as exc:
        raise PushNotificationError(f"queue_url {mask_url(url)}: {exc}") from None


def _sentinel_master(sentinel_class: Any, url: str, options: dict[str, Any]) -> Any:
    """``redis+sentinel://[:PASSWORD@]host:port[,host:port]/service[/db]``: the service's master."""
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        try:
            hosts.append((host or item, int(port or 26379)))
        except ValueError:
            raise PushNotificationError(f"queue_url {mask_url(url)}: {item!r} is not host:port") from None
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise PushNotificationError(
            f"queue_url {mask_url(url)}: name the Sentinel service: redis+sentinel://host:26379/mymaster"
        )
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    password = unquote(parts.password) if parts.password else None
    sentinel_options = {"socket_connect_timeout": 2.0}
    sentinel = sentinel_class(hosts, sentinel_kwargs=sentinel_options, password=password, db=db, **options)
    return sentinel.master_for(path[0])
