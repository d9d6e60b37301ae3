"""push-notification: Dovecot's push-notification framework in Python, with pluggable drivers.

Driver authors need :data:`hookimpl`, the event classes and :class:`DriverContext`; everything
else is the daemon.
"""

from push_notification.drivers import DriverContext, Metadata
from push_notification.errors import ConfigError, DriverError, PermanentError, PushNotificationError, RetryableError
from push_notification.events import (
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
from push_notification.hookspecs import hookimpl
from push_notification.transaction import MailboxStatus, Message, Transaction, User

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
    "Metadata",
    "PermanentError",
    "PushNotificationError",
    "RetryableError",
    "Transaction",
    "User",
    "hookimpl",
]
