"""Turning one event into one HTTP request, from the instance's compiled templates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from push_notification.events import Event
from push_notification.transaction import Transaction

from .sender import Request
from .signing import Signer
from .templating import Template, TemplateError, context

_METHOD = re.compile(r"^[A-Z]+$")


class RenderError(Exception):
    """A template failed on an event; ``setting`` names the template, ``line`` its line."""

    def __init__(self, setting: str, error: TemplateError) -> None:
        super().__init__(f"{setting}: {error.describe()}")
        self.setting = setting
        self.error = error


@dataclass(frozen=True)
class Templates:
    """The compiled templates of one instance, keyed by the setting they came from."""

    method: Template
    url: Template
    #: URL path the preset appends (Gotify's ``/message``).
    path: str
    headers: Mapping[str, Template]
    body: Template
    #: Preset parameters, rendered in order into the context (``title``, ``topic``...).
    params: Mapping[str, Template]


class Renderer:
    def __init__(self, templates: Templates, signer: Signer | None) -> None:
        self.templates = templates
        self.signer = signer

    def _render(self, setting: str, template: Template, variables: Mapping[str, Any]) -> str:
        try:
            return template.render(variables)
        except TemplateError as exc:
            raise RenderError(setting, exc) from None

    def request(self, txn: Transaction, event: Event, webhook_id: str, now: datetime | None = None) -> Request:
        """The request for ``event``; raises :class:`RenderError` naming the failing template."""
        t = self.templates
        variables = context(txn, event, webhook_id, now or datetime.now(UTC))
        for name, template in t.params.items():
            variables[name] = self._render(name, template, variables)
        method = self._render("method", t.method, variables).strip().upper()
        if not _METHOD.match(method):
            raise RenderError("method", TemplateError(f"rendered to {method!r}, not an HTTP method such as POST"))
        url = self._render("url", t.url, variables).strip()
        if t.path:
            url = url.rstrip("/") + t.path
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RenderError("url", TemplateError("did not render to an http:// or https:// URL with a host"))
        if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
            # Percent-encoding cannot keep these literal: HTTP clients resolve them (RFC 3986).
            raise RenderError("url", TemplateError("rendered a '.' or '..' path segment, which would change the path"))
        headers = {}
        for name, template in t.headers.items():
            value = self._render(f"headers/{name}", template, variables).strip()
            if "\n" in value or "\r" in value:
                raise RenderError(f"headers/{name}", TemplateError("rendered to more than one line"))
            if value:  # an empty value leaves the header out, so headers can be conditional
                headers[name] = value
        body = self._render("body", t.body, variables).encode()
        signer = self.signer
        sign = None
        if signer is not None:

            def sign(data: bytes) -> Mapping[str, str]:
                return signer.headers(webhook_id, int(datetime.now(UTC).timestamp()), data)

        return Request(method=method, url=url, headers=headers, body=body, id=webhook_id, sign=sign)
