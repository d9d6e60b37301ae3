"""The ``webpush`` device kind: a W3C PushSubscription, checked before it is stored.

``{"endpoint": "https://...", "keys": {"p256dh": "<65-byte P-256 point>", "auth": "<16 bytes>"}}``,
both keys base64url as ``PushSubscription.toJSON()`` gives them. UnifiedPush distributors hand
apps the same three values.
"""

from __future__ import annotations

import binascii
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from push_notification.devices import DeviceError, DeviceFields
from push_notification.devices.vapid import b64url_decode

EXAMPLE = '{"endpoint": "https://...", "keys": {"p256dh": "...", "auth": "..."}}'


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key(keys: Mapping[str, Any], name: str, size: int) -> str:
    value = keys.get(name)
    if not isinstance(value, str) or not value:
        raise DeviceError(f"subscription keys.{name} is missing (a PushSubscription is {EXAMPLE})")
    try:
        raw = b64url_decode(value.strip())
    except (binascii.Error, ValueError):
        raise DeviceError(f"subscription keys.{name} is not base64url") from None
    if len(raw) != size or (name == "p256dh" and raw[0] != 4):
        what = "an uncompressed P-256 point" if name == "p256dh" else f"{size} bytes"
        raise DeviceError(f"subscription keys.{name} must be {what} (got {len(raw)} bytes)")
    return value.strip()


def parse_subscription(registration: Mapping[str, Any]) -> DeviceFields:
    """The device fields of a ``webpush`` registration, or a one-line DeviceError."""
    subscription = registration.get("subscription")
    if not isinstance(subscription, Mapping):
        raise DeviceError(f"a webpush registration needs 'subscription': {EXAMPLE}")
    endpoint = subscription.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise DeviceError(f"subscription.endpoint is missing (a PushSubscription is {EXAMPLE})")
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
    except ValueError:
        raise DeviceError("subscription.endpoint is not a URL") from None
    if not host or parts.scheme not in ("https", "http") or (parts.scheme == "http" and not _loopback(host)):
        raise DeviceError("subscription.endpoint must be an https:// URL (http:// only on loopback)")
    keys = subscription.get("keys")
    if not isinstance(keys, Mapping):
        raise DeviceError(f"subscription.keys is missing (a PushSubscription is {EXAMPLE})")
    return DeviceFields(endpoint, {"p256dh": _key(keys, "p256dh", 65), "auth": _key(keys, "auth", 16)})
