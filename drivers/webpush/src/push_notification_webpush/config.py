"""The ``webpush`` instance settings, read once at start-up (one line per mistake)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from push_notification.devices.vapid import load_vapid_key, public_key_b64
from push_notification.errors import PushNotificationError
from push_notification.http import HttpClientSettings, read_http_client_settings
from push_notification.settings import Settings

from .message import URGENCIES
from .vapid import VapidSigner

#: A wake-up older than a day is no news (RFC 8030 TTL, seconds).
DEFAULT_TTL = 86400.0


@dataclass(frozen=True)
class WebPushConfig:
    signer: VapidSigner
    public_key: str
    ttl: int
    urgency: str
    topic: bool
    http: HttpClientSettings


def read_config(settings: Settings) -> WebPushConfig:
    path = settings.get_str("vapid_key", required=True) or ""
    try:
        key = load_vapid_key(Path(path).expanduser())
    except PushNotificationError as exc:
        raise settings.error("vapid_key", str(exc)) from None
    subject = settings.get_str("vapid_subject", required=True) or ""
    signer = VapidSigner(key, subject)
    if (problem := signer.check()) is not None:
        raise settings.error("vapid_subject", problem)
    urgency = (settings.get_str("urgency", "normal") or "normal").lower()
    if urgency not in URGENCIES:
        raise settings.error("urgency", f"use one of {', '.join(URGENCIES)}")
    return WebPushConfig(
        signer=signer,
        public_key=public_key_b64(key),
        ttl=int(settings.get_time("ttl", DEFAULT_TTL)),
        urgency=urgency,
        topic=settings.get_bool("topic", True),
        http=read_http_client_settings(settings, default_max_parallel_connections=16),
    )
