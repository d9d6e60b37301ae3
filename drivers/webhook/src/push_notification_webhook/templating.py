"""Sandboxed jinja2 templates rendered from an event and its transaction.

Templates come from the mail administrator's config but run on every event, so they run in
jinja2's immutable sandbox (no attribute tricks, no mutation). Undefined names are errors
(a typo must not silently send an empty field), and ``None`` renders as an empty string.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from push_notification.events import EVENT_TYPES, Event
from push_notification.transaction import Transaction


class TemplateError(Exception):
    """A template that does not compile or render; ``line`` is 1-based within the template."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line

    def describe(self) -> str:
        return f"line {self.line}: {self}" if self.line else str(self)


def _json(value: Any) -> str:
    """Compact JSON, UTF-8 kept (jinja's own ``tojson`` escapes for HTML, which we are not)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _slack_escape(value: Any) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return str(value or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finalize(value: Any) -> Any:
    return "" if value is None else value


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
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        finalize=_url_part if url else _finalize,
    )
    env.filters["json"] = _json
    env.filters["slack_escape"] = _slack_escape
    if url:
        env.filters["urlencode"] = _urlencode
    return env


class Template:
    """One compiled template with the name of the setting it came from."""

    def __init__(self, env: jinja2.Environment, source: str) -> None:
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(exc.message or "syntax error", exc.lineno) from None
        self.source = source
        #: Text without any jinja syntax (``POST``, ``application/json``) renders once.
        self._constant = None if any(m in source for m in ("{{", "{%", "{#")) else self._template.render()

    def render(self, context: Mapping[str, Any]) -> str:
        if self._constant is not None:
            return self._constant
        try:
            return self._template.render(context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{type(exc).__name__}: {exc}", _line_of(exc)) from None
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            raise TemplateError(f"{type(exc).__name__}: {exc}", _line_of(exc)) from None


def _line_of(exc: BaseException) -> int | None:
    """The template line of a runtime error, from the traceback jinja rewrites."""
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    tb = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


#: (attribute, key) of every field, per event class; ``from_`` is keyed ``from``.
_FIELD_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    name: tuple((f.name, "from" if f.name == "from_" else f.name) for f in dataclasses.fields(cls))
    for name, cls in EVENT_TYPES.items()
}


def event_fields(event: Event) -> dict[str, Any]:
    """Every field of the event (absent ones as ``None``), keyed as in its JSON form;
    ``from`` is also reachable as ``from_``."""
    data: dict[str, Any] = {"name": event.name}
    for attr, key in _FIELD_NAMES[event.name]:
        value = getattr(event, attr)
        data[key] = list(value) if isinstance(value, tuple) else value
    if "from" in data:
        data["from_"] = data["from"]
    return data


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
