"""OAuth2 for FCM from a service-account JSON: google-auth signs the RS256 assertion, the
core's HTTP sender trades it at the account's ``token_uri`` for an access token, which is kept
until five minutes before it expires (an hour, as Google issues them) and renewed at once when
FCM says it is no longer valid."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from google.auth import crypt, jwt
from push_notification.errors import PermanentError, PushNotificationError
from push_notification.http import HttpRequest, HttpSender

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: A token is renewed this long before Google says it expires.
RENEW_BEFORE = 300.0
#: Lifetime asked for in the assertion (Google's maximum).
ASSERTION_LIFETIME = 3600


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    project_id: str
    token_uri: str
    signer: crypt.Signer


def load_service_account(path: Path) -> ServiceAccount:
    """The key file from the Firebase console; one line if it is not a usable service account."""
    try:
        info: Any = json.loads(path.read_text())
    except OSError as exc:
        raise PushNotificationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise PushNotificationError(f"{path} is not JSON (download the service account key as JSON)") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise PushNotificationError(f'{path} is not a service account key (its "type" must be "service_account")')
    for field in ("client_email", "private_key", "token_uri"):
        if not isinstance(info.get(field), str) or not info[field]:
            raise PushNotificationError(f'{path} has no "{field}": download a new key from the Firebase console')
    try:
        signer = crypt.RSASigner.from_service_account_info(info)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, IndexError):
        raise PushNotificationError(f'{path}: "private_key" is not an RSA private key in PEM') from None
    return ServiceAccount(info["client_email"], str(info.get("project_id") or ""), info["token_uri"], signer)


class AccessTokens:
    """The ``Authorization: Bearer`` value for FCM, fetched once for all concurrent pushes."""

    def __init__(self, account: ServiceAccount, sender: HttpSender) -> None:
        self.account = account
        self.sender = sender
        self._value = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()
        #: Tokens fetched since start.
        self.fetched = 0

    async def authorization(self) -> str:
        if self._value and time.time() < self._expires - RENEW_BEFORE:
            return self._value
        async with self._lock:
            if not self._value or time.time() >= self._expires - RENEW_BEFORE:
                await self._fetch()
        return self._value

    def expired(self, value: str) -> None:
        """FCM refused ``value``: the next push fetches a new token (unless one was meanwhile)."""
        if value == self._value:
            self._value = ""

    async def _fetch(self) -> None:
        account = self.account
        now = int(time.time())
        claims = {"iss": account.client_email, "scope": SCOPE, "aud": account.token_uri, "iat": now,
                  "exp": now + ASSERTION_LIFETIME}  # fmt: skip
        assertion = jwt.encode(account.signer, claims).decode()  # type: ignore[no-untyped-call]
        body = urlencode({"grant_type": GRANT_TYPE, "assertion": assertion}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        label = f"OAuth2 token for {account.client_email}"
        response = await self.sender.send(HttpRequest("POST", account.token_uri, body, headers, label))
        try:
            answer = json.loads(response.body)
            token, lifetime = str(answer["access_token"]), float(answer.get("expires_in", ASSERTION_LIFETIME))
        except (ValueError, KeyError, TypeError):
            raise PermanentError(f"{label}: the token endpoint's answer has no access_token") from None
        self._value, self._expires = f"Bearer {token}", now + lifetime
        self.fetched += 1
