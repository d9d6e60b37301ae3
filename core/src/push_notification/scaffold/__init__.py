"""``push-notification new-driver``: a complete driver distribution from ``templates/``."""

from push_notification.scaffold.new_driver import NAME_RULE, new_driver

__all__ = ["NAME_RULE", "new_driver"]
