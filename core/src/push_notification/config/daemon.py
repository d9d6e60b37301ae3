"""The daemon's own settings (listen address, log level, queue...), one declarative row each.

To add a daemon setting: add a field to :class:`DaemonConfig` and a row to
:data:`DAEMON_SETTINGS`; parsing, validation, error messages and ``check-config`` output
follow from the row.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from push_notification.config.ingress_address import is_loopback_host
from push_notification.config.instances import InstanceConfig
from push_notification.config.syntax import Entry
from push_notification.errors import ConfigError, closest
from push_notification.settings import SizeTooLarge, parse_bool, parse_size, parse_time


def default_state_dir() -> str:
    """Where state lives unless ``state_dir`` says otherwise: system-wide for root, else per user."""
    if os.geteuid() == 0:
        return "/var/lib/push-notification"
    return os.path.expanduser("~/.local/state/push-notification")


@dataclass(frozen=True)
class DaemonConfig:
    """Everything the daemon needs: its own settings, the driver instances, the plugin env."""

    instances: tuple[InstanceConfig, ...]
    plugin_env: Mapping[str, str]
    source: str
    listen: str = "127.0.0.1:8425"
    log_level: str = "info"
    log_format: str = "text"
    log_deliveries: bool = True
    ingress_token: str | None = None
    driver_timeout: float = 30.0
    state_dir: str = field(default_factory=default_state_dir)
    metadata_path: str = ""
    queue: str = "sqlite"
    queue_path: str = ""
    queue_retry_deadline: float = 3600.0
    queue_retry_delay: float = 1.0
    queue_retry_max_delay: float = 300.0
    queue_fsync: bool = False
    queue_url: str | None = None
    queue_partitions: int = 16
    queue_visibility_timeout: float = 10.0
    spool_dir: str | None = None
    spool_max_size: int = 1 << 20
    max_pending: int = 100000
    event_loop: str = "auto"
    ingress_max_body_size: int = 1 << 20
    ingress_max_events: int = 1000
    ingress_header_timeout: float = 10.0
    ingress_body_timeout: float = 10.0
    ingress_max_connections: int = 4096
    devices_path: str = ""
    device_expiry: float = 90 * 86400.0

    def __post_init__(self) -> None:
        # Paths left unset live in state_dir.
        if not self.metadata_path:
            object.__setattr__(self, "metadata_path", os.path.join(self.state_dir, "metadata.sqlite"))
        if not self.queue_path:
            object.__setattr__(self, "queue_path", os.path.join(self.state_dir, "queue.sqlite"))
        if not self.devices_path:
            object.__setattr__(self, "devices_path", os.path.join(self.state_dir, "devices.sqlite"))


def parse_listen(text: str) -> str:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:/path`` (``:PORT`` is 127.0.0.1, as for ``--listen``)."""
    hint = "use HOST:PORT, [IPv6]:PORT or unix:/path"
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError(hint)
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(hint)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            raise ValueError(hint) from None
        if not host.endswith("]"):
            raise ValueError(hint)
    elif ":" in host:
        raise ValueError(f"put an IPv6 address in brackets, e.g. [::1]:{port}")
    return text


def parse_timeout(text: str) -> float:
    """A positive duration in seconds."""
    try:
        seconds = parse_time(text)
    except ValueError:
        raise ValueError("use e.g. 10s, 2 mins, 500ms") from None
    if seconds <= 0:
        raise ValueError("must be more than 0, e.g. 30s")
    return seconds


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"use one of: {', '.join(choices)}")
        return text.lower()

    return parse


def parse_positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) < 1:
        raise ValueError("use a whole number from 1 to 999999999999")
    return int(text)


def parse_body_size(text: str) -> int:
    """A request body limit: at least 1 KiB (a transaction), at most 1 GiB."""
    try:
        size = parse_size(text)
    except SizeTooLarge:
        size = 1 << 63
    except ValueError:
        raise ValueError("use e.g. 1M, 512k") from None
    if not 1 << 10 <= size <= 1 << 30:
        raise ValueError("use a size from 1k to 1G")
    return size


