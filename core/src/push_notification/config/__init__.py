"""The config file: Dovecot syntax (``syntax.py``), driver instances in 2.3 and 2.4 forms
(``instances.py``), the daemon's own settings (``daemon.py``), ``check-config``'s rendering
(``render.py``); ``loader.py`` puts them together. Imports only the core."""

from push_notification.config.daemon import DaemonConfig
from push_notification.config.instances import InstanceConfig
from push_notification.config.loader import DEFAULT_CONFIG_TEXT, DEFAULT_SOURCE, load_config, parse_config
from push_notification.config.render import render_effective

__all__ = [
    "DEFAULT_CONFIG_TEXT",
    "DEFAULT_SOURCE",
    "DaemonConfig",
    "InstanceConfig",
    "load_config",
    "parse_config",
    "render_effective",
]
