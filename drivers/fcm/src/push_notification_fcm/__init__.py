"""Firebase Cloud Messaging (HTTP v1) driver for push-notification: wakes Android apps."""

from .driver import FcmDriver

__all__ = ["FcmDriver"]
