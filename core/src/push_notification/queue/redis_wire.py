"""One pipelined Redis connection for the queue's hot commands (a put batch, a batch of acks).

The client library spends about four times Redis' round trip in Python on every command
(connection pool, retries, timeouts, response callbacks); with a daemon's thin share of the
traffic each put is its own command, so that cost was most of a transaction's. Here a command
is packed in C (hiredis), written at once (commands in flight share the connection, replies
come back in order) and its reply parsed in C: a tenth of the cost. The connection itself is
made by the client library, so every ``queue_url`` form (TLS, unix socket, Sentinel, a
password, a database number) works the same way. Blocking reads stay on the client: one
would hold up every command behind it here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from push_notification.config.redis_client import RedisError

#: Longest wait for a reply before the connection is taken for dead (as the client's socket timeout).
REPLY_TIMEOUT = 5.0


class WireError(RedisError):
    """The connection broke, a reply did not come in time, or Redis answered with an error."""


class Wire:
    """Commands over one connection of ``client``'s pool, pipelined; reconnects when needed.

    One timer watches the oldest command waiting (replies come in order, so no later one can
    be answered before it) instead of a timeout per command: with a daemon's thin share of
    the traffic there is a command for every few transactions, and a timer each cost more
    than packing and sending the command."""

    def __init__(self, client: Any, *, reply_timeout: float = REPLY_TIMEOUT) -> None:
        self.client = client
        self.reply_timeout = reply_timeout
        self._connection: Any = None
        self._writer: asyncio.StreamWriter | None = None
        #: Commands sent and not answered yet, oldest first, with the time each must be answered by.
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._pack: Any = None
        self._reply_error: Any = None

    async def call(self, *args: Any, timeout: float = 0.0) -> Any:
        """Send one command, return its reply (an error reply raises :class:`WireError`);
        ``timeout``: how long the command itself may block Redis (a blocking read)."""
        writer = self._writer if self._writer is not None else await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + self.reply_timeout + timeout
        self._waiting.append((future, deadline))
        writer.write(self._pack(args))
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._look)
        reply = await future
        if isinstance(reply, self._reply_error):
            raise WireError(str(reply))
        return reply

    def _look(self) -> None:
        """The watchdog: the oldest command waiting past its time breaks the connection (every
        command waiting gets the error); otherwise look again when that one is due."""
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0][1]
        if loop.time() >= deadline:
            self._broken(WireError(f"no reply from Redis within {self.reply_timeout:g}s"))
        else:
            self._watchdog = loop.call_at(deadline, self._look)

    async def script(self, text: str, sha: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA-1, loading it with ``EVAL`` where Redis does not know it
        (a restarted Redis has forgotten its scripts)."""
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except WireError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.call("EVAL", text, len(keys), *keys, *args)

    async def close(self) -> None:
        self._broken(WireError("closed"))

    async def _connect(self) -> asyncio.StreamWriter:
        import hiredis

        async with self._connecting:
            if self._writer is not None:
                return self._writer
            connection = self.client.connection_pool.make_connection()
            await connection.connect()  # TLS, AUTH, SELECT, Sentinel: as the client does them
            reader: asyncio.StreamReader | None = connection._reader
            writer: asyncio.StreamWriter | None = connection._writer
            if reader is None or writer is None:
                raise WireError("the Redis client gave no stream to write to")
            self._pack, self._reply_error = hiredis.pack_command, hiredis.ReplyError
            self._connection, self._writer = connection, writer
            parser = hiredis.Reader(encoding="utf-8", errors="surrogateescape")
            self._reader_task = asyncio.create_task(self._read(reader, parser, self._waiting), name="pn-redis-wire")
            return writer

    async def _read(
        self, reader: asyncio.StreamReader, parser: Any, waiting: deque[tuple[asyncio.Future[Any], float]]
    ) -> None:
        """Hand each reply to the oldest command waiting; a broken connection fails them all."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise WireError("Redis closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = waiting.popleft()[0]
                    if not future.done():
                        future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever broke the connection fails what waits on it
            self._broken(exc if isinstance(exc, WireError) else WireError(f"{type(exc).__name__}: {exc}"))

    def _broken(self, error: WireError) -> None:
        """Forget the connection; every command still waiting gets ``error``; the next connects anew."""
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        self._connection = None
