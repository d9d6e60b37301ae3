"""The exceptions users and drivers see.

Every error a user can cause is a ``PushNotificationError`` whose ``str()`` is one
clear line naming the thing and the fix; the CLI prints it without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` that ``word`` most likely misspells, for a "did you mean" hint
    (event names, driver names, config keys: one rule of what counts as close); None if none is."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


class PushNotificationError(Exception):
    """Base of every error the CLI reports as one line."""


class ConfigError(PushNotificationError):
    """A configuration mistake, reported with file, line and the fix."""


class EventError(PushNotificationError, ValueError):
    """An event or transaction that does not match the model (bad JSON, unknown field...)."""


class UnsupportedEventError(EventError):
    """An RFC 5423 event that the notification framework does not provide."""


class DriverError(PushNotificationError):
    """Raised by a driver when a delivery failed.

    Drivers raise :class:`RetryableError` or :class:`PermanentError` so the queue knows
    whether trying again can help.
    """


class RetryableError(DriverError):
    """A delivery failed for a reason that may go away (timeout, 5xx, 429, connection refused).

    ``retry_after`` (seconds), when the endpoint said so, is the earliest sensible retry.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DriverError):
    """A delivery failed in a way that retrying cannot fix (4xx other than 408/429, bad payload)."""
