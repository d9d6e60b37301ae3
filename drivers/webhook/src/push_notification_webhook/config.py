"""Reading an instance's settings: every mistake is a start-up error naming the setting.

Templates are compiled here (syntax errors carry their line) and then rendered once against
a sample event of every event type the instance sends, so a typo in a variable name, a
sandbox violation or a URL without a scheme stops the daemon at start-up instead of
failing every delivery.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from push_notification.errors import EventError
from push_notification.events import EVENT_TYPES, Event, event_from_dict
from push_notification.http import HttpClientSettings, read_http_client_settings
from push_notification.settings import Settings
from push_notification.transaction import MailboxStatus, Transaction, User

from .filters import EventFilter, Globs, event_names
from .presets import PRESETS, Preset
from .render import Renderer, RenderError, Templates
from .signing import SecretError, Signer
from .templating import Template, TemplateError, make_environment


@dataclass(frozen=True)
class WebhookConfig:
    preset: Preset
    renderer: Renderer
    filter: EventFilter
    http: HttpClientSettings


def read_config(settings: Settings) -> WebhookConfig:
    preset_name = (settings.get_str("preset", "json") or "json").strip().lower()
    preset = PRESETS.get(preset_name)
    if preset is None:
        raise settings.error("preset", f"unknown preset {preset_name!r} (use one of: {', '.join(PRESETS)})")
    event_filter = _read_filter(settings)
    templates = _read_templates(settings, preset)
    signer = _read_signer(settings)
    http = _read_http(settings)
    settings.check_unknown()
    renderer = Renderer(templates, signer)
    _check_with_samples(settings, renderer, event_filter)
    return WebhookConfig(preset=preset, renderer=renderer, filter=event_filter, http=http)


def _words(settings: Settings, key: str) -> list[str]:
    return (settings.get_str(key, "") or "").split()


def _read_filter(settings: Settings) -> EventFilter:
    words = _words(settings, "events")
    try:
        events = event_names(words) if words else frozenset(EVENT_TYPES)
    except EventError as exc:
        raise settings.error("events", str(exc)) from None
    return EventFilter(
        events=events,
        mailboxes=Globs(_words(settings, "mailboxes"), inbox_insensitive=True),
        users=Globs(_words(settings, "users")),
    )


def _compile(settings: Settings, key: str, source: str, origin: str = "") -> Template:
    try:
        return Template(_URL_ENV if key == "url" else _ENV, source)
    except TemplateError as exc:
        raise settings.error(key, f"template error{origin} at line {exc.line}: {exc}") from None


_ENV = make_environment()
_URL_ENV = make_environment(url=True)


def _read_templates(settings: Settings, preset: Preset) -> Templates:
    url = settings.get_str("url", required=True) or ""
    method = settings.get_str("method", preset.method) or preset.method
    body_source = settings.get_str("body")
    body_file = settings.get_str("body_file")
    body_origin = ""
    if body_source is not None and body_file is not None:
        raise settings.error("body_file", "set either body or body_file, not both")
    if body_file is not None:
        try:
            body_source = Path(body_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise settings.error("body_file", f"cannot read {body_file}: {exc}") from None
        body_origin = f" in {body_file}"
    headers = {name: Template(_ENV, value) for name, value in preset.headers.items()}
    section = settings.section("headers")
    if section is not None:
        for name in section:
            for existing in [n for n in headers if n.lower() == name.lower()]:
                del headers[existing]
            headers[name] = _compile(section, name, section.get_str(name) or "")
    params = {}
    for param in preset.params:
        source = settings.get_str(param.name, param.default, required=param.default is None)
        params[param.name] = _compile(settings, param.name, source or "")
    return Templates(
        method=_compile(settings, "method", method),
        url=_compile(settings, "url", url),
        path=preset.path,
        headers=MappingProxyType(headers),
        body=_compile(settings, "body_file" if body_file else "body", body_source or preset.body, body_origin),
        params=MappingProxyType(params),
    )


def _read_signer(settings: Settings) -> Signer | None:
    secrets = _words(settings, "secret")
    if not secrets:
        return None
    try:
        return Signer(secrets)
    except SecretError as exc:
        raise settings.error("secret", str(exc)) from None


def _read_http(settings: Settings) -> HttpClientSettings:
    # The URL is a template, so its scheme is only known per request: always ready for TLS.
    return read_http_client_settings(settings, https=True, default_max_parallel_connections=8)


def _sample_transaction(event: Event) -> Transaction:
    return Transaction(
        id="0123456789abcdef0123456789abcdef",
        user=User(username="user@example.com", service="lmtp", session_id="sample"),
        mailbox=event.mailbox,
        events=(event,),
        status=MailboxStatus(messages=1, recent=1, unseen=1, uidvalidity=1700000000, uidnext=2),
    )


def sample_event(name: str) -> Event:
    """An event of type ``name`` with every field set, for checking templates at start-up."""
    texts = ("from", "to", "subject", "subject_utf8", "from_address", "from_display_name", "to_address")
    data: dict[str, object] = {f: "sample" for f in (*texts, "to_display_name", "snippet", "message_id")}
    data |= {"name": name, "mailbox": "INBOX", "uid": 1, "uid_validity": 1700000000, "date": 1700000000, "tz": 0}
    data |= {"flags": ["\\Seen"], "keywords": ["$Sample"], "flags_old": ["\\Seen"], "keywords_old": ["$Sample"]}
    data["mailbox_old"] = "Old"
    known = {"from" if f.name == "from_" else f.name for f in dataclasses.fields(EVENT_TYPES[name])} | {"name"}
    return event_from_dict({k: v for k, v in data.items() if k in known})


def _check_with_samples(settings: Settings, renderer: Renderer, event_filter: EventFilter) -> None:
    for name in sorted(event_filter.events):
        event = sample_event(name)
        try:
            renderer.request(_sample_transaction(event), event, "sample.0")
        except RenderError as exc:
            where = f" at line {exc.error.line}" if exc.error.line else ""
            message = f"template fails for {name}{where}: {exc.error}"
            section, key = settings, exc.setting
            if key.startswith("headers/"):
                section, key = settings.section("headers") or settings, key.removeprefix("headers/")
            raise section.error(key, message) from None
