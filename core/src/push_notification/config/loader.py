"""The daemon's config file: Dovecot syntax, so blocks can be pasted from dovecot.conf.

Accepted at the top level: the daemon's own settings (daemon.py), 2.4
``push_notification NAME { }`` blocks and 2.3 ``plugin { push_notification_driver = ... }``
blocks (instances.py), and ``!include`` / ``!include_try`` (syntax.py). Only
syntax and the daemon's keys are checked here; the daemon checks drivers and their settings.
"""

from __future__ import annotations

from pathlib import Path

from push_notification.config.daemon import DAEMON_SETTINGS_BY_NAME, DaemonConfig, daemon_values, parse_daemon_value
from push_notification.config.instances import PREFIX, InstanceConfig, instance_from_block, plugin_instances
from push_notification.config.render import render_effective
from push_notification.config.syntax import Block, Entry, parse_tree, read_config_file
from push_notification.errors import ConfigError

__all__ = ["DEFAULT_CONFIG_TEXT", "DaemonConfig", "InstanceConfig", "load_config", "parse_config", "render_effective"]

DEFAULT_CONFIG_TEXT = """\
# Built-in default: log every event through the dlog driver.
push_notification dlog { }
"""
DEFAULT_SOURCE = "<built-in default>"
_SEQUENCE_PREFIXES = (f"{PREFIX}driver", f"{PREFIX}backend")


def load_config(path: str | Path | None) -> DaemonConfig:
    """The config in ``path``, or the built-in default (one dlog instance) when None."""
    if path is None:
        return parse_config(DEFAULT_CONFIG_TEXT, DEFAULT_SOURCE)
    text = read_config_file(str(path))
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<string>") -> DaemonConfig:
    """The config in ``text``; ``!include`` paths are relative to ``source``'s directory."""
    root = parse_tree(text, source)
    values = daemon_values(child for child in root.children if isinstance(child, Entry))
    timeout_setting = DAEMON_SETTINGS_BY_NAME["driver_timeout"]
    timeout = values.get("driver_timeout", timeout_setting.parse(timeout_setting.default))

    def parse_timeout(entry: Entry) -> float:
        seconds: float = parse_daemon_value(timeout_setting, entry)
        return seconds

    instances: list[InstanceConfig] = []
    plugin: list[Entry] = []
    for block in (child for child in root.children if isinstance(child, Block)):
        if block.kind == "push_notification":
            instances.append(instance_from_block(block, timeout, parse_timeout))
        elif block.kind == "plugin":
            plugin += _plugin_entries(block)
        else:
            raise ConfigError(
                f"{block.where}: unknown block '{block.title}' (this file is the push-notification daemon's "
                "config, not dovecot.conf: it accepts 'push_notification NAME { }', 'plugin { }' and the "
                "daemon's settings)"
            )
    instances += plugin_instances(plugin, timeout, parse_timeout)
    instances.sort(key=lambda instance: instance.order)
    _check_unique(instances)
    if not instances:
        raise ConfigError(
            f"{source}: no push_notification instance is configured (add e.g. 'push_notification dlog {{ }}')"
        )
    plugin_env = {entry.key: entry.value for entry in plugin if not entry.key.startswith(_SEQUENCE_PREFIXES)}
    return DaemonConfig(tuple(instances), plugin_env, source, **values)


def _plugin_entries(block: Block) -> list[Entry]:
    """A 2.3 ``plugin { }`` block's lines; it holds only ``key = value``."""
    if block.name:
        raise ConfigError(f"{block.where}: 'plugin' takes no name (write 'plugin {{')")
    for child in block.children:
        if isinstance(child, Block):
            raise ConfigError(f"{child.where}: plugin {{ }} holds only 'key = value' lines, not '{child.title} {{'")
    return [child for child in block.children if isinstance(child, Entry)]


def _check_unique(instances: list[InstanceConfig]) -> None:
    first: dict[str, InstanceConfig] = {}
    for instance in instances:
        if instance.name in first:
            raise ConfigError(
                f"{instance.where}: duplicate push_notification instance {instance.name!r} (first defined at "
                f"{first[instance.name].where}; give each instance its own name)"
            )
        first[instance.name] = instance
