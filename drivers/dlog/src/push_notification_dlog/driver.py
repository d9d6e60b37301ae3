"""The dlog driver: Dovecot's debug-log driver, line for line.

Lines go to the instance's logger (``push_notification.driver.<instance>``), prefixed with the
instance name. Like Dovecot 2.3's ``i_debug``, they are written whatever the daemon's log level.
"""

from __future__ import annotations

import logging

from push_notification import DriverContext, Event, Message, Transaction, hookimpl

from .lines import event_lines

HOOK_LINE = "Called {} push_notification plugin hook."


class DlogDriver:
    """Writes every hook call and event to the log. Accepts any option, as Dovecot's does."""

    def __init__(self, ctx: DriverContext) -> None:
        self.prefix = f"{ctx.instance}: "
        self.log = ctx.log
        # Dovecot's i_debug is unconditional: let these records through whatever the root level.
        self.log.setLevel(logging.DEBUG)
        self._options = " ".join(f"{k}={v}" if v else k for k, v in ctx.settings.as_dict().items())

    def _write(self, text: str) -> None:
        self.log.debug("%s%s", self.prefix, text)

    def _events(self, events: tuple[Event, ...]) -> None:
        for event in events:
            for line in event_lines(event):
                self._write(line)

    @hookimpl
    def driver_init(self) -> None:
        self._write(HOOK_LINE.format("init"))
        if self._options:
            self._write(f"Config string for dlog push_notification driver: {self._options}")

    @hookimpl
    def begin_txn(self) -> None:
        self._write(HOOK_LINE.format("begin_txn"))

    @hookimpl
    def process_mbox(self, txn: Transaction) -> None:
        self._write(HOOK_LINE.format("process_mbox"))
        self._write(f"Mailbox data: Mailbox [{txn.mailbox}]")
        self._events(txn.mailbox_events)

    @hookimpl
    def process_msg(self, txn: Transaction, message: Message) -> None:
        self._write(HOOK_LINE.format("process_msg"))
        self._write(f"Message data: Mailbox [{txn.mailbox}], UID [{message.uid}], UIDVALIDITY [{message.uid_validity}]")
        self._events(message.events)

    @hookimpl
    def end_txn(self) -> None:
        self._write(HOOK_LINE.format("end_txn"))

    @hookimpl
    def driver_deinit(self) -> None:
        self._write(HOOK_LINE.format("deinit"))

    @hookimpl
    def driver_cleanup(self) -> None:
        self._write(HOOK_LINE.format("cleanup"))
