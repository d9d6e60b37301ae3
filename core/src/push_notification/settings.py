"""Typed access to a driver instance's settings, with Dovecot's value syntax.

A driver reads its settings through :class:`Settings` at construction, so every mistake is
a start-up error naming the file, line, instance and setting, never a surprise at the first
delivery. Unused keys are reported by :meth:`Settings.check_unknown`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from push_notification.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Value:
    """A setting's text and where it was written."""

    text: str
    source: str = "<defaults>"
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


_TIME_UNITS = {
    "ms": 0.001, "msec": 0.001, "msecs": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_BOOLS = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
#: Longer than this is a typo, not a timeout: ten years.
_MAX_TIME = 10 * 365 * 86400.0
#: Larger than this is a typo, not a size: one PiB.
_MAX_SIZE = 1 << 50
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def parse_time(text: str) -> float:
    """Seconds from a Dovecot time (``10secs``, ``60 seconds``, ``2 mins``, ``500ms``; bare = s)."""
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", "", text).strip():
        raise ValueError(f"invalid time {text!r} (use e.g. 10s, 60 seconds, 2 mins, 500ms)")
    for number, unit in parts:
        factor = _TIME_UNITS.get(unit.lower() or "s")
        if factor is None:
            raise ValueError(f"invalid time unit {unit!r} in {text!r} (use ms, s, mins, hours, days, weeks)")
        if len(number.partition(".")[0]) > 15:
            raise ValueError(f"time {text!r} is too long (at most ten years)")
        total += float(number) * factor
    if total > _MAX_TIME:
        raise ValueError(f"time {text!r} is too long (at most ten years)")
    return total


class SizeTooLarge(ValueError):
    """A size beyond any sane setting (above 1P): callers with a smaller bound name theirs."""


def parse_size(text: str) -> int:
    """Bytes from a Dovecot size (``10k``, ``5 MB``, ``1G``)."""
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower().removesuffix("b") if match else None
    if match is None or unit is None or (unit not in _SIZE_UNITS and match.group(2).lower() != "b"):
        raise ValueError(f"invalid size {text!r} (use e.g. 512, 10k, 5M, 1G)")
    if len(match.group(1)) > 18 or float(match.group(1)) * _SIZE_UNITS[unit] > _MAX_SIZE:
        raise SizeTooLarge(f"size {text!r} is too large (at most 1P)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_bool(text: str) -> bool:
    """A Dovecot boolean (``yes``/``no``)."""
    value = _BOOLS.get(text.strip().lower())
    if value is None:
        raise ValueError(f"invalid boolean {text!r} (use yes or no)")
    return value


#: A URL's host and port, as what follows the userinfo's '@' up to the path.
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[^\s/?#@\[\]:]+)(?::[0-9]*)?")
#: A path segment that looks like a credential (Slack's T0../B0../token, a bot token).
_SECRET_SEGMENT = re.compile(r"(?=[^/]*[A-Za-z])(?=[^/]*[0-9])[^/{}]{8,}|[^/{}]{24,}")


def mask_url(url: str) -> str:
    """The URL safe for logs, errors and ``check-config``: the password, every query value,
    the fragment and credential-looking path segments (8+ characters mixing letters and
    digits, or 24+ characters; Slack's and Discord's secrets live there) become ``***``.

    The userinfo ends at the first '@' followed by a host, not at the first '/', '?' or '#':
    a password holding those (written unencoded) is masked whole, never split.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo = ""
    start = 0
    while (at := rest.find("@", start)) != -1:
        end = min((i for i in (rest.find(c, at + 1) for c in "/?#") if i != -1), default=len(rest))
        if _HOST_PORT.fullmatch(rest[at + 1 : end]):
            userinfo, rest = rest[:at], rest[at + 1 :]
            break
        start = at + 1
    if ":" in userinfo:
        userinfo = f"{userinfo.partition(':')[0]}:***"
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError:
        return f"{scheme}://{'***@' if userinfo else ''}***"
    path = "/".join(_SECRET_SEGMENT.sub("***", segment) for segment in parts.path.split("/"))
    query = "&".join(f"{pair.partition('=')[0]}=***" if pair else "" for pair in parts.query.split("&"))
    masked = urlunsplit(parts._replace(path=path, query=query, fragment="***" if parts.fragment else ""))
    return masked.replace("://", f"://{userinfo}@", 1) if userinfo else masked


class Settings(Mapping[str, Value]):
    """One driver instance's settings, keys normalised (``ox_url`` and ``url`` are the same).

    Read them with ``get_str``, ``get_bool``, ``get_time``, ``get_msecs``, ``get_int``,
    ``get_size`` and ``section``.

    Getters record which keys were read so :meth:`check_unknown` can name the rest.
    """

    def __init__(
        self,
        instance: str,
        values: Mapping[str, Value] | None = None,
        sections: Mapping[str, Settings] | None = None,
        *,
        where: str = "<defaults>",
    ) -> None:
        self.instance = instance
        self.where = where
        self._values = dict(values or {})
        self._sections = dict(sections or {})
        self._used: set[str] = set()

    @classmethod
    def from_dict(cls, instance: str, values: Mapping[str, Any]) -> Settings:
        """Settings built in code (tests, the Python API)."""
        plain = {}
        sections = {}
        for key, value in values.items():
            if isinstance(value, Mapping):
                sections[key] = cls.from_dict(f"{instance}/{key}", value)
            elif isinstance(value, bool):
                plain[key] = Value("yes" if value else "no")
            else:
                plain[key] = Value(str(value))
        return cls(instance, plain, sections)

    # Mapping protocol over plain values
    def __getitem__(self, key: str) -> Value:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def sections(self) -> Mapping[str, Settings]:
        return self._sections

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError pointing at ``key``'s line (or at the instance block when unset)."""
        where = self._values[key].where if key in self._values else self.where
        return ConfigError(f"{where}: push_notification {self.instance}: setting '{key}': {message}")

    def _lookup(self, names: Iterable[str]) -> tuple[str, Value] | None:
        found = None
        for name in names:
            self._used.add(name)
            if found is None and name in self._values:
                found = (name, self._values[name])
        return found

    def get_str(
        self, key: str, default: str | None = None, *, aliases: Iterable[str] = (), required: bool = False
    ) -> str | None:
        """A string; ``aliases`` are older names (2.3's ``cache_lifetime`` for ``cache_ttl``)."""
        found = self._lookup((key, *aliases))
        if found is None or (required and found[1].text == ""):
            if required:
                raise self.error(key, f"is required; add '{key} = ...' to the block")
            return default
        return found[1].text

    def _typed(self, key: str, default: Any, aliases: Iterable[str], parse: Any) -> Any:
        found = self._lookup((key, *aliases))
        if found is None:
            return default
        name, value = found
        try:
            return parse(value.text)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def get_time(self, key: str, default: float, *, aliases: Iterable[str] = (), minimum: float = 0.0) -> float:
        """A duration in seconds (``10s``, ``2 mins``, ``500ms``; a bare number is seconds)."""
        seconds = self._typed(key, default, aliases, parse_time)
        if seconds < minimum:
            raise self.error(key, f"must be at least {minimum:g} seconds")
        return float(seconds)

    def get_msecs(self, key: str, default: float, *, aliases: Iterable[str] = ()) -> float:
        """A duration in seconds where a bare number means milliseconds (``timeout_msecs``)."""

        def parse(text: str) -> float:
            return parse_time(f"{text}ms") if text.strip().isdigit() else parse_time(text)

        return float(self._typed(key, default, aliases, parse))

    def get_int(self, key: str, default: int, *, aliases: Iterable[str] = (), minimum: int = 0) -> int:
        def parse(text: str) -> int:
            if _INTEGER.fullmatch(text.strip()) is None:
                raise ValueError(f"invalid number {text!r} (a whole number of at most 18 digits)")
            return int(text)

        number: int = self._typed(key, default, aliases, parse)
        if number < minimum:
            raise self.error(key, f"must be at least {minimum}")
        return number

    def get_size(self, key: str, default: int, *, aliases: Iterable[str] = ()) -> int:
        return int(self._typed(key, default, aliases, parse_size))

    def get_bool(self, key: str, default: bool, *, aliases: Iterable[str] = ()) -> bool:
        return bool(self._typed(key, default, aliases, parse_bool))

    def section(self, key: str) -> Settings | None:
        """A nested block such as ``lua_settings { ... }``."""
        self._used.add(key)
        return self._sections.get(key)

    def as_dict(self) -> dict[str, str]:
        """Every plain value as text (for passing settings on, e.g. to a Lua script)."""
        return {key: value.text for key, value in self._values.items()}

    def check_unknown(self) -> None:
        """Raise a ConfigError for the first key no getter asked for."""
        for key in [*self._values, *self._sections]:
            if key not in self._used:
                known = ", ".join(sorted(self._used)) or "none"
                raise self.error(key, f"unknown setting (this driver knows: {known})")
