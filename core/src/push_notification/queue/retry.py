"""When to try a failed delivery again, and when to give up.

Dovecot's drivers drop a notification after at most one retry; a durable queue must not,
but it must not hammer a struggling endpoint either. Retryable failures wait an exponential
backoff with jitter (so instances recovering together do not retry in lockstep), never less
than the endpoint's ``Retry-After``, until the per-instance deadline; then the transaction
becomes a dead letter, visible with ``push-notification queue list``.

Which failures are retried (:func:`is_permanent`):

* **dead at once**: :class:`~push_notification.errors.PermanentError` (the driver says
  retrying cannot help), and the exceptions of a programming or data error that will recur
  on every attempt with the same transaction: ``TypeError``, ``ValueError`` (``UnicodeError``
  included), ``LookupError`` (``KeyError``, ``IndexError``), ``AttributeError``,
  ``ArithmeticError``, ``AssertionError``, ``NotImplementedError``. Such a *poison*
  transaction would otherwise hold back its user's later transactions for the whole
  deadline; as a dead letter it can be inspected and retried by hand once the driver is
  fixed (``push-notification queue retry``).
* **retried** until the deadline: :class:`~push_notification.errors.RetryableError`,
  ``OSError`` (connection refused or reset, DNS, TLS), timeouts, and any other exception
  (a driver's own error class that is neither of the above: losing a mail event to a
  transient failure nobody classified is worse than retrying it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from push_notification.errors import PermanentError, RetryableError

#: Default per-instance deadline: retries stop one hour after the transaction was accepted.
DEFAULT_DEADLINE = 3600.0

#: Exceptions that recur on every attempt with the same input: a poison transaction.
NON_RETRYABLE: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    ArithmeticError,
    AssertionError,
    NotImplementedError,
)


def is_permanent(error: BaseException) -> bool:
    """Whether retrying ``error`` cannot help (see the module's rule)."""
    if isinstance(error, (RetryableError, OSError, TimeoutError)):
        return False
    return isinstance(error, (PermanentError, *NON_RETRYABLE))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter", bounded by ``max_delay`` and ``deadline``."""

    #: Delay before the first retry (seconds); doubles with every further failure.
    min_delay: float = 1.0
    #: Longest wait between two attempts (seconds).
    max_delay: float = 300.0
    #: Seconds after acceptance past which a failed delivery is not retried but dead-lettered.
    deadline: float = DEFAULT_DEADLINE

    def backoff(self, attempts: int, rng: random.Random | None = None) -> float:
        """The jittered wait after the ``attempts``-th failure (1 = first failure)."""
        exponent = min(max(attempts - 1, 0), 60)
        ceiling = min(self.max_delay, self.min_delay * 2.0**exponent)
        return ceiling * (0.5 + 0.5 * (rng or random).random())

    def decide(
        self, error: BaseException, *, attempts: int, accepted_at: float, now: float
    ) -> tuple[Literal["retry", "dead"], float]:
        """``("retry", when)`` or ``("dead", now)`` for a delivery that failed with ``error``.

        ``attempts`` counts this failure. Permanent errors and poison transactions
        (:func:`is_permanent`) go straight to the dead letters; the rest are retried until
        the deadline. The last retry is placed at the deadline itself rather than skipped.
        """
        if is_permanent(error):
            return "dead", now
        deadline = accepted_at + self.deadline
        if now >= deadline:
            return "dead", now
        delay = self.backoff(attempts)
        if isinstance(error, RetryableError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return "retry", min(now + delay, deadline)


def describe_error(error: BaseException) -> str:
    """One line for the dead-letter list and the log (no traceback, no secrets beyond the
    driver's own message, which drivers keep free of credentials)."""
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
