"""The ``fcm`` instance settings, read once at start-up (one line per mistake, naming it)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from push_notification.errors import PushNotificationError
from push_notification.http import HttpClientSettings, read_http_client_settings
from push_notification.settings import Settings

from .credentials import ServiceAccount, load_service_account
from .message import PUSH_TYPES

#: FCM's endpoint (``url`` changes it, e.g. for a proxy).
FCM_URL = "https://fcm.googleapis.com"
#: A wake-up older than a day is no news (``android.ttl``).
DEFAULT_TTL = 86400.0


@dataclass(frozen=True)
class FcmConfig:
    account: ServiceAccount
    send_url: str
    push_type: str
    ttl: int
    collapse: bool
    http: HttpClientSettings


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_config(settings: Settings) -> FcmConfig:
    path = Path(settings.get_str("service_account", required=True) or "").expanduser()
    try:
        account = load_service_account(path)
    except PushNotificationError as exc:
        raise settings.error("service_account", str(exc)) from None
    project = settings.get_str("project_id") or account.project_id
    if not project:
        raise settings.error("project_id", "is required: the service account names no project_id")
    push_type = (settings.get_str("push_type", "data") or "").lower()
    if push_type not in PUSH_TYPES:
        raise settings.error("push_type", f"use {' or '.join(PUSH_TYPES)}")
    url = (settings.get_str("url", FCM_URL) or FCM_URL).rstrip("/")
    if not url.startswith("https://") and not (url.startswith("http://") and _loopback(url)):
        raise settings.error("url", "use an https:// URL (http:// only on loopback)")
    return FcmConfig(
        account=account,
        send_url=f"{url}/v1/projects/{project}/messages:send",
        push_type=push_type,
        ttl=int(settings.get_time("ttl", DEFAULT_TTL)),
        collapse=settings.get_bool("collapse", True),
        http=read_http_client_settings(settings, default_max_parallel_connections=16),
    )
