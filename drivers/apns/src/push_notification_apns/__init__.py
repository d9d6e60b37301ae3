"""Apple Push Notification service driver for push-notification: wakes iOS and macOS apps."""

from .driver import ApnsDriver

__all__ = ["ApnsDriver"]
