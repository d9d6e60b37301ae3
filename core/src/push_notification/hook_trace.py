"""``PUSH_NOTIFICATION_TRACE=1``: one log line per hook call, for seeing what a driver is given.

Each line names the instance, the hook, a short form of its arguments, what it returned (or
raised) and how long it took, async hooks included (datasette's ``DATASETTE_TRACE_PLUGINS``)::

    trace ox1 message_new(txn=<txn 3e8c… alice INBOX>, event=<MessageNew uid=7>) -> None in 0.041 ms

Whether to trace is decided once, when an instance is created: the dispatcher then calls the
wrapped functions of its hook table, so tracing costs nothing when it is off. Lines go to the
``push_notification.trace`` logger at INFO, which is opened to INFO for the purpose.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from inspect import isawaitable
from typing import Any

from push_notification.events import Event
from push_notification.transaction import Message, Transaction

ENV = "PUSH_NOTIFICATION_TRACE"
_OFF = ("", "0", "no", "false", "off")
#: How much of an argument a line shows at most.
MAX_ARG = 60

log = logging.getLogger("push_notification.trace")


def tracing_wanted() -> bool:
    """True when ``PUSH_NOTIFICATION_TRACE`` is set to anything but 0/no/false/off."""
    return os.environ.get(ENV, "").strip().lower() not in _OFF


def short(value: object) -> str:
    """A few words for an argument: which transaction, which event; never a message body."""
    if isinstance(value, Transaction):
        return f"<txn {value.id} {value.user.username} {value.mailbox}>"
    if isinstance(value, Event):
        uid = getattr(value, "uid", None)
        return f"<{value.name} uid={uid}>" if uid is not None else f"<{value.name} {value.mailbox}>"
    if isinstance(value, Message):
        return f"<message uid={value.uid} events={len(value.events)}>"
    text = repr(value)
    return text if len(text) <= MAX_ARG else text[: MAX_ARG - 1] + "…"


def traced(instance: str, hook: str, argnames: tuple[str, ...], function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` logging each call of ``hook``; awaitables are timed until they finish."""
    log.setLevel(logging.INFO)

    def line(args: tuple[Any, ...], outcome: str, started: float) -> None:
        shown = ", ".join(f"{name}={short(arg)}" for name, arg in zip(argnames, args, strict=False))
        took = (time.perf_counter() - started) * 1000
        log.info("trace %s %s(%s) %s in %.3f ms", instance, hook, shown, outcome, took)

    async def finish(args: tuple[Any, ...], awaitable: Awaitable[Any], started: float) -> Any:
        try:
            result = await awaitable
        except BaseException as exc:
            line(args, f"raised {type(exc).__name__}", started)
            raise
        line(args, f"-> {short(result)}", started)
        return result

    def call(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            result = function(*args)
        except BaseException as exc:
            line(args, f"raised {type(exc).__name__}", started)
            raise
        if result is not None and isawaitable(result):
            return finish(args, result, started)
        line(args, f"-> {short(result)}", started)
        return result

    return call
