"""push-notification: Dovecot's push-notification framework in Python, with pluggable drivers.

Driver authors need :data:`hookimpl`, the event classes and :class:`DriverContext`; everything
else is the daemon.
"""

from .drivers import DriverContext
from .errors import ConfigError, DriverError, PermanentError, PushNotificationError, RetryableError
from .events import (
    EVENT_TYPES,
    Event,
    FlagsClear,
    FlagsSet,
    MailboxCreate,
    MailboxDelete,
    MailboxEvent,
    MailboxRename,
    MailboxSubscribe,
    MailboxUnsubscribe,
    MessageAppend,
    MessageEvent,
    MessageExpunge,
    MessageNew,
    MessageRead,
    MessageTrash,
)
from .hookspecs import hookimpl
from .transaction import MailboxStatus, Message, Transaction, User

__all__ = [
    "EVENT_TYPES",
    "ConfigError",
    "DriverContext",
    "DriverError",
    "Event",
    "FlagsClear",
    "FlagsSet",
    "MailboxCreate",
    "MailboxDelete",
    "MailboxEvent",
    "MailboxRename",
    "MailboxStatus",
    "MailboxSubscribe",
    "MailboxUnsubscribe",
    "Message",
    "MessageAppend",
    "MessageEvent",
    "MessageExpunge",
    "MessageNew",
    "MessageRead",
    "MessageTrash",
    "PermanentError",
    "PushNotificationError",
    "RetryableError",
    "Transaction",
    "User",
    "hookimpl",
]
