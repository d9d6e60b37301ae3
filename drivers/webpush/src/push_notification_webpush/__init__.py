"""Web Push (RFC 8030/8291/8292) driver for push-notification: wakes browsers and UnifiedPush apps."""

from .driver import WebPushDriver

__all__ = ["WebPushDriver"]
