"""Driver instances from both Dovecot config forms.

2.4: ``push_notification NAME { driver = X  key = value  sub { ... } }``; the driver defaults
to the block name. 2.3: ``plugin { push_notification_driver = X:key=value key2 ... }``, then
``push_notification_driver2``, ... (or the legacy ``push_notification_backend*``).

Keys are normalised so a driver sees one spelling: ``push_notification_`` and then
``<driver>_`` are stripped (``push_notification_ox_url``, ``ox_url`` and ``url`` are all
``url``; ``lua_settings { }`` is section ``settings``); ``http_client_*`` and
``ssl_client_*`` are kept whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from push_notification.config.syntax import Block, Entry
from push_notification.errors import ConfigError
from push_notification.settings import Settings, Value

PREFIX = "push_notification_"
KEPT_PREFIXES = ("http_client_", "ssl_client_")
TIMEOUT_KEY = "driver_timeout"  # reserved: the daemon's per-instance timeout, never the driver's
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SEQUENCE_KEY = re.compile(rf"^{PREFIX}(driver|backend)(\d*)$")

# Parses a driver_timeout entry (supplied by the daemon settings table, to share its errors).
TimeoutParser = Callable[[Entry], float]


@dataclass(frozen=True)
class InstanceConfig:
    """One configured driver instance, ready for the driver's ``DriverContext``."""

    name: str
    driver: str
    settings: Settings
    where: str
    timeout: float = 30.0
    order: int = field(default=0, compare=False, repr=False)  # file position: 2.3 and 2.4 keep file order


def normalise_key(key: str, driver: str) -> str:
    """``key`` without ``push_notification_`` and then ``<driver>_`` (see module doc)."""
    key = key.removeprefix(PREFIX)
    if key.startswith(KEPT_PREFIXES):
        return key
    return key.removeprefix(f"{driver}_") or key


