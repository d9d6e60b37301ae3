"""OX App Suite push driver for push-notification (entry point ``ox``)."""

from .driver import OxDriver

__all__ = ["OxDriver"]