def parse_spool_size(text: str) -> int:
    """A size from 1k (a transaction file is a few hundred bytes or more) to 1G (the file is
    read into memory whole)."""
    try:
        size = parse_size(text)
    except SizeTooLarge:
        size = 1 << 63
    if size < 1024:
        raise ValueError("use at least 1k; a transaction file is a few hundred bytes or more")
    if size > 1 << 30:
        raise ValueError("use at most 1G; a spool file is read into memory whole")
    return size


def parse_yes_no(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError:
        raise ValueError("use yes or no") from None


def parse_directory(text: str) -> str:
    if not text:
        raise ValueError("give a directory path")
    return os.path.expanduser(text)


def optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, except that an empty value means unset (None)."""
    return lambda text: parse(text) if text else None


@dataclass(frozen=True)
class DaemonSetting:
    """One top-level key of the daemon's config file."""

    name: str
    kind: str  # what a bad value is called in "invalid KIND 'x' for NAME"
    parse: Callable[[str], Any]
    default: str  # as written in a config file; "" means unset or derived (see help)
    help: str
    secret: bool = False


DAEMON_SETTINGS: tuple[DaemonSetting, ...] = (
    DaemonSetting("listen", "address", parse_listen, "127.0.0.1:8425",
                  "ingress HTTP address: HOST:PORT, [IPv6]:PORT or unix:/path"),
    DaemonSetting("log_level", "log level", choice("debug", "info", "warning", "error"), "info",
                  "least severe message logged"),
    DaemonSetting("log_format", "log format", choice("text", "json"), "text",
                  "one line of text or one JSON object per message"),
    DaemonSetting("ingress_token", "token", optional(str), "",
                  "bearer token required on POST /v1/transactions (unset: none)", secret=True),
    DaemonSetting("driver_timeout", "time", parse_timeout, "30s",
                  "longest one instance may take for one transaction (an instance block may override it)"),
    DaemonSetting("state_dir", "directory", parse_directory, "",
                  "state directory (default /var/lib/push-notification as root, else ~/.local/state/...)"),
    DaemonSetting("metadata_path", "path", optional(os.path.expanduser), "",
                  "METADATA store (default STATE_DIR/metadata.sqlite)"),
    DaemonSetting("queue", "queue", choice("memory", "sqlite", "redis"), "sqlite",
                  "where pending transactions wait: sqlite (durable, retries, dead letters), redis (the"
                  " same, shared by many daemons: queue_url) or memory (faster; lost on restart)"),
    DaemonSetting("queue_path", "path", optional(os.path.expanduser), "",
                  "sqlite queue file (default STATE_DIR/queue.sqlite)"),
    DaemonSetting("queue_retry_deadline", "time", parse_timeout, "1h",
                  "durable queues: retry a failed delivery until this long after acceptance, then dead-letter it"),
    DaemonSetting("queue_retry_delay", "time", parse_timeout, "1s",
                  "durable queues: wait before the first retry; doubles each time (with jitter)"),
    DaemonSetting("queue_retry_max_delay", "time", parse_timeout, "5 mins",
                  "durable queues: longest wait between two retries"),
    DaemonSetting("queue_fsync", "boolean", parse_yes_no, "no",
                  "sqlite queue: fsync before answering 2xx, so accepted work also survives a power cut"
                  " (no: it survives a crash or SIGKILL; yes costs one disk sync per commit)"),
    DaemonSetting("queue_url", "URL", optional(str), "",
                  "redis queue: redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS; ?ssl_ca_certs=FILE),"
                  " unix:///PATH?db=N or redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE[/DB]"),
    DaemonSetting("queue_partitions", "number", parse_positive_int, "16",
                  "redis queue: streams users are spread over (per-user order, one owner each); the same on"
                  " every daemon sharing the queue"),
    DaemonSetting("queue_visibility_timeout", "time", parse_timeout, "10s",
                  "redis queue: how long a silent daemon keeps its deliveries before another takes them over"),
    DaemonSetting("spool_dir", "directory", optional(os.path.expanduser), "",
                  "Dovecot bridge spool directory to watch (unset: off)"),
    DaemonSetting("spool_max_size", "size", parse_spool_size, "1M",
                  "largest spool file taken in; a bigger one is moved to SPOOL/bad/"),
    DaemonSetting("max_pending", "number", parse_positive_int, "100000",
                  "transactions waiting at most; ingress refuses more"),
    DaemonSetting("event_loop", "event loop", choice("auto", "uvloop", "asyncio"), "auto",
                  "asyncio event loop: uvloop (less CPU; auto picks it when installed) or asyncio's own"),
    DaemonSetting("ingress_max_body_size", "size", parse_body_size, "1M",
                  "largest transaction body the ingress reads (413 above it)"),
    DaemonSetting("ingress_max_events", "number", parse_positive_int, "1000",
                  "most events in one transaction (400 above it)"),
    DaemonSetting("ingress_header_timeout", "time", parse_timeout, "10s",
                  "a request head must be complete within this time of its first byte, or the connection is"
                  " closed"),
    DaemonSetting("ingress_body_timeout", "time", parse_timeout, "10s",
                  "a request body must arrive within this time (408 after it)"),
    DaemonSetting("ingress_max_connections", "number", parse_positive_int, "4096",
                  "most open ingress connections (lowered to fit the open-file limit); a new one closes the"
                  " least recently active"),
    DaemonSetting("log_deliveries", "boolean", parse_yes_no, "yes",
                  "at log_level info, one line per delivered transaction and instance, with its latency"),
    DaemonSetting("devices_path", "path", optional(os.path.expanduser), "",
                  "device registry for drivers that wake devices (default STATE_DIR/devices.sqlite)"),
    DaemonSetting("device_expiry", "time", parse_timeout, "90 days",
                  "remove a device nobody registered again (HTTP, CLI or METADATA) for this long"),
)  # fmt: skip
DAEMON_SETTINGS_BY_NAME = {setting.name: setting for setting in DAEMON_SETTINGS}


def parse_daemon_value(setting: DaemonSetting, entry: Entry) -> Any:
    """``entry``'s value parsed by ``setting``, or a ConfigError naming file, line, key and fix."""
    try:
        return setting.parse(entry.value)
    except ValueError as exc:
        shown = "***" if setting.secret else entry.value
        raise ConfigError(f"{entry.where}: invalid {setting.kind} {shown!r} for {setting.name} ({exc})") from None


def daemon_values(entries: Iterable[Entry]) -> dict[str, Any]:
    """The parsed top-level settings, keyed as DaemonConfig fields; a later line wins, as in Dovecot."""
    values: dict[str, Any] = {}
    lines: dict[str, Entry] = {}
    for entry in entries:
        setting = DAEMON_SETTINGS_BY_NAME.get(entry.key)
        if setting is None:
            raise ConfigError(f"{entry.where}: unknown setting {entry.key!r} ({_unknown_hint(entry.key)})")
        values[setting.name] = parse_daemon_value(setting, entry)
        lines[setting.name] = entry
    if "listen" in values and not values.get("ingress_token") and not is_local(values["listen"]):
        raise ConfigError(
            f"{lines['listen'].where}: listen = {values['listen']} lets other hosts submit transactions; "
            "set ingress_token (or listen on 127.0.0.1, [::1] or a unix: socket)"
        )
    if values.get("queue") == "redis" and not values.get("queue_url"):
        raise ConfigError(
            f"{lines['queue'].where}: queue = redis needs queue_url, e.g. queue_url = redis://127.0.0.1:6379/0"
        )
    return values


def is_local(listen: str) -> bool:
    """Whether only this machine can reach ``listen`` (loopback or a unix socket)."""
    return listen.startswith("unix:") or is_loopback_host(listen.rpartition(":")[0])


def _unknown_hint(key: str) -> str:
    known = ", ".join(DAEMON_SETTINGS_BY_NAME)
    close = closest(key, DAEMON_SETTINGS_BY_NAME)
    if close:
        return f"did you mean {close!r}? known: {known}"
    return (
        "this file is the push-notification daemon's config, not dovecot.conf; top-level settings are "
        f"{known}; driver settings go in 'push_notification NAME {{ }}' or 'plugin {{ }}'"
    )
