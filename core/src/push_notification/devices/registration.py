"""Registrations, whichever way they come (HTTP, CLI, IMAP METADATA), made into device fields.

Body of ``POST /v1/devices`` (and of the ``push-notification-device`` METADATA value)::

    {"user": "jane@example.com", "kind": "webpush", "label": "laptop",
     "subscription": {"endpoint": "https://...", "keys": {"p256dh": "...", "auth": "..."}}}

APNs and FCM registrations carry ``"token"`` instead of ``"subscription"``. Which kinds exist
is up to the configured drivers: each declares the kinds it serves and parses their fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from push_notification.devices.contract import DeviceError, DeviceFields, DeviceKind

#: Our METADATA key: a JSON registration as above, without ``user`` (the key's owner is the user).
DEVICE_METADATA_KEY = "/private/vendor/vendor.dovecot/push-device"
#: chatmail's key (Delta Chat sets it on any server): a bare token in the gateway's notation.
#: Clients set it on the INBOX mailbox (``SETMETADATA INBOX (/private/devicetoken ...)``); the
#: bridge forwards that value under this key, or the server METADATA of the same name if set.
CHATMAIL_METADATA_KEY = "/private/devicetoken"
METADATA_KEYS = (DEVICE_METADATA_KEY, CHATMAIL_METADATA_KEY)
#: Longest label kept (it is for people reading ``devices list``).
MAX_LABEL = 100


@dataclass(frozen=True, slots=True)
class Registration:
    user: str
    kind: str
    fields: DeviceFields
    label: str = ""


def _text(body: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise DeviceError(f"{key!r} must be a non-empty string")
    return value.strip()


def parse_registration(body: Any, kinds: Mapping[str, DeviceKind], *, user: str | None = None) -> Registration:
    """A registration from its JSON object; ``user`` given when the channel knows it (METADATA)."""
    if not isinstance(body, Mapping):
        raise DeviceError('a registration is a JSON object: {"user": ..., "kind": ..., "subscription" or "token": ...}')
    kind = _text(body, "kind").lower()
    parser = kinds.get(kind)
    if parser is None:
        served = ", ".join(sorted(kinds)) or "none: configure a driver that wakes devices, e.g. webpush"
        raise DeviceError(f"kind {kind!r} is not served by any configured driver (served: {served})")
    label = _text(body, "label", required=False)
    if len(label) > MAX_LABEL:
        raise DeviceError(f"'label' is longer than {MAX_LABEL} characters")
    return Registration(user or _text(body, "user"), kind, parser(body), label)


def parse_json_registration(
    text: str | bytes, kinds: Mapping[str, DeviceKind], *, user: str | None = None
) -> Registration:
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeviceError(f"the registration is not valid JSON: {exc}") from None
    return parse_registration(body, kinds, user=user)


def chatmail_registration(token: str) -> dict[str, Any]:
    """A chatmail gateway token as a registration body: ``fcm-PACKAGE:TOKEN`` (FCM),
    ``sandbox:TOKEN`` (APNs sandbox), ``webpush:ENDPOINT|P256DH|AUTH`` (Web Push), a bare
    token (APNs production)."""
    token = token.strip()
    if token.startswith("openpgp:"):
        raise DeviceError(
            "an openpgp: device token is encrypted for Delta Chat's own notification gateway and cannot wake"
            " a device from here; plain tokens can (webpush:, fcm-, sandbox:, APNs hex)"
        )
    if token.startswith("webpush:"):
        parts = token[len("webpush:") :].split("|")
        if len(parts) != 3:
            raise DeviceError("a webpush: device token is webpush:ENDPOINT|P256DH|AUTH")
        return {
            "kind": "webpush",
            "subscription": {"endpoint": parts[0], "keys": {"p256dh": parts[1], "auth": parts[2]}},
        }
    if token.startswith("fcm-") and ":" in token:
        package, _, rest = token[4:].partition(":")
        return {"kind": "fcm", "token": rest, "package": package}
    if token.startswith("sandbox:"):
        return {"kind": "apns", "token": token[len("sandbox:") :], "environment": "sandbox"}
    return {"kind": "apns", "token": token}


def metadata_registration(user: str, key: str, value: str, kinds: Mapping[str, DeviceKind]) -> Registration:
    """The device a METADATA value registers for ``user``."""
    if key == CHATMAIL_METADATA_KEY and not value.lstrip().startswith("{"):
        return parse_registration(chatmail_registration(value), kinds, user=user)
    return parse_json_registration(value, kinds, user=user)
