"""The ``dlog`` driver: every hook call and event written to the log, with Dovecot 2.3.19's texts."""

from .driver import DlogDriver
from .lines import event_lines

__all__ = ["DlogDriver", "event_lines"]
