"""The ``webhook`` driver: each selected event becomes one templated HTTP request.

Requests are rendered as the events arrive and sent, in order, when the transaction commits
(a rolled-back transaction sends nothing). A request refused for good does not stop the
others; a retryable failure stops the rest, so no later event overtakes it. The failures are
reported together at ``end_txn``, and the queue's retry sends only what did not get through.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from push_notification import DriverContext, hookimpl
from push_notification.errors import DriverError, PermanentError
from push_notification.events import Event
from push_notification.http import PartialDeliveries
from push_notification.transaction import Transaction

from .config import read_config
from .render import RenderError
from .sender import Request, new_sender, safe_url


@dataclass
class _Pending:
    """What one transaction will send: requests, and events that failed to render."""

    index: dict[int, int]
    requests: list[Request] = field(default_factory=list)
    failures: list[DriverError] = field(default_factory=list)


#: Transactions whose partial delivery is remembered, so a retry does not repeat what got through.
PARTLY_DELIVERED_MAX = 10_000


class WebhookDriver:
    """Any event to any HTTP endpoint; see the README for settings and template variables."""

    name = "webhook"

    def __init__(self, ctx: DriverContext) -> None:
        self.instance = ctx.instance
        self.log = ctx.log
        self.config = read_config(ctx.settings)
        self.sender = new_sender(self.config.http)
        self._pending: dict[str, _Pending] = {}
        self._partial = PartialDeliveries(PARTLY_DELIVERED_MAX)
        #: Notifications delivered since start (``push-notification status`` may show it).
        self.delivered = 0

    @hookimpl
    async def driver_init(self) -> None:
        await self.sender.start()

    @hookimpl
    async def driver_deinit(self) -> None:
        self._pending.clear()
        await self.sender.close()

    @hookimpl
    def begin_txn(self, txn: Transaction) -> bool:
        if not self.config.filter.wants_transaction(txn.user.username, txn.mailbox):
            return False
        self._pending[txn.id] = _Pending(index={id(event): i for i, event in enumerate(txn.events)})
        return True

    @hookimpl
    def event(self, txn: Transaction, event: Event) -> None:
        """Render the request of every selected event as it arrives (sent at ``end_txn``)."""
        pending = self._pending.get(txn.id)
        if pending is None or not self.config.filter.wants_event(event.name) or not self.config.preset.wants(event):
            return
        # Stable across retries and restarts, unique per event: receivers de-duplicate on it.
        webhook_id = f"{txn.id}.{pending.index.get(id(event), 0)}"
        try:
            pending.requests.append(self.config.renderer.request(txn, event, webhook_id))
        except RenderError as exc:
            pending.failures.append(PermanentError(f"{event.name} (webhook-id {webhook_id}): template {exc}"))

    @hookimpl
    async def end_txn(self, txn: Transaction, success: bool) -> None:
        """Send the transaction's requests in order. A 4xx (or a template failing on this
        event) fails that request only; a retryable failure (endpoint down, overloaded) stops
        the rest, which keep their order for the queue's retry. On that retry, requests this
        instance already delivered are not sent again."""
        pending = self._pending.pop(txn.id, None)
        if pending is None or not success:
            return
        parts = [(request.id, "", functools.partial(self._send, request)) for request in pending.requests]
        await self._partial.send(txn.id, parts, ordered=True, failed=pending.failures)

    async def _send(self, request: Request) -> None:
        response = await self.sender.send(request.attempt)
        self.log.debug("%s %s: %d %s", request.id, safe_url(request.url), response.status, response.reason)
        self.delivered += 1
