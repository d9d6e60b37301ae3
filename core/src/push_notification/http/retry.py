"""When an HTTP driver tries a request again, and what a retried transaction sends again.

:class:`RetryPolicy` holds the rules the sender (:mod:`push_notification.http`) applies
after each failed attempt: which statuses are worth another attempt, how long to back off,
and whether to wait in place or leave the wait to the queue. :class:`PartialDeliveries`
remembers which requests of a transaction already got through, so the queue's retry of that
transaction does not notify anyone twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from push_notification.errors import DriverError, PermanentError, RetryableError

if TYPE_CHECKING:
    from push_notification.http.attempt import HttpResponse


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None``
    when absent or unreadable. A date in the past means ``0``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one attempt failed, and whether another one may help."""

    #: One line: ``503 Service Unavailable``, ``connect(host:443) failed: Connection refused``.
    what: str
    retryable: bool
    #: Seconds the server asked us to wait (``Retry-After``).
    retry_after: float | None = None
    status: int | None = None
    #: ``False``: retrying at once cannot help, but later may (a certificate being renewed):
    #: the failure goes straight to the queue.
    in_place: bool = True
    #: The answer, when there was one (for drivers that read an error reason in the body).
    response: HttpResponse | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry rules of one driver instance. The defaults are Dovecot lib-http's rules made
    safe for a daemon that, unlike Dovecot, holds up no mail delivery while it retries: every
    transient failure (refused connection, timeout, 408, 429, 5xx) is retried, not only 408
    and 503-with-Retry-After. Subclass to change a method (an APNs driver reading its JSON
    reason), or replace fields (``dataclasses.replace``)."""

    #: Statuses retried besides every 5xx.
    retry_statuses: frozenset[int] = frozenset({408, 429})
    #: Retried without backoff: a 408 means the server timed the request out (Dovecot's rule).
    at_once_statuses: frozenset[int] = frozenset({408})
    #: A ``Retry-After`` up to this many seconds is waited for in place; a longer one ends the
    #: attempts with ``RetryableError(retry_after=...)``, so the queue, not a busy worker, waits.
    max_wait_in_place: float = 10.0
    #: Backoff without ``Retry-After``: ``backoff_first`` doubled per attempt, at most ``backoff_max``...
    backoff_first: float = 0.1
    backoff_max: float = 2.0
    #: ...of which this fraction is random, so instances that failed together do not retry together.
    jitter: float = 0.5
    #: A refused certificate: ``False`` is permanent (a configuration to fix); ``True`` leaves
    #: it to the queue, for endpoints whose expired certificate will be renewed.
    retry_certificate_errors: bool = False
    #: Words appended to a status in errors: ``{401: "check the login and password in url"}``.
    status_hints: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))

    def retryable_status(self, status: int) -> bool:
        """Whether a non-2xx, non-3xx status is worth another attempt."""
        return status in self.retry_statuses or status >= 500

    def classify(self, response: HttpResponse) -> Failure | None:
        """``None`` for a success (2xx), else why the answer is a failure. Redirects are
        refused, as Dovecot does: a push endpoint that moved is a configuration to fix."""
        status = response.status
        if 200 <= status < 300:
            return None
        what = f"{status} {response.reason}".rstrip()
        if 300 <= status < 400:
            return Failure(f"{what} (Redirect refused)", retryable=False, status=status, response=response)
        hint = self.status_hints.get(status)
        if hint:
            what += f" ({hint})"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Failure(
            what, retryable=self.retryable_status(status), retry_after=retry_after, status=status, response=response
        )

    def transport_failure(self, kind: str, what: str) -> Failure:
        """An attempt without an answer (``TransportError.kind``): a refused certificate, a
        failed TLS handshake or a request that cannot be sent is a matter of configuration (or
        of a template), anything else transient."""
        if kind == "certificate":
            return Failure(what, retryable=self.retry_certificate_errors, in_place=False)
        return Failure(what, retryable=kind not in ("tls", "request"))

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based) when the server named none."""
        full = min(self.backoff_first * 2.0 ** (attempt - 1), self.backoff_max)
        return full * (1.0 - self.jitter * random.random())  # spreading retries, not secrecy

    def next_wait(self, failure: Failure, attempt: int, max_attempts: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to stop and raise."""
        if not failure.retryable or not failure.in_place or attempt >= max_attempts:
            return None
        if failure.retry_after is not None:
            return failure.retry_after if failure.retry_after <= self.max_wait_in_place else None
        if failure.status in self.at_once_statuses:
            return 0.0
        return self.backoff(attempt)


#: One request of a transaction: a key stable across retries (a UID, a webhook-id), a label
#: naming it in the combined error (``"UID 7"``; ``""`` when its error names it already), and
#: the coroutine function that sends it and raises ``DriverError`` on failure.
Part = tuple[Hashable, str, Callable[[], Awaitable[object]]]

#: How many failures a combined error spells out; the rest are counted.
LISTED_FAILURES = 3


class PartialDeliveries:
    """The parts already delivered of transactions that failed part-way, for their retry.

    Bounded to ``limit`` transactions, oldest forgotten first: a forgotten transaction is sent
    whole again, which receivers that de-duplicate (webhook-id) absorb.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._done: dict[str, set[Hashable]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def __contains__(self, txn_id: object) -> bool:
        """Whether ``txn_id`` failed part-way and parts of it are remembered as delivered."""
        return txn_id in self._done

    async def send(
        self, txn_id: str, parts: Sequence[Part], *, ordered: bool, failed: Sequence[DriverError] = ()
    ) -> int:
        """Send the parts of ``txn_id`` not delivered before; return how many were sent now.

        ``ordered``: one after another, and a retryable failure stops the rest, so no later
        part overtakes it; otherwise all at once. ``failed`` are parts that failed before
        sending (a template error), reported with the others. Raises one ``DriverError`` for
        the transaction, retryable if any failure is.
        """
        done = self._done.pop(txn_id, None) if self._done else None
        todo = parts if done is None else [part for part in parts if part[0] not in done]
        done = done if done is not None else set()
        failures: list[tuple[str, DriverError]] = [("", error) for error in failed]
        skipped = 0
        if len(todo) == 1 or ordered:
            for index, (key, label, send) in enumerate(todo):
                try:
                    await send()
                except DriverError as exc:
                    failures.append((label, exc))
                    if ordered and isinstance(exc, RetryableError):
                        skipped = len(todo) - index - 1
                        break
                else:
                    done.add(key)
        elif todo:
            results = await asyncio.gather(*(send() for _, _, send in todo), return_exceptions=True)
            for (key, label, _), result in zip(todo, results, strict=True):
                if isinstance(result, DriverError):
                    failures.append((label, result))
                elif isinstance(result, BaseException):
                    raise result
                else:
                    done.add(key)
        if failures:
            if done:
                self._remember(txn_id, done)
            raise combined_error(failures, len(parts) + len(failed), skipped)
        return len(todo)

    def _remember(self, txn_id: str, done: set[Hashable]) -> None:
        self._done[txn_id] = done
        while len(self._done) > self.limit:
            del self._done[next(iter(self._done))]


def combined_error(failures: Sequence[tuple[str, DriverError]], total: int, skipped: int = 0) -> DriverError:
    """One error for a transaction whose requests failed; retryable if any failure is, with
    the longest ``retry_after`` asked for. A lone request keeps its own error."""
    if total == 1 and len(failures) == 1:
        return failures[0][1]
    listed = "; ".join(f"{label}: {error}" if label else str(error) for label, error in failures[:LISTED_FAILURES])
    more = f"; and {len(failures) - LISTED_FAILURES} more" if len(failures) > LISTED_FAILURES else ""
    not_sent = f", {skipped} more not attempted" if skipped else ""
    message = f"{len(failures)} of {total} notifications failed{not_sent}: {listed}{more}"
    retryable = [error for _, error in failures if isinstance(error, RetryableError)]
    if not retryable:
        return PermanentError(message)
    waits = [error.retry_after for error in retryable if error.retry_after is not None]
    return RetryableError(message, retry_after=max(waits) if waits else None)
