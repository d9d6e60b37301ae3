"""The OX driver's settings, read and checked once at start-up.

Every mistake here is a one-line ``ConfigError`` naming the instance and the setting, so
nothing about the configuration can first go wrong at a delivery. Names are Dovecot 2.4's
(``http_client_request_timeout``...); 2.3's ``cache_lifetime``, ``timeout_msecs`` and
``max_retries`` are accepted too.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass

from push_notification.http import read_http_client_settings
from push_notification.settings import Settings, mask_url, parse_bool
from yarl import URL

DEFAULT_CACHE_TTL = 60.0


@dataclass(frozen=True, slots=True)
class OxConfig:
    """Everything the driver needs, already validated."""

    #: The URL requested: the configured one without user and password.
    request_url: URL
    #: The configured URL with the password masked, for every log line and error.
    display_url: str
    #: ``Basic ...`` when the URL has both a user and a password, else ``None``.
    authorization: str | None
    cache_ttl: float
    user_from_metadata: bool
    request_timeout: float
    max_attempts: int
    max_parallel_connections: int
    #: ``None`` for plain HTTP.
    ssl_context: ssl.SSLContext | None


def read_config(settings: Settings) -> OxConfig:
    """Read and check every setting; raises ``ConfigError`` on the first mistake."""
    request_url, display_url, authorization = _read_url(settings)
    http = read_http_client_settings(settings, https=request_url.scheme == "https")
    config = OxConfig(
        request_url=request_url,
        display_url=display_url,
        authorization=authorization,
        cache_ttl=_read_cache_ttl(settings),
        user_from_metadata=_read_user_from_metadata(settings),
        request_timeout=http.request_timeout,
        max_attempts=http.max_attempts,
        max_parallel_connections=http.max_parallel_connections,
        ssl_context=http.ssl_context,
    )
    settings.check_unknown()
    return config


def _read_url(settings: Settings) -> tuple[URL, str, str | None]:
    text = settings.get_str("url", required=True)
    assert text is not None  # required=True raised otherwise
    shown = mask_url(text)
    try:
        url = URL(text.strip())
        host = url.host
        url.port  # noqa: B018 - yarl checks the port lazily
    except (ValueError, TypeError) as exc:
        raise settings.error("url", f"cannot parse {shown!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not host:
        raise settings.error(
            "url",
            f"{shown!r} is not an http:// or https:// URL with a host"
            " (e.g. http://login:pass@ox.example.com:8009/preliminary/http-notify/v1/notify)",
        )
    authorization = None
    # As Dovecot: Basic auth only when the URL carries both a user and a password.
    if url.user and url.password is not None:
        token = base64.b64encode(f"{url.user}:{url.password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    return url.with_user(None), shown, authorization


def _read_cache_ttl(settings: Settings) -> float:
    # Deliberate difference from Dovecot 2.4.x, which parses ox_cache_ttl as milliseconds
    # but compares it with seconds (so "60s" caches for ~16.7 hours): here it is seconds.
    ttl = settings.get_time("cache_ttl", DEFAULT_CACHE_TTL, aliases=("cache_lifetime",))
    if ttl <= 0:
        name = "cache_ttl" if "cache_ttl" in settings else "cache_lifetime"
        raise settings.error(name, "must be greater than 0 (e.g. 60s)")
    return ttl


def _read_user_from_metadata(settings: Settings) -> bool:
    text = settings.get_str("user_from_metadata")
    if text is None:
        return False
    # 2.3's bare "user_from_metadata" (empty value) means on. Deliberate difference:
    # Dovecot 2.3 tests only for presence, so "user_from_metadata=no" turned it ON;
    # here an explicit "no" means off.
    if text.strip() == "":
        return True
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise settings.error("user_from_metadata", str(exc)) from None
