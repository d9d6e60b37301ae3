"""One Web Push message: the payload encrypted for one subscription (RFC 8291, ``aes128gcm``)."""

from __future__ import annotations

import os

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from push_notification.devices.vapid import b64url_decode
from push_notification.drivers import PushDevice

#: RFC 8030 Urgency values, least urgent first.
URGENCIES = ("very-low", "low", "normal", "high")


def encrypt(payload: bytes, device: PushDevice) -> bytes:
    """``payload`` encrypted for the device's ``p256dh`` and ``auth`` with a fresh sender key."""
    return bytes(
        http_ece.encrypt(
            payload,
            salt=os.urandom(16),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            dh=b64url_decode(device.keys["p256dh"]),
            auth_secret=b64url_decode(device.keys["auth"]),
            version="aes128gcm",
        )
    )
