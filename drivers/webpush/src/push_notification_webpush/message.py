"""One Web Push message: the payload encrypted for one subscription (RFC 8291, ``aes128gcm``)
and the RFC 8030 headers that go with it."""

from __future__ import annotations

import hashlib
import os

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from push_notification.devices.vapid import b64url, b64url_decode
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


def topic(user: str, mailbox: str) -> str:
    """RFC 8030 ``Topic``: at most 32 base64url characters; one pending push per user and
    mailbox replaces the previous one at the push service."""
    return b64url(hashlib.sha256(f"{user}\0{mailbox}".encode()).digest())[:32]
