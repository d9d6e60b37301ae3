"""The ``ox`` driver: new mail in INBOX, for users OX activated, PUT to OX App Suite.

As Dovecot's ``push-notification-driver-ox.c``: only MessageNew (deliveries, not APPEND),
only the mailbox named exactly ``INBOX``, only while the user's METADATA entry is set.
The requests of one transaction go out together when it ends, so a transaction with
several new messages uses up to ``http_client_max_parallel_connections`` connections.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from push_notification import DriverContext, MessageNew, Transaction, hookimpl
from push_notification.http import PartialDeliveries
from push_notification.transaction import OX_METADATA_KEY

from .activation import Activation, metadata_user
from .config import read_config
from .payload import build_payload
from .sender import Sender

WATCHED_MAILBOX = "INBOX"
#: A user skipped for want of METADATA is logged at info at most once in this many seconds.
SKIP_LOG_INTERVAL = 3600.0
#: Users whose last skip line is remembered (oldest forgotten first).
_SKIP_LOG_USERS = 65536
#: Transactions remembered as partly delivered, so a retry does not repeat what succeeded.
_PARTIAL_MAX = 4096


class _Pending:
    """What one accepted transaction collects between ``begin_txn`` and ``end_txn``."""

    __slots__ = ("bodies", "debug", "user")

    def __init__(self, user: str, debug: bool) -> None:
        self.user = user
        #: Whether debug lines are wanted (asked once per transaction, not per line).
        self.debug = debug
        self.bodies: list[tuple[int, bytes]] = []


class OxDriver:
    """One ``push_notification <name> { driver = ox }`` instance."""

    name = "ox"

    def __init__(self, ctx: DriverContext, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.log: logging.Logger = ctx.log
        self.prefix = f"push_notification {ctx.instance}: "
        self.config = read_config(ctx.settings)
        self.activation = Activation(ctx.metadata, self.config.cache_ttl, clock=clock)
        self.sender = Sender(self.config, self.log, self.prefix)
        self._pending: dict[str, _Pending] = {}
        self._partial = PartialDeliveries(_PARTIAL_MAX)
        self.clock = clock
        #: Transactions skipped, by reason: the daemon's /metrics shows them.
        self.skipped: dict[str, int] = {"no_metadata": 0}
        self._skip_logged: OrderedDict[str, float] = OrderedDict()
        self.log.debug("%sUsing URL %s", self.prefix, self.config.display_url)

    @hookimpl
    async def driver_init(self) -> None:
        await self.sender.start()

    @hookimpl
    async def driver_deinit(self) -> None:
        await self.sender.close()

    @hookimpl
    def begin_txn(self, txn: Transaction) -> bool:
        debug = self.log.isEnabledFor(logging.DEBUG)
        # Dovecot looks the METADATA up before checking the mailbox; checking the cheap
        # things first gives the same result without the lookup.
        if txn.mailbox != WATCHED_MAILBOX:
            if debug:
                self.log.debug("%sSkipped because %s is not a watched mailbox", self.prefix, txn.mailbox)
            return False
        for event in txn.events:
            if type(event) is MessageNew:
                break
        else:
            return False
        value = self.activation.value(txn)
        if value is None:
            self._skipped_inactive(txn)
            return False
        unsafe_user = metadata_user(value)
        if unsafe_user is None:
            self.log.error(
                "%sNo user provided in config: METADATA %s of user %s has no user=...; set it with"
                ' push-notification metadata set -u %s -s "" %s user=<OX user id>',
                self.prefix,
                OX_METADATA_KEY,
                txn.user.username,
                txn.user.username,
                OX_METADATA_KEY,
            )
            return False
        # The metadata's user is the endpoint's own id for the user; it is used only when
        # asked for (Dovecot's fix cad784f10d: users could otherwise push to each other).
        self._pending[txn.id] = _Pending(unsafe_user if self.config.user_from_metadata else txn.user.username, debug)
        return True

    def _skipped_inactive(self, txn: Transaction) -> None:
        """Count the skip; say it at info once per user per hour (an admin wondering why a
        user gets no push finds the reason without debug logging)."""
        self.skipped["no_metadata"] += 1
        user = txn.user.username
        now = self.clock()
        last = self._skip_logged.get(user)
        if last is not None and now - last < SKIP_LOG_INTERVAL:
            return
        self._skip_logged[user] = now
        self._skip_logged.move_to_end(user)
        if len(self._skip_logged) > _SKIP_LOG_USERS:
            self._skip_logged.popitem(last=False)
        self.log.info(
            "%sSkipped because not active (%s METADATA not set for user %s%s); OX App Suite sets it"
            " when the user turns push on (logged once an hour per user)",
            self.prefix,
            OX_METADATA_KEY,
            user,
            ", Dovecot's METADATA forwarded with the transaction" if OX_METADATA_KEY in txn.metadata else "",
        )

    @hookimpl
    def message_new(self, txn: Transaction, event: MessageNew) -> None:
        pending = self._pending.get(txn.id)
        if pending is None:
            return
        unseen = txn.status.unseen if txn.status is not None else None
        body = build_payload(pending.user, event, unseen)
        if pending.debug:
            self.log.debug("%sSending notification: %s", self.prefix, body.decode())
        pending.bodies.append((event.uid, body))

    @hookimpl
    async def end_txn(self, txn: Transaction, success: bool) -> None:
        pending = self._pending.pop(txn.id, None)
        if pending is None or not pending.bodies:
            return
        bodies = pending.bodies
        if len(bodies) == 1 and txn.id not in self._partial:
            # The common case, one new message: sent as it is, its error its own (as the
            # partial deliveries would report a lone request), with no bookkeeping to make.
            sender = self.sender
            response = await sender.http.send(sender.request(bodies[0][1]))
            if pending.debug:
                sender.sent(response)
            return
        parts = [(uid, f"UID {uid}", functools.partial(self.sender.put, body)) for uid, body in bodies]
        await self._partial.send(txn.id, parts, ordered=False)
