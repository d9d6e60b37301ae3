"""``push-notification new-driver``: a complete driver distribution from ``templates/``."""

from push_notification.scaffold.new_driver import new_driver

__all__ = ["new_driver"]
