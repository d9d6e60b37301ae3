"""The hooks a driver may implement: Dovecot's driver API, with one hook per event.

A driver is a class (the entry point's value) whose instances carry ``@hookimpl`` methods.
It implements only the hooks it cares about, and may leave out arguments it does not need.
Any hook may be ``async def`` or return an awaitable: the dispatcher awaits it.

How hooks are called: pluggy checks a driver's hooks (names, argument names) when an instance
is created, but does not call them. Each instance gets its own table of plain functions, hook
name to function, with what varies per instance settled once (arguments a hook leaves out,
:func:`event` folded in after each event hook, tracing); the dispatcher looks a hook up there
and calls it (``DriverInstance.hooks`` in drivers.py, ``deliver`` in dispatch.py). Why:
isolation, since instances of one driver share nothing, so one instance's hooks never run for
another's transaction and a failure stays the instance's own; and speed, since a dict lookup
and a direct call cost a fraction of a pluggy hook call (which gathers the implementations
and builds keyword arguments on every call): the dispatcher's target is 100,000 events/s to
a no-op driver (benchmarks/dispatch.py prints both costs).
``PUSH_NOTIFICATION_TRACE=1`` logs every call (see hook_trace.py).

Per transaction, a driver instance sees, in this order:

1. :func:`begin_txn` — may decline the transaction by returning ``False``;
2. for a mailbox operation :func:`process_mbox` then its event hook; for message changes,
   per message :func:`process_msg` then that message's event hooks, in Dovecot's event order
   (FlagsClear, FlagsSet, ..., MessageNew, MessageRead, MessageTrash); each event hook is
   followed by :func:`event` for the same event;
3. :func:`end_txn` with ``success``.

A rolled-back transaction gives only ``begin_txn`` and ``end_txn(success=False)``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from push_notification.events import (
        Event,
        FlagsClear,
        FlagsSet,
        MailboxCreate,
        MailboxDelete,
        MailboxRename,
        MailboxSubscribe,
        MailboxUnsubscribe,
        MessageAppend,
        MessageExpunge,
        MessageNew,
        MessageRead,
        MessageTrash,
    )
    from push_notification.transaction import Message, Transaction

PROJECT = "push_notification"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# ---------------------------------------------------------------- driver lifecycle


@hookspec
def driver_init() -> Awaitable[None] | None:
    """Start the instance: open connections, load scripts.

    Called once when the daemon starts the instance, before any transaction. Settings were
    already checked when the instance was created; raise ``ConfigError`` here only for what
    can be known just now (a script that does not compile).
    """


@hookspec
def driver_deinit() -> Awaitable[None] | None:
    """Stop the instance: finish or drop in-flight work, close connections.

    Called once at shutdown and when a config reload removes the instance.
    """


@hookspec
def driver_cleanup() -> Awaitable[None] | None:
    """Release process-wide resources, after :func:`driver_deinit` (Dovecot's ``cleanup``)."""


# ---------------------------------------------------------------- transactions


@hookspec
def begin_txn(txn: Transaction) -> bool | Awaitable[bool | None] | None:
    """A transaction starts. Return ``False`` to decline it: the instance then gets no
    further calls for it (no events, no ``end_txn``), as Dovecot's ``begin_txn``."""


@hookspec
def process_mbox(txn: Transaction) -> Awaitable[None] | None:
    """A mailbox operation's events follow (Dovecot's ``process_mbox``)."""


@hookspec
def process_msg(txn: Transaction, message: Message) -> Awaitable[None] | None:
    """The events of ``message`` follow (Dovecot's ``process_msg``); called once per message."""


@hookspec
def end_txn(txn: Transaction, success: bool) -> Awaitable[None] | None:
    """The transaction ends: ``success`` is ``True`` for a commit, ``False`` for a rollback."""


# ---------------------------------------------------------------- mailbox events


@hookspec
def mailbox_create(txn: Transaction, event: MailboxCreate) -> Awaitable[None] | None:
    """A mailbox was created (IMAP CREATE, autocreate on delivery)."""


@hookspec
def mailbox_delete(txn: Transaction, event: MailboxDelete) -> Awaitable[None] | None:
    """A mailbox was deleted (its messages were expunged in an earlier transaction)."""


@hookspec
def mailbox_rename(txn: Transaction, event: MailboxRename) -> Awaitable[None] | None:
    """A mailbox was renamed: ``event.mailbox`` is the new name, ``event.mailbox_old`` the old."""


@hookspec
def mailbox_subscribe(txn: Transaction, event: MailboxSubscribe) -> Awaitable[None] | None:
    """A mailbox was subscribed to (not fired when it already was)."""


@hookspec
def mailbox_unsubscribe(txn: Transaction, event: MailboxUnsubscribe) -> Awaitable[None] | None:
    """A mailbox was unsubscribed from (not fired when it was not subscribed)."""


# ---------------------------------------------------------------- message events


@hookspec
def message_new(txn: Transaction, event: MessageNew) -> Awaitable[None] | None:
    """A message was delivered by LMTP/LDA (including Sieve ``fileinto``), in any mailbox."""


@hookspec
def message_append(txn: Transaction, event: MessageAppend) -> Awaitable[None] | None:
    """A client stored a message: IMAP APPEND, COPY, the copy half of MOVE, doveadm save."""


@hookspec
def message_expunge(txn: Transaction, event: MessageExpunge) -> Awaitable[None] | None:
    """A message was expunged (EXPUNGE, CLOSE, the source half of MOVE)."""


@hookspec
def message_read(txn: Transaction, event: MessageRead) -> Awaitable[None] | None:
    r"""``\Seen`` was newly set on a message."""


@hookspec
def message_trash(txn: Transaction, event: MessageTrash) -> Awaitable[None] | None:
    r"""``\Deleted`` was newly set on a message."""


@hookspec
def flags_set(txn: Transaction, event: FlagsSet) -> Awaitable[None] | None:
    """Flags or keywords were set. As in Dovecot it also fires, empty, when only keywords
    were removed."""


@hookspec
def flags_clear(txn: Transaction, event: FlagsClear) -> Awaitable[None] | None:
    """Flags or keywords were cleared. As in Dovecot it fires on every flag change, often with
    empty ``flags``/``keywords``; ``flags_old``/``keywords_old`` hold the state before."""


# ---------------------------------------------------------------- any event


@hookspec
def event(txn: Transaction, event: Event) -> Awaitable[None] | None:
    """Any event, whatever its kind: for drivers that treat every event alike (a webhook, a
    script bridge) instead of twelve one-line event hooks.

    Called for each event right after that event's own hook, when the instance has both:
    the specific hook handles what is special about a kind and ``event`` then sees the
    state it left, as the common last step. An instance with only ``event`` gets every event
    once, in the same place and order as the event hooks (after ``process_mbox`` or
    ``process_msg``). ``event.hook`` names the event hook, ``event.name`` the event.
    """
