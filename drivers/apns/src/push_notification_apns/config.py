"""The ``apns`` instance settings, read once at start-up (one line per mistake, naming it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from push_notification.errors import PushNotificationError
from push_notification.http import HttpClientSettings, read_http_client_settings
from push_notification.settings import Settings

from .auth import ProviderToken, add_client_certificate, load_p8_key
from .device import ENVIRONMENTS

#: Apple's endpoints (``production_url``/``sandbox_url`` change them, e.g. for a proxy).
ENDPOINTS = {"production": "https://api.push.apple.com", "sandbox": "https://api.sandbox.push.apple.com"}
PUSH_TYPES = ("background", "alert")
#: A wake-up older than a day is no news (``apns-expiration`` = now + ttl).
DEFAULT_TTL = 86400.0


@dataclass(frozen=True)
class ApnsConfig:
    topic: str
    push_type: str
    environment: str
    endpoints: dict[str, str]
    ttl: int
    collapse: bool
    #: ``None`` with certificate authentication.
    token: ProviderToken | None
    #: Timeout, connections, and the TLS context holding any client certificate.
    http: HttpClientSettings


def _path(settings: Settings, key: str) -> Path:
    return Path(settings.get_str(key, required=True) or "").expanduser()


def _token(settings: Settings) -> ProviderToken:
    try:
        key = load_p8_key(_path(settings, "key_file"))
    except PushNotificationError as exc:
        raise settings.error("key_file", str(exc)) from None
    key_id = settings.get_str("key_id", required=True) or ""
    team_id = settings.get_str("team_id", required=True) or ""
    for name, value in (("key_id", key_id), ("team_id", team_id)):
        if len(value) != 10 or not value.isalnum():
            raise settings.error(name, "must be Apple's 10-character id (Certificates, Identifiers & Profiles)")
    return ProviderToken(key, key_id, team_id)


def read_config(settings: Settings) -> ApnsConfig:
    topic = settings.get_str("topic", required=True) or ""
    push_type = (settings.get_str("push_type", "background") or "").lower()
    if push_type not in PUSH_TYPES:
        raise settings.error("push_type", f"use {' or '.join(PUSH_TYPES)}")
    environment = (settings.get_str("environment", "production") or "").lower()
    if environment not in ENVIRONMENTS:
        raise settings.error("environment", f"use {' or '.join(ENVIRONMENTS)}")
    endpoints = {name: (settings.get_str(f"{name}_url", url) or url).rstrip("/") for name, url in ENDPOINTS.items()}
    for name, url in endpoints.items():
        if not url.startswith("https://"):
            raise settings.error(f"{name}_url", "APNs is HTTP/2 over TLS: use an https:// URL")
    http = read_http_client_settings(settings, default_max_parallel_connections=1)
    assert http.ssl_context is not None
    token_auth, certificate = "key_file" in settings, "certificate_file" in settings
    if token_auth and certificate:
        raise settings.error("key_file", "set key_file, key_id and team_id (token authentication) or certificate_file,"
                                         " not both")  # fmt: skip
    if not token_auth and not certificate:
        raise settings.error("key_file", "is required (with key_id and team_id), or certificate_file for certificate"
                                         " authentication")  # fmt: skip
    token = _token(settings) if token_auth else None
    if certificate:
        key_file = settings.get_str("certificate_key_file")
        try:
            add_client_certificate(http.ssl_context, _path(settings, "certificate_file"),
                                   Path(key_file).expanduser() if key_file else None)  # fmt: skip
        except PushNotificationError as exc:
            raise settings.error("certificate_file", str(exc)) from None
    return ApnsConfig(
        topic=topic,
        push_type=push_type,
        environment=environment,
        endpoints=endpoints,
        ttl=int(settings.get_time("ttl", DEFAULT_TTL)),
        collapse=settings.get_bool("collapse", True),
        token=token,
        http=http,
    )
