"""A minimal HTTP driver for the durable-delivery tests: POSTs each transaction's id to a URL.

It classifies failures as real drivers must (503/429/5xx retryable with Retry-After, other
4xx permanent, network errors retryable) and sends the transaction id as idempotency key.
Found by the daemon through the ``.dist-info`` next to it (the tests put this directory on
PYTHONPATH), so nothing needs installing.
"""

from __future__ import annotations

import aiohttp
from push_notification import DriverContext, hookimpl
from push_notification.errors import PermanentError, RetryableError
from push_notification.transaction import Transaction


class HttpPost:
    def __init__(self, ctx: DriverContext) -> None:
        self.url = ctx.settings.get_str("url", required=True)
        ctx.settings.check_unknown()
        self.session: aiohttp.ClientSession | None = None

    @hookimpl
    async def driver_init(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    @hookimpl
    async def end_txn(self, txn: Transaction) -> None:
        assert self.session is not None and self.url is not None
        body = {"id": txn.id, "user": txn.user.username}
        try:
            async with self.session.post(self.url, json=body, headers={"Idempotency-Key": txn.id}) as response:
                await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None
        if status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise RetryableError(f"{status}", retry_after=float(retry_after) if retry_after else None)
        raise PermanentError(f"{status}")

    @hookimpl
    async def driver_deinit(self) -> None:
        if self.session is not None:
            await self.session.close()


class NoOp:
    """Accepts every transaction instantly: measures the daemon, not an endpoint."""

    def __init__(self, ctx: DriverContext) -> None:
        ctx.settings.check_unknown()
        self.count = 0

    @hookimpl
    def end_txn(self) -> None:
        self.count += 1


class Poisoned(HttpPost):
    """:class:`HttpPost` with a bug on one kind of data, as a real driver might have: a
    transaction for the mailbox ``Poison`` raises ``TypeError`` on every attempt."""

    @hookimpl
    async def end_txn(self, txn: Transaction) -> None:
        if txn.mailbox == "Poison":
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")
        await super().end_txn(txn)
