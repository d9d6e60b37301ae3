"""Dovecot 2.3.19's dlog texts for each event (the ``debug_msg``/``debug_mbox`` of its event files)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from push_notification.events import (
    Event,
    FlagsClear,
    FlagsSet,
    MailboxCreate,
    MailboxDelete,
    MailboxRename,
    MailboxSubscribe,
    MailboxUnsubscribe,
    MessageAppend,
    MessageExpunge,
    MessageNew,
    MessageRead,
    MessageSaved,
    MessageTrash,
)

#: Dovecot prints set/cleared system flags in this order (not the bit order of flag lists).
_FLAG_LINE_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def iso8601(epoch: int, tz_minutes: int) -> str:
    """The message's Date as ISO 8601 in its own time zone.

    Dovecot formats ``gmtime(date)`` with the message's offset appended, i.e. UTC wall-clock
    time labelled with another zone (``10:00:00+02:00`` for 12:00 local). We deliberately
    print the correct local time for that offset instead (same instant as the Date header).
    """
    local = time.gmtime(epoch + tz_minutes * 60)
    sign = "-" if tz_minutes < 0 else "+"
    hours, minutes = divmod(abs(tz_minutes), 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f"{sign}{hours:02d}:{minutes:02d}"


def _saved(event: MessageSaved) -> Iterator[str]:
    name = event.name
    if event.date is not None:
        yield f"{name}: Date [{iso8601(event.date, event.tz or 0)}]"
    if event.from_ is not None:
        yield f"{name}: From [{event.from_}]"
    if event.snippet is not None:
        yield f"{name}: Snippet [{event.snippet}]"
    # Dovecot logs the raw Subject header; senders that only know the decoded subject (Dovecot's
    # Lua API gives no raw one) get that printed instead of nothing.
    subject = event.subject if event.subject is not None else event.subject_utf8
    if subject is not None:
        yield f"{name}: Subject [{subject}]"
    if event.to is not None:
        yield f"{name}: To [{event.to}]"


def _flag_lines(name: str, flags: tuple[str, ...], keywords: tuple[str, ...], verb: str, kw_verb: str) -> Iterator[str]:
    for flag in _FLAG_LINE_ORDER:
        if flag in flags:
            yield f"{name}: {flag[1:]} flag {verb}"
    for keyword in keywords:
        yield f"{name}: Keyword {kw_verb} [{keyword}]"


def _flags_set(event: FlagsSet) -> Iterator[str]:
    return _flag_lines(event.name, event.flags, event.keywords, "set", "set")


def _flags_clear(event: FlagsClear) -> Iterator[str]:
    return _flag_lines(event.name, event.flags, event.keywords, "cleared", "clear")


def _fixed(text: str) -> Callable[[Event], Iterator[str]]:
    return lambda event: iter((f"{event.name}: {text}",))


def _rename(event: MailboxRename) -> Iterator[str]:
    yield f"{event.name}: Mailbox was renamed (old name: {event.mailbox_old})"


_LINES: dict[type[Event], Callable[..., Iterator[str]]] = {
    FlagsClear: _flags_clear,
    FlagsSet: _flags_set,
    MailboxCreate: _fixed("Mailbox was created"),
    MailboxDelete: _fixed("Mailbox was deleted"),
    MailboxRename: _rename,
    MailboxSubscribe: _fixed("Mailbox was subscribed to"),
    # Dovecot says "Mailbox was subscribed to" here too (a copy/paste bug); we say what happened.
    MailboxUnsubscribe: _fixed("Mailbox was unsubscribed from"),
    MessageAppend: _saved,
    MessageExpunge: _fixed("Message was expunged"),
    MessageNew: _saved,
    MessageRead: _fixed("Message was flagged as seen"),
    MessageTrash: _fixed("Message was marked as deleted"),
}


def event_lines(event: Event) -> list[str]:
    """The lines Dovecot's dlog writes for ``event`` (empty FlagsSet/FlagsClear write none)."""
    return list(_LINES[type(event)](event))
