"""``check-config`` output: the effective config in Dovecot syntax, secrets masked.

The text parses back to the same configuration (apart from the masked values), so an admin
can see exactly what the daemon will run with: defaults filled in, keys normalised, 2.3
``push_notification_driver`` lines shown as the equivalent 2.4 blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from push_notification.config.daemon import DAEMON_SETTINGS
from push_notification.settings import Settings, mask_url

if TYPE_CHECKING:
    from push_notification.config.daemon import DaemonConfig

_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|apikey|auth|credential|cookie|session|signature|(^|[_-])key($|[_-])", re.IGNORECASE
)
#: Header names whose values are shown: everything else in a ``headers { }`` block may be a
#: credential (``X-Auth``, ``X-Api``...) and is masked.
_PLAIN_HEADERS = frozenset(
    ("accept", "content-type", "user-agent", "title", "x-title", "priority", "x-priority", "tags", "x-tags",
     "markdown", "x-markdown", "icon", "x-icon", "click", "x-click", "content-language")
)  # fmt: skip
_INDENT = "  "


def render_effective(config: DaemonConfig) -> str:
    """Daemon settings, the ``plugin { }`` environment, then each instance block."""
    lines = [f"# push-notification effective configuration from {config.source}"]
    for setting in DAEMON_SETTINGS:
        value = _text(getattr(config, setting.name))
        shown = "***" if setting.secret and value else masked(setting.name, value)
        lines.append(f"{setting.name} = {quote(shown)}  # {setting.help}")
    if config.plugin_env:
        lines += ["", "plugin {", *_entries(config.plugin_env, 1), "}"]
    for instance in config.instances:
        lines += ["", f"push_notification {instance.name} {{  # defined at {instance.where}"]
        lines.append(f"{_INDENT}driver = {instance.driver}")
        lines.append(f"{_INDENT}driver_timeout = {format_time(instance.timeout)}")
        lines += _settings(instance.settings, 1)
        lines.append("}")
    return "\n".join(lines) + "\n"


def masked(key: str, value: str) -> str:
    """``value`` safe to print: *** for secret-looking keys, URLs as :func:`mask_url` shows them."""
    if value and _SECRET_KEY.search(key):
        return "***"
    return mask_url(value) if "://" in value else value


def quote(value: str) -> str:
    """``value`` as written in a config file, quoted only when it must be."""
    if value != value.strip() or value.startswith(('"', "'")) or "#" in value or value.endswith("\\"):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def format_time(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format_time(value) if isinstance(value, float) else str(value)


def _entries(values: Mapping[str, str], depth: int, headers: bool = False) -> Iterator[str]:
    for key, value in values.items():
        shown = "***" if headers and value and key.lower() not in _PLAIN_HEADERS else masked(key, value)
        yield f"{_INDENT * depth}{key} = {quote(shown)}"


def _settings(settings: Settings, depth: int, headers: bool = False) -> Iterator[str]:
    yield from _entries(settings.as_dict(), depth, headers)
    for key, section in settings.sections.items():
        yield f"{_INDENT * depth}{key} {{"
        yield from _settings(section, depth + 1, key.lower().endswith("headers"))
        yield f"{_INDENT * depth}}}"
