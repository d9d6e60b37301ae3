"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Each request carries ``webhook-id`` (stable across retries, so receivers can de-duplicate),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``: ``v1,`` and
the base64 HMAC-SHA256 of ``id.timestamp.body`` under the secret. Several secrets sign
together (space-separated signatures) so a receiver can rotate its secret without a gap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
#: The spec asks for secrets of 24 to 64 random bytes.
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
GENERATE = "python3 -c \"import base64,os; print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""


class SecretError(ValueError):
    """A secret that is not ``whsec_`` + base64 of 24-64 bytes (the message never shows it)."""


def decode_secret(secret: str, position: int) -> bytes:
    """The key bytes of ``whsec_<base64>``; ``position`` (1-based) names it in errors."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError(f"secret {position} must start with {SECRET_PREFIX!r} (generate one with: {GENERATE})")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"secret {position}: the part after {SECRET_PREFIX!r} is not valid base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise SecretError(
            f"secret {position} decodes to {len(key)} bytes; use {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes"
        )
    return key


class Signer:
    """Signs request bodies with one or more secrets."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._keys = [decode_secret(secret, i) for i, secret in enumerate(secrets, 1)]
        if not self._keys:
            raise SecretError("no secret given")

    def signature(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
        return " ".join(
            "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in self._keys
        )

    def headers(self, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(webhook_id, timestamp, body),
        }
