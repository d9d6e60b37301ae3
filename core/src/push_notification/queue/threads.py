"""The queue's background threads restart after a crash, and say so.

The writer and checkpoint threads hold no state a restart would lose (their work waits in
the committer's list or on disk), so a crash is reported through ``report`` (the daemon's
supervisor logs, counts and marks health degraded) and the body runs again after a backoff
that doubles per crash, until ``stop`` is set. The default report is one log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from push_notification.queue.retry import describe_error

log = logging.getLogger("push_notification.queue")

#: Told ``(thread name, exception)`` from the crashed thread itself.
CrashReport = Callable[[str, BaseException], None]

MIN_BACKOFF = 0.1
MAX_BACKOFF = 30.0


def log_crash(name: str, exc: BaseException) -> None:
    """The report when no supervisor listens: one line, the thread restarts."""
    log.error("%s crashed: %s; restarting it", name, describe_error(exc))


def run_restarting(
    name: str, body: Callable[[], None], report: Callable[[], CrashReport], stop: threading.Event
) -> None:
    """Run ``body`` until it returns or ``stop`` is set, restarting it after each crash.

    ``report`` is looked up at each crash, so a supervisor attached after the thread
    started still hears of it."""
    delay = MIN_BACKOFF
    while True:
        try:
            body()
            return
        except Exception as exc:  # noqa: BLE001 - reported, then restarted
            try:
                report()(name, exc)
            except Exception:  # noqa: BLE001 - a broken report must not end the thread
                log_crash(name, exc)
        if stop.wait(delay):
            return
        delay = min(delay * 2, MAX_BACKOFF)
