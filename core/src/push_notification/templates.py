"""Sandboxed jinja2 templates from the admin's config, shared by drivers that render text
(webhook requests, device push titles).

Templates come from the mail administrator's config but run on every event, so they run in
jinja2's immutable sandbox (no attribute tricks, no mutation). Undefined names are errors
(a typo must not silently send an empty field), and ``None`` renders as an empty string.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from push_notification.events import EVENT_TYPES, Event


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


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def sandbox(finalize: Callable[[Any], Any] | None = None) -> ImmutableSandboxedEnvironment:
    """jinja2's immutable sandbox, strict about undefined names, with a ``json`` filter;
    ``finalize`` replaces the default that renders ``None`` as an empty string (a URL template
    percent-encodes every value)."""
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        finalize=finalize or _finalize,
    )
    env.filters["json"] = _json
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
