"""How the daemon proves to APNs who it is: a provider token (an ES256 JWT signed with the
team's ``.p8`` key) or a client certificate.

Apple refuses a token older than an hour (``403 ExpiredProviderToken``) and one renewed more
often than every 20 minutes (``TooManyProviderTokenUpdates``), so a token is kept for 50
minutes, and made anew at once when APNs says it expired (clocks drift, daemons sleep).
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from push_notification.errors import PushNotificationError

#: A token is renewed after this many seconds (Apple: between 20 and 60 minutes).
TOKEN_LIFETIME = 50 * 60


def load_p8_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The ``AuthKey_KEYID.p8`` Apple gives; one line if missing, unreadable or the wrong key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PushNotificationError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise PushNotificationError(
            f"{path} is not an unencrypted PEM private key (use the AuthKey_KEYID.p8 file Apple gave you)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__.removeprefix("_")
        raise PushNotificationError(f"{path} is not a P-256 key ({kind.replace('PrivateKey', '')}); APNs needs"
                                    " the P-256 (ES256) .p8 key from Apple")  # fmt: skip
    return key


class ProviderToken:
    """The ``authorization: bearer <JWT>`` value, renewed every :data:`TOKEN_LIFETIME`."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str) -> None:
        self._key = key
        self.key_id = key_id
        self.team_id = team_id
        self._value = ""
        self._issued = 0.0
        #: Tokens made since start (a figure for tests and logs: renewals are rare).
        self.issued = 0

    def authorization(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if not self._value or now - self._issued >= TOKEN_LIFETIME:
            token = jwt.encode({"iss": self.team_id, "iat": int(now)}, self._key, "ES256", {"kid": self.key_id})
            self._value, self._issued = f"bearer {token}", now
            self.issued += 1
        return self._value

    def expired(self, value: str) -> None:
        """APNs refused ``value`` as expired: the next push gets a new token (unless another
        push renewed it meanwhile)."""
        if value == self._value:
            self._value = ""


def add_client_certificate(context: ssl.SSLContext, certificate: Path, key: Path | None) -> None:
    """Present the APNs certificate (PEM: certificate and key, or the key in ``key``)."""
    try:
        context.load_cert_chain(str(certificate), str(key) if key else None)
    except FileNotFoundError as exc:
        raise PushNotificationError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PushNotificationError(
            f"cannot load the certificate and key from {certificate}: {reason} (convert Apple's .p12 with"
            " openssl pkcs12 -nodes -legacy -in cert.p12 -out cert.pem)"
        ) from None
