"""Which events an instance sends: by event name, mailbox and user.

Patterns are shell-style globs (``*`` matches anything, the hierarchy separator included;
``?`` one character), matched case-sensitively except ``INBOX``, which IMAP treats as
case-insensitive (RFC 3501 5.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import translate

from push_notification.events import EVENT_TYPES, event_type

_INBOX = re.compile(r"^inbox(?=$|[/.])", re.IGNORECASE)


def _inbox_upper(name: str) -> str:
    return _INBOX.sub("INBOX", name)


class Globs:
    """A list of glob patterns; an empty list matches everything."""

    def __init__(self, patterns: Iterable[str] = (), *, inbox_insensitive: bool = False) -> None:
        self.patterns = tuple(patterns)
        self._norm = _inbox_upper if inbox_insensitive else str
        joined = "|".join(translate(self._norm(p)) for p in self.patterns)
        self._regex = re.compile(joined) if joined else None

    def matches(self, name: str) -> bool:
        return self._regex is None or self._regex.match(self._norm(name)) is not None


def event_names(words: Iterable[str]) -> frozenset[str]:
    """Canonical event names from a list (case-insensitive, as Dovecot); raises EventError."""
    return frozenset(event_type(word).name for word in words)


@dataclass(frozen=True)
class EventFilter:
    """``events``, ``mailboxes`` and ``users`` of one instance."""

    events: frozenset[str] = frozenset(EVENT_TYPES)
    mailboxes: Globs = field(default_factory=Globs)
    users: Globs = field(default_factory=Globs)

    def wants_transaction(self, username: str, mailbox: str) -> bool:
        return self.users.matches(username) and self.mailboxes.matches(mailbox)

    def wants_event(self, name: str) -> bool:
        return name in self.events
