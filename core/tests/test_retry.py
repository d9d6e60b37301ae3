"""The retry policy: exponential backoff with jitter, Retry-After, the deadline."""

from __future__ import annotations

import random

from push_notification.errors import PermanentError, RetryableError
from push_notification.queue.retry import RetryPolicy, describe_error

POLICY = RetryPolicy(min_delay=1.0, max_delay=60.0, deadline=3600.0)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (50, 60.0)]:
        delays = [POLICY.backoff(attempts, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not lockstep


def test_retryable_failures_are_retried_no_sooner_than_retry_after() -> None:
    outcome, when = POLICY.decide(RetryableError("503", retry_after=30.0), attempts=1, accepted_at=0.0, now=10.0)
    assert outcome == "retry" and when >= 40.0


def test_timeouts_os_errors_and_unclassified_exceptions_are_retried() -> None:
    for error in (TimeoutError(), ConnectionResetError(), RuntimeError("flaky"), RetryableError("503")):
        outcome, when = POLICY.decide(error, attempts=1, accepted_at=0.0, now=10.0)
        assert outcome == "retry" and 10.5 <= when <= 11.0


def test_permanent_failures_are_dead_at_once() -> None:
    assert POLICY.decide(PermanentError("400"), attempts=1, accepted_at=0.0, now=1.0) == ("dead", 1.0)


def test_a_poison_transaction_is_dead_at_once_not_retried_for_the_deadline() -> None:
    """A data or programming error recurs on every attempt with the same transaction."""
    for error in (
        TypeError("'NoneType' object"),
        ValueError("bad"),
        KeyError("uid"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"),
    ):
        assert POLICY.decide(error, attempts=1, accepted_at=0.0, now=1.0) == ("dead", 1.0)


def test_the_last_retry_is_at_the_deadline_and_after_it_the_transaction_is_dead() -> None:
    outcome, when = POLICY.decide(RetryableError("503", retry_after=600.0), attempts=9, accepted_at=0.0, now=3500.0)
    assert (outcome, when) == ("retry", 3600.0)
    assert POLICY.decide(RetryableError("503"), attempts=10, accepted_at=0.0, now=3600.0) == ("dead", 3600.0)


def test_errors_are_described_in_one_line() -> None:
    assert describe_error(TimeoutError()) == "timed out"
    assert (
        describe_error(RetryableError("503 Service Unavailable\nbody...")) == "RetryableError: 503 Service Unavailable"
    )
    assert describe_error(KeyError()) == "KeyError"
