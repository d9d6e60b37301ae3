"""Who gets OX notifications: the per-user METADATA entry, and its cache.

A user is active while the server METADATA key ``/private/vendor/vendor.dovecot/http-notify``
is set for them (OX App Suite sets it). Its value is TAB-separated ``key=value`` pairs; only
``user`` (OX's own id for the user, ``11@3``) is used, as in Dovecot.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable

from push_notification import Metadata
from push_notification.errors import PushNotificationError, RetryableError
from push_notification.transaction import OX_METADATA_KEY, Transaction

#: How many users' entries are cached at most (oldest dropped first).
CACHE_MAX_USERS = 65536

_TAB_UNESCAPES = {"0": "\0", "1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def tab_unescape(text: str) -> str:
    """Undo Dovecot's tab-escaping (``\\x01t`` = TAB, ``\\x011`` = ``\\x01``...)."""
    if "\x01" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\x01" and i + 1 < len(text):
            out.append(_TAB_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def metadata_user(value: str) -> str | None:
    """The ``user`` of a METADATA value such as ``user=11@3``, or ``None`` when it has none."""
    user = None
    for field in value.split("\t"):
        key, sep, rest = tab_unescape(field).partition("=")
        if sep and key == "user":
            user = rest  # as Dovecot: the last user= wins
    return user


class Activation:
    """Looks up a user's METADATA entry: forwarded with the transaction when the sender
    did, else from the daemon's store, cached per user for ``ttl`` seconds.

    As in Dovecot only found entries are cached, so activating a user takes effect at once
    while deactivating takes up to ``ttl``.
    """

    def __init__(self, store: Metadata | None, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def value(self, txn: Transaction) -> str | None:
        """The user's METADATA value, or ``None`` when notifications are not active."""
        forwarded = txn.metadata.get(OX_METADATA_KEY)
        if forwarded is not None:
            return forwarded or None
        username = txn.user.username
        now = self.clock()
        cached = self._cache.get(username)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            value = self.store.get(username, OX_METADATA_KEY) if self.store is not None else None
        except (sqlite3.Error, PushNotificationError) as exc:
            # Dovecot skips the transaction ("unable to get attribute"); a queue can retry it.
            raise RetryableError(f"Skipped because unable to get METADATA of user {username}: {exc}") from None
        if not value:
            self._cache.pop(username, None)
            return None
        self._cache[username] = (now + self.ttl, value)
        self._cache.move_to_end(username)
        if len(self._cache) > CACHE_MAX_USERS:
            self._cache.popitem(last=False)
        return value
