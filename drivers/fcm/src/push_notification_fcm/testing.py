"""A loopback FCM for tests and benchmarks, speaking the real protocol (aiohttp, 127.0.0.1).

Like Google it has an OAuth2 token endpoint that checks the service account's assertion (an
RS256 JWT: signature against the account's key, ``kid``, ``iss``, ``aud``, ``scope``, an hour
at most) and hands out access tokens, and an HTTP v1 ``messages:send`` endpoint that checks
the bearer token, the project and the message, answering in FCM's error format. Answers can
be scripted per device (404 UNREGISTERED, 429 with Retry-After...), and ``expire_tokens()``
makes every access token handed out so far invalid. Needs the ``[test]`` extra (pyjwt).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .credentials import GRANT_TYPE, SCOPE

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip
#: What FCM says with its error codes.
MESSAGES = {"UNREGISTERED": "Requested entity was not found.", "QUOTA_EXCEEDED": "Quota exceeded for quota metric.",
            "UNAVAILABLE": "The service is currently unavailable.", "INTERNAL": "Internal error encountered.",
            "INVALID_ARGUMENT": "Request contains an invalid argument."}  # fmt: skip
TTL = re.compile(r"\d+(\.\d{1,9})?s")


@dataclass
class FakeDevice:
    """An Android app's side: its registration token and scripted answers (before the 200)."""

    token: str
    #: (status, FCM error code, extra headers), used first to last.
    answers: deque[tuple[int, str, dict[str, str]]] = field(default_factory=deque)


@dataclass(frozen=True)
class FcmMessage:
    token: str
    message: dict[str, Any]
    #: The access token it came with.
    authorization: str


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> web.Response:
        detail = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": self.code}
        status = STATUS_NAMES.get(self.status, "UNKNOWN")
        error = {"code": self.status, "message": self.message, "status": status, "details": [detail]}
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


class LoopbackFcm:
    """``async with LoopbackFcm(project_id="p") as fcm:`` then ``fcm.service_account(path)``."""

    def __init__(self, project_id: str = "mail-push-test", token_lifetime: int = 3600, port: int = 0) -> None:
        self.port = port
        self.project_id = project_id
        self.token_lifetime = token_lifetime
        self.client_email = f"push@{project_id}.iam.gserviceaccount.com"
        self.key_id = secrets.token_hex(20)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.devices: dict[str, FakeDevice] = {}
        self.received: list[FcmMessage] = []
        #: Requests refused by the checks (not scripted answers), one line each.
        self.rejected: list[str] = []
        #: Access token → expiry (epoch seconds).
        self.access_tokens: dict[str, float] = {}
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> LoopbackFcm:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def service_account(self, path: Path) -> Path:
        """The key file the Firebase console would give, its ``token_uri`` pointing here."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()  # fmt: skip
        info = {"type": "service_account", "project_id": self.project_id, "private_key_id": self.key_id,
                "private_key": pem, "client_email": self.client_email, "client_id": "1",
                "token_uri": f"{self.url}/token"}  # fmt: skip
        path.write_text(json.dumps(info))
        return path

    def device(self, token: str | None = None) -> FakeDevice:
        """A device FCM knows (a fresh random registration token unless ``token`` is given)."""
        device = FakeDevice(token or f"{secrets.token_urlsafe(16)}:APA91b{secrets.token_urlsafe(100)}")
        self.devices[device.token] = device
        return device

    def expire_tokens(self) -> None:
        """Every access token handed out so far is now expired."""
        self.access_tokens = dict.fromkeys(self.access_tokens, 0.0)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[FcmMessage]:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.received) >= count), timeout)
        return list(self.received)

    # -- OAuth2 ------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            if form.get("grant_type") != GRANT_TYPE:
                raise ValueError("unsupported grant_type")
            assertion = str(form.get("assertion", ""))
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, self._key.public_key(), algorithms=["RS256"], audience=f"{self.url}/token")
            if header.get("kid") != self.key_id or claims.get("iss") != self.client_email:
                raise ValueError("the assertion is not from this service account")
            if SCOPE not in str(claims.get("scope", "")).split():
                raise ValueError("the assertion does not ask for the firebase.messaging scope")
            if not 0 < claims["exp"] - claims["iat"] <= 3600 or abs(claims["iat"] - time.time()) > 300:
                raise ValueError("the assertion's iat/exp are not within an hour of now")
        except (ValueError, KeyError, jwt.PyJWTError) as exc:
            self.rejected.append(f"token: {exc}")
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        token = f"ya29.{secrets.token_urlsafe(32)}"
        self.access_tokens[token] = time.time() + self.token_lifetime
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    # -- messages:send -----------------------------------------------------------------

    def _check(self, request: web.Request, body: bytes) -> FcmMessage:
        authorization = request.headers.get("Authorization", "")
        expires = self.access_tokens.get(authorization.removeprefix("Bearer "))
        if not authorization.startswith("Bearer ") or expires is None or expires < time.time():
            raise Refused(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if request.match_info["project"] != self.project_id:
            raise Refused(403, "SENDER_ID_MISMATCH", "Permission denied for this project.")
        try:
            message = json.loads(body)["message"]
            token, data, android = message["token"], message.get("data", {}), message.get("android", {})
        except (ValueError, KeyError, TypeError):
            raise Refused(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
        if not all(isinstance(v, str) for v in data.values()):
            raise Refused(400, "INVALID_ARGUMENT", "Invalid value at 'message.data': values must be strings")
        if not TTL.fullmatch(str(android.get("ttl", "0s"))) or android.get("priority", "normal") not in (
            "normal",
            "high",
        ):
            raise Refused(400, "INVALID_ARGUMENT", "Invalid value at 'message.android'")
        if token not in self.devices:
            raise Refused(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token")
        return FcmMessage(token, message, authorization)

    async def _send(self, request: web.Request) -> web.Response:
        try:
            received = self._check(request, await request.read())
        except Refused as refused:
            if refused.status != 401:
                self.rejected.append(str(refused))
            return refused.response()
        device = self.devices[received.token]
        if device.answers:
            status, code, headers = device.answers.popleft()
            if status != 200:
                return Refused(status, code, MESSAGES.get(code, code), headers).response()
        async with self._arrived:
            self.received.append(received)
            self._arrived.notify_all()
        return web.json_response({"name": f"projects/{self.project_id}/messages/{os.urandom(8).hex()}"})
