"""VAPID (RFC 8292): the signed JWT that tells a push service who sends.

One JWT per push service origin, signed with py-vapid and reused until shortly before it
expires: signing costs an ECDSA signature, and push services accept a token for up to 24 h.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException

#: How long a token is valid (RFC 8292 caps it at 24 h; 12 h leaves room for clock skew).
TOKEN_LIFETIME = 12 * 3600
#: A token is replaced this long before it expires.
RENEW_BEFORE = 3600


class VapidSigner:
    def __init__(self, key: ec.EllipticCurvePrivateKey, subject: str) -> None:
        self._vapid = Vapid02(private_key=key)
        self.subject = subject
        self._tokens: dict[str, tuple[str, float]] = {}

    def check(self) -> str | None:
        """Why py-vapid would refuse to sign with this subject, or None (asked at start-up, so a
        bad ``vapid_subject`` is a config error and not a failure of every push)."""
        try:
            self._vapid.sign({"aud": "https://push.example.net", "exp": int(time.time()) + 60, "sub": self.subject})
        except VapidException:
            return "must be mailto:ADDRESS or https://HOST (no path), as RFC 8292 and py-vapid require"
        return None

    def authorization(self, endpoint: str, now: float | None = None) -> str:
        """The ``Authorization: vapid t=...,k=...`` value for a push to ``endpoint``."""
        now = time.time() if now is None else now
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        cached = self._tokens.get(audience)
        if cached is not None and cached[1] - RENEW_BEFORE > now:
            return cached[0]
        expires = int(now) + TOKEN_LIFETIME
        headers = self._vapid.sign({"aud": audience, "exp": expires, "sub": self.subject})
        value = str(headers["Authorization"])
        self._tokens[audience] = (value, expires)
        return value