def check_name(name: str, where: str, what: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: invalid {what} {name!r} (use letters, digits, '_', '.' and '-')")
    return name


def instance_from_block(block: Block, timeout: float, parse_timeout: TimeoutParser) -> InstanceConfig:
    """A 2.4 ``push_notification NAME { }`` block as an instance."""
    if not block.name:
        raise ConfigError(f"{block.where}: push_notification needs a name (write 'push_notification NAME {{')")
    name = check_name(block.name, block.where, "push_notification name")
    title = f"push_notification {name}"
    driver = name.lower()
    for child in block.children:
        if isinstance(child, Entry) and child.key.removeprefix(PREFIX) == "driver" and child.value:
            driver = check_name(child.value.lower(), child.where, f"{title}: driver name")
    values: dict[str, Value] = {}
    sections: dict[str, Settings] = {}
    for child in block.children:
        if isinstance(child, Block):
            key = normalise_key(child.kind, driver)
            if child.name:
                raise ConfigError(f"{child.where}: {title}: nested block '{child.title}' cannot have a name")
            sections[key] = _section(f"{name}/{key}", child, sections.get(key))
            continue
        key = child.key.removeprefix(PREFIX)
        if key == "driver":
            continue
        if key == "name" and child.value != name:
            raise ConfigError(f"{child.where}: {title}: 'name' differs from the block name (remove it)")
        if key == TIMEOUT_KEY:
            timeout = parse_timeout(child)
        elif key != "name":
            values[normalise_key(key, driver)] = Value(child.value, child.source, child.line)
    settings = Settings(name, values, sections, where=block.where)
    return InstanceConfig(name, driver, settings, block.where, timeout, block.order)


def _section(instance: str, block: Block, earlier: Settings | None) -> Settings:
    """A nested block's settings, keys verbatim (a later block of the same name adds to it)."""
    values = dict(earlier.items()) if earlier else {}
    sections = dict(earlier.sections) if earlier else {}
    for child in block.children:
        if isinstance(child, Entry):
            values[child.key] = Value(child.value, child.source, child.line)
        else:
            sections[child.title] = _section(f"{instance}/{child.title}", child, sections.get(child.title))
    return Settings(instance, values, sections, where=earlier.where if earlier else block.where)


def plugin_instances(entries: Iterable[Entry], timeout: float, parse_timeout: TimeoutParser) -> list[InstanceConfig]:
    """The 2.3 instances of the merged ``plugin { }`` entries.

    Instance names: the driver name for its first instance, then ``<driver>2``, ``<driver>3``...
    (``ox``, ``dlog``, ``ox2`` for drivers ox, dlog, ox).
    """
    numbered: dict[str, dict[int, Entry]] = {"driver": {}, "backend": {}}
    for entry in entries:
        match = _SEQUENCE_KEY.match(entry.key)
        if match is None:
            continue
        kind, digits = match.groups()
        if digits in ("0", "1") or digits.startswith("0"):
            raise ConfigError(
                f"{entry.where}: {entry.key} is never read (Dovecot reads {PREFIX}{kind}, then "
                f"{PREFIX}{kind}2, {PREFIX}{kind}3, ...; rename it)"
            )
        numbered[kind][int(digits or 1)] = entry
    drivers = _in_sequence("driver", numbered["driver"])
    if drivers:
        for entry in numbered["backend"].values():
            if entry.value:
                raise ConfigError(
                    f"{entry.where}: {entry.key} is ignored because {PREFIX}driver is set "
                    f"(backend is the legacy name; make it a {PREFIX}driverN line or remove it)"
                )
    else:
        drivers = _in_sequence("backend", numbered["backend"])
    instances: list[InstanceConfig] = []
    seen: dict[str, int] = {}
    for entry in drivers:
        driver, values, timeout_entry = _parse_driver_string(entry)
        seen[driver] = seen.get(driver, 0) + 1
        name = driver if seen[driver] == 1 else f"{driver}{seen[driver]}"
        settings = Settings(name, values, where=entry.where)
        instance_timeout = parse_timeout(timeout_entry) if timeout_entry else timeout
        instances.append(InstanceConfig(name, driver, settings, entry.where, instance_timeout, entry.order))
    return instances


def _in_sequence(kind: str, numbered: dict[int, Entry]) -> list[Entry]:
    """Entries 1, 2, 3... up to the first missing or empty one, as Dovecot reads them.

    Dovecot silently skips everything after a gap; here a skipped non-empty key is an error.
    """
    found: list[Entry] = []
    while (entry := numbered.get(len(found) + 1)) is not None and entry.value:
        found.append(entry)
    for number, entry in sorted(numbered.items()):
        if number > len(found) + 1 and entry.value:
            missing = f"{PREFIX}{kind}{len(found) + 1 if found else ''}"
            raise ConfigError(
                f"{entry.where}: {entry.key} is never read because {missing} is not set "
                f"(Dovecot stops at the first gap; number the drivers without gaps)"
            )
    return found


def _parse_driver_string(entry: Entry) -> tuple[str, dict[str, Value], Entry | None]:
    """``ox:url=... user_from_metadata`` → driver, settings, driver_timeout entry (if any)."""
    driver_text, _, args = entry.value.partition(":")
    driver = driver_text.strip().lower()
    if not driver:
        raise ConfigError(
            f"{entry.where}: {entry.key}: empty driver name "
            "(write DRIVER[:key=value ...], e.g. ox:url=http://host/notify)"
        )
    check_name(driver, entry.where, f"{entry.key} driver name")
    values: dict[str, Value] = {}
    timeout_entry = None
    for arg in args.split():
        key, _, value = arg.partition("=")
        if not key:
            raise ConfigError(f"{entry.where}: {entry.key}: an argument starts with '=' (write key=value)")
        key = normalise_key(key, driver)
        if key == TIMEOUT_KEY:
            timeout_entry = Entry(key, value, entry.source, entry.line, entry.order)
        else:
            values[key] = Value(value, entry.source, entry.line)
    return driver, values, timeout_entry
