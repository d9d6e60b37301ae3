"""When to try a failed delivery again, and when to give up.

Dovecot's drivers drop a notification after at most one retry; a durable queue must not,
but it must not hammer a struggling endpoint either. Retryable failures wait an exponential
backoff with jitter (so instances recovering together do not retry in lockstep), never less
than the endpoint's ``Retry-After``, until the per-instance deadline; then the transaction
becomes a dead letter, visible with ``push-notification queue list``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from push_notification.errors import PermanentError, RetryableError

#: Default per-instance deadline: retries stop one hour after the transaction was accepted.
DEFAULT_DEADLINE = 3600.0


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

        ``attempts`` counts this failure. Permanent errors go straight to the dead letters;
        retryable ones, timeouts and unexpected exceptions (a driver bug may be fixed by a
        restart, and losing mail events silently is worse than retrying) are retried until
        the deadline. The last retry is placed at the deadline itself rather than skipped.
        """
        if isinstance(error, PermanentError):
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
