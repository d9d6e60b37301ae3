"""VAPID keys (RFC 8292): the P-256 key a Web Push sender signs with, in a PEM file.

``push-notification devices vapid-key PATH`` creates one and prints its public key, base64url
as a web app passes it to ``pushManager.subscribe({applicationServerKey})``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from push_notification.errors import PushNotificationError


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decode base64url, with or without padding (browsers send it without)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The uncompressed public point, base64url: the ``applicationServerKey``."""
    return b64url(
        key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def create_vapid_key(path: Path, *, replace: bool = False) -> str:
    """Write a new key to ``path`` (mode 0600); its public key."""
    if path.exists() and not replace:
        raise PushNotificationError(
            f"{path} exists; every browser subscription is bound to its key: use --force to replace it anyway"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
    except OSError as exc:
        raise PushNotificationError(f"cannot write the VAPID key {path}: {exc.strerror or exc}") from None
    return public_key_b64(key)


def load_vapid_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The key in ``path``; a clear line if it is missing, unreadable or not a P-256 key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PushNotificationError(
            f"cannot read the VAPID key {path}: {exc.strerror or exc}; create one with"
            " push-notification devices vapid-key PATH"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise PushNotificationError(
            f"{path} is not an unencrypted PEM private key (make one with devices vapid-key)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PushNotificationError(f"{path} is not a P-256 (prime256v1) key, which VAPID requires")
    return key
