"""The shipped presets: ready-made request templates for common push services.

A preset gives default templates for the method, headers and body, a path appended to the
configured ``url``, and *parameters*: further settings (templates too) that the body or
headers use, rendered in order so a later one may use an earlier one. Any of them can be
overridden per instance. Formats follow each service's public API documentation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from push_notification.events import Event, FlagsClear, FlagsSet


@dataclass(frozen=True)
class Param:
    """A preset parameter: a setting whose value is a template. ``default=None`` = required."""

    name: str
    default: str | None
    help: str
    #: Secrets are never shown in errors or the README's examples.
    secret: bool = False


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    method: str
    body: str
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Appended to the rendered ``url`` (Gotify's ``/message``).
    path: str = ""
    params: tuple[Param, ...] = ()
    #: Whether an event is worth a notification; a chat or phone preset skips the ones that
    #: change nothing (Dovecot fires FlagsClear with no flags on every flag change).
    wants: Callable[[Event], bool] = field(default=lambda event: True)


def changes_something(event: Event) -> bool:
    """False for a FlagsSet/FlagsClear that names no flag and no keyword."""
    if isinstance(event, (FlagsSet, FlagsClear)):
        return bool(event.flags or event.keywords)
    return True


#: A short title for a notification: who sent the new mail, or what happened where.
TITLE = (
    '{% if event.name == "MessageNew" %}New mail from {{ event.from_display_name or event.from_address'
    ' or event.from or "unknown sender" }}'
    '{% elif event.name == "MessageAppend" %}Mail saved in {{ mailbox }}'
    "{% else %}{{ event.name }} in {{ mailbox }}{% endif %}"
)
#: The notification's text: the subject for a saved message, a one-line account otherwise.
MESSAGE = (
    '{% if event.name in ("MessageNew", "MessageAppend") %}'
    '{{ event.subject_utf8 or event.subject or "(no subject)" }}'
    '{% elif event.name == "MailboxRename" %}{{ user }}: {{ event.mailbox_old }} renamed to {{ mailbox }}'
    '{% elif event.name in ("FlagsSet", "FlagsClear") %}{{ user }}:'
    ' {{ ((event.flags | list) + (event.keywords | list)) | join(" ") }}'
    ' {{ "set on" if event.name == "FlagsSet" else "cleared from" }} {{ mailbox }} UID {{ event.uid }}'
    "{% elif event.uid is defined %}{{ user }}: {{ event.name }}, {{ mailbox }} UID {{ event.uid }}"
    "{% else %}{{ user }}: {{ event.name }}, {{ mailbox }}{% endif %}"
)

_JSON = {"Content-Type": "application/json; charset=utf-8"}

GENERIC_JSON = Preset(
    name="json",
    description="the event as JSON in the Standard Webhooks payload shape ({type, timestamp, data})",
    method="POST",
    headers=MappingProxyType(_JSON),
    body="{{ payload | json }}",
)

# https://docs.ntfy.sh/publish/#publish-as-json: POST to the server root, topic in the body.
NTFY = Preset(
    name="ntfy",
    wants=changes_something,
    description="ntfy (url = the server, e.g. https://ntfy.sh; JSON publishing)",
    method="POST",
    headers=MappingProxyType(_JSON),
    body=(
        '{{ {"topic": topic, "title": title, "message": message, "priority": priority | int,'
        ' "tags": tags.split()} | json }}'
    ),
    params=(
        Param("topic", None, "the ntfy topic; may use the event, e.g. mail-{{ user | replace('@', '-') }}"),
        Param("title", TITLE, "notification title"),
        Param("message", MESSAGE, "notification text"),
        Param("priority", "3", "1 (min) to 5 (max)"),
        Param("tags", "email", "space-separated ntfy tags (emoji short codes)"),
    ),
)

# https://gotify.net/api-docs: POST /message with the application token in X-Gotify-Key.
GOTIFY = Preset(
    name="gotify",
    wants=changes_something,
    description="Gotify (url = the server, e.g. https://gotify.example.com; token = an application token)",
    method="POST",
    headers=MappingProxyType({**_JSON, "X-Gotify-Key": "{{ token }}"}),
    path="/message",
    body='{{ {"title": title, "message": message, "priority": priority | int} | json }}',
    params=(
        Param("token", None, "the Gotify application token", secret=True),
        Param("title", TITLE, "notification title"),
        Param("message", MESSAGE, "notification text"),
        Param("priority", "5", "Gotify priority (0-10)"),
    ),
)

# https://api.slack.com/messaging/webhooks: {"text": ...}, mrkdwn with &, <, > escaped.
# Mattermost, Rocket.Chat and Discord (URL ending in /slack) accept the same.
SLACK = Preset(
    name="slack",
    wants=changes_something,
    description="Slack-compatible incoming webhook (url = the webhook URL; also Mattermost, Rocket.Chat)",
    method="POST",
    headers=MappingProxyType(_JSON),
    body='{{ {"text": text} | json }}',
    params=(
        Param("title", TITLE, "first line, in bold"),
        Param("message", MESSAGE, "second line"),
        Param("text", "*{{ title | slack_escape }}*\n{{ message | slack_escape }}", "the whole message text"),
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (GENERIC_JSON, NTFY, GOTIFY, SLACK)}
