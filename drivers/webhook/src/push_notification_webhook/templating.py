"""The webhook's template variables and its generic payload, over the core's sandbox
(:mod:`push_notification.templates`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from push_notification.events import Event
from push_notification.templates import Template, TemplateError, event_fields, sandbox
from push_notification.transaction import Transaction

__all__ = ["Template", "TemplateError", "context", "make_environment", "payload"]


def _slack_escape(value: Any) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return str(value or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def make_environment() -> ImmutableSandboxedEnvironment:
    env = sandbox()
    env.filters["slack_escape"] = _slack_escape
    return env


def payload(txn: Transaction, event: Event, webhook_id: str, timestamp: datetime) -> dict[str, Any]:
    """The generic JSON body, in the Standard Webhooks payload shape."""
    data: dict[str, Any] = {
        "id": webhook_id,
        "transaction": txn.id,
        "user": txn.user.username,
        "service": txn.user.service,
        "mailbox": txn.mailbox,
        "event": {k: v for k, v in event.to_dict().items() if k not in ("name", "mailbox")},
    }
    if txn.status is not None:
        data["status"] = txn.status.to_dict()
    return {"type": event.name, "timestamp": timestamp.isoformat().replace("+00:00", "Z"), "data": data}


def context(txn: Transaction, event: Event, webhook_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The variables every template sees (documented in the README)."""
    now = now or datetime.now(UTC)
    return {
        "event": event_fields(event),
        "user": txn.user.username,
        "mailbox": txn.mailbox,
        "txn": {
            "id": txn.id,
            "user": txn.user.to_dict(),
            "mailbox": txn.mailbox,
            "metadata": dict(txn.metadata),
            "status": txn.status.to_dict() if txn.status is not None else None,
        },
        "webhook_id": webhook_id,
        "timestamp": int(now.timestamp()),
        "payload": payload(txn, event, webhook_id, now),
    }
