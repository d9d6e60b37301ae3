"""The webhook's template variables and its generic payload, over the core's sandbox
(:mod:`push_notification.templates`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2.sandbox import ImmutableSandboxedEnvironment
from push_notification.events import Event
from push_notification.templates import Template, TemplateError, event_fields, sandbox
from push_notification.transaction import Transaction

__all__ = ["Template", "TemplateError", "context", "make_environment", "payload"]


def _slack_escape(value: Any) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return str(value or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Escaped(str):
    """Text already percent-encoded (by ``urlencode``): a URL template outputs it as it is."""

    __slots__ = ()


def _url_part(value: Any) -> Any:
    """What ``{{ ... }}`` puts into a URL: percent-encoded, '/', '?', '#', '&' included, so a
    value (a user name such as ``../../admin?x=1``) stays one path segment or query value."""
    if value is None:
        return ""
    return value if isinstance(value, _Escaped) else quote(str(value), safe="")


def _urlencode(value: Any) -> _Escaped:
    """jinja's ``urlencode`` for URL templates: '/' is encoded too; a mapping or a list of
    pairs becomes a query string."""
    if isinstance(value, Mapping):
        pairs: Iterable[Any] = value.items()
    elif isinstance(value, (str, int, float)) or not isinstance(value, Iterable):
        return _Escaped(quote(str(value), safe=""))
    else:
        pairs = value
    return _Escaped("&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in pairs))


def make_environment(*, url: bool = False) -> ImmutableSandboxedEnvironment:
    """The template environment; ``url=True`` for the URL template, where every value is
    percent-encoded (see :func:`_url_part`)."""
    env = sandbox(finalize=_url_part if url else None)
    env.filters["slack_escape"] = _slack_escape
    if url:
        env.filters["urlencode"] = _urlencode
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
