"""The table a Lua handler receives for each event, field for field as Dovecot builds it
(``push-notification-driver-lua.c``).

Numbers are floats because Dovecot pushes them with ``lua_pushnumber``: in Lua 5.4
``tostring(event.uid)`` is ``"42.0"``. A field Dovecot leaves nil is absent here too.
"""

from __future__ import annotations

from email.header import decode_header, make_header
from typing import Any

from push_notification.events import (
    Event,
    FlagsClear,
    FlagsSet,
    MailboxRename,
    MessageEvent,
    MessageSaved,
)

#: Lua handler name for each event (``MessageNew`` -> ``dovecot_lua_notify_event_message_new``).
HANDLER_PREFIX = "dovecot_lua_notify_event_"


def handler_name(event_name: str) -> str:
    """Dovecot's ``push_notification_driver_lua_to_fn``: ``_`` + lower case before each capital."""
    return "dovecot_lua_notify_event" + "".join("_" + c.lower() if c.isupper() else c for c in event_name)


def event_table(event: Event) -> dict[str, Any]:
    """The fields of ``event``'s Lua table (lists become Lua arrays)."""
    table: dict[str, Any] = {"name": event.name, "mailbox": event.mailbox}
    if isinstance(event, MessageEvent):
        table["uid"] = float(event.uid)
        table["uid_validity"] = float(event.uid_validity)
    if isinstance(event, MessageSaved):
        # Dovecot: date -1 when unknown; from/to "" when the header is missing; subject is the
        # RFC 2047-decoded subject (nil without a Subject); snippet/message_id nil when absent.
        table["date"] = float(event.date if event.date is not None else -1)
        table["tz"] = float(event.tz or 0)
        table["from"] = event.from_ or ""
        table["to"] = event.to or ""
        subject = event.subject_utf8 if event.subject_utf8 is not None else _decode(event.subject)
        if subject is not None:
            table["subject"] = subject
        if event.snippet is not None:
            table["snippet"] = event.snippet
        table["flags"] = list(event.flags)
        table["keywords"] = list(event.keywords)
        if event.message_id is not None:
            table["message_id"] = event.message_id
        table["from_address"] = event.from_address or ""
        table["from_display_name"] = event.from_display_name or ""
        table["to_address"] = event.to_address or ""
        table["to_display_name"] = event.to_display_name or ""
    elif isinstance(event, FlagsSet):
        table["flags"] = list(event.flags)
        table["keywords"] = list(event.keywords)
    elif isinstance(event, FlagsClear):
        table["flags"] = list(event.flags)
        table["flags_old"] = list(event.flags_old)
        table["keywords"] = list(event.keywords)
        table["keywords_old"] = list(event.keywords_old)
    elif isinstance(event, MailboxRename):
        table["mailbox_old"] = event.mailbox_old
    return table


def _decode(raw: str | None) -> str | None:
    """RFC 2047-decode a raw header when the sender gave no decoded form."""
    if raw is None or "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError):
        return raw
