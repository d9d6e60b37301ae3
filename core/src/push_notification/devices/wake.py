"""Which transactions wake a device: a phone must not light up for a flag change, for mail
in Junk, or for the copy of a message its owner just sent.

Instance settings (every device driver reads them through :func:`read_wake_filter`):

* ``wake_events`` (``MessageNew``): event names that wake, space or comma separated.
* ``wake_mailboxes`` (``INBOX``): mailbox names or shell patterns (``*`` = all).
* ``wake_skip_self`` (yes): skip mail whose From address is the user's own.
* ``wake_skip_junk`` (yes): skip mailboxes named as junk folders (``junk_mailboxes``:
  ``Junk Spam "Junk E-mail"``) and messages carrying the ``$Junk``/``Junk`` keyword.
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass

from push_notification.events import Event, MessageSaved, event_type
from push_notification.settings import Settings
from push_notification.transaction import Transaction

DEFAULT_JUNK_MAILBOXES = ("Junk", "Spam", "Junk E-mail")
JUNK_KEYWORDS = frozenset({"$junk", "junk"})


def _names(text: str) -> list[str]:
    return [name for name in shlex.split(text.replace(",", " ")) if name]


@dataclass(frozen=True)
class WakeFilter:
    events: frozenset[str]
    mailboxes: tuple[str, ...]
    skip_self: bool = True
    skip_junk: bool = True
    junk_mailboxes: frozenset[str] = frozenset(m.lower() for m in DEFAULT_JUNK_MAILBOXES)

    def _mailbox_wakes(self, mailbox: str) -> bool:
        if self.skip_junk and mailbox.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower() in self.junk_mailboxes:
            return False
        for pattern in self.mailboxes:
            # INBOX is case-insensitive (RFC 3501); other names are as the server spells them.
            if pattern.upper() == "INBOX" and mailbox.upper() == "INBOX":
                return True
            if fnmatch.fnmatchcase(mailbox, pattern):
                return True
        return False

    def _event_wakes(self, event: Event, user: str) -> bool:
        if event.name not in self.events:
            return False
        if isinstance(event, MessageSaved):
            if self.skip_self and event.from_address and event.from_address.lower() == user.lower():
                return False
            if self.skip_junk and JUNK_KEYWORDS.intersection(k.lower() for k in event.keywords):
                return False
        return True

    def wakes(self, txn: Transaction) -> list[Event]:
        """The transaction's events that wake the user's devices (none for a rollback)."""
        if not txn.success or not txn.events or not self._mailbox_wakes(txn.mailbox):
            return []
        user = txn.user.username
        return [event for event in txn.events if self._event_wakes(event, user)]


def read_wake_filter(settings: Settings) -> WakeFilter:
    """The instance's wake filter; a misspelt event name is a one-line ConfigError."""
    events = set()
    for name in _names(settings.get_str("wake_events", "MessageNew") or ""):
        try:
            events.add(event_type(name).name)
        except ValueError as exc:
            raise settings.error("wake_events", str(exc)) from None
    if not events:
        raise settings.error("wake_events", "name at least one event (e.g. MessageNew)")
    mailboxes = tuple(_names(settings.get_str("wake_mailboxes", "INBOX") or ""))
    if not mailboxes:
        raise settings.error("wake_mailboxes", "name at least one mailbox (INBOX, or * for all)")
    junk = settings.get_str("junk_mailboxes", " ".join(shlex.quote(m) for m in DEFAULT_JUNK_MAILBOXES))
    junk = junk or ""
    return WakeFilter(
        events=frozenset(events),
        mailboxes=mailboxes,
        skip_self=settings.get_bool("wake_skip_self", True),
        skip_junk=settings.get_bool("wake_skip_junk", True),
        junk_mailboxes=frozenset(m.lower() for m in _names(junk)),
    )
