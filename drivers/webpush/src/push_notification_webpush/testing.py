"""A loopback Web Push service for tests and benchmarks, speaking the real protocol.

Like a browser vendor's push service it checks each message's VAPID JWT (ES256 signature
against the ``k`` key, ``aud`` = the endpoint's origin, ``exp`` in the next 24 h, ``sub`` a
mailto:/https: URL) and the RFC 8030 headers; like the browser it decrypts the message
(RFC 8291) with the subscriber's private key, so a test asserts the plaintext. Answers can be
scripted per subscription (410, 429 with Retry-After...). Binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from push_notification.devices.vapid import b64url, b64url_decode
from push_notification.testing.loopback import loopback_server


@dataclass
class Subscriber:
    """A browser's side of one subscription."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    #: Scripted answers, used before the default 201: (status, headers).
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)

    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the web app."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }


@dataclass(frozen=True)
class Received:
    subscriber: str
    plaintext: bytes
    headers: dict[str, str]
    claims: dict[str, Any]

    def json(self) -> Any:
        return json.loads(self.plaintext)


class VapidRejected(Exception):
    pass


def verify_vapid(authorization: str, endpoint: str, expected_key: str | None, now: float) -> dict[str, Any]:
    """The JWT claims, or VapidRejected saying what is wrong."""
    if not authorization.startswith("vapid "):
        raise VapidRejected("Authorization is not the vapid scheme")
    params = dict(part.strip().split("=", 1) for part in authorization[6:].split(","))
    token, key = params.get("t", ""), params.get("k", "")
    if expected_key is not None and key != expected_key:
        raise VapidRejected("k is not the application server key the subscription was made with")
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        signature = b64url_decode(signature_b64)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        header = json.loads(b64url_decode(header_b64))
        claims: dict[str, Any] = json.loads(b64url_decode(claims_b64))
    except (ValueError, InvalidSignature) as exc:
        raise VapidRejected(f"bad JWT: {type(exc).__name__}") from None
    if header.get("alg") != "ES256":
        raise VapidRejected("JWT alg is not ES256")
    origin = endpoint.split("/", 3)
    if claims.get("aud") != f"{origin[0]}//{origin[2]}":
        raise VapidRejected(f"aud {claims.get('aud')!r} is not the push service's origin")
    exp = claims.get("exp")
    if not isinstance(exp, int) or not now < exp <= now + 86400:
        raise VapidRejected("exp is not within the next 24 hours")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
        raise VapidRejected("sub is not a mailto: or https: URL")
    return claims


class LoopbackPushService:
    """``async with LoopbackPushService() as service:`` then ``service.subscribe()``."""

    def __init__(self, application_server_key: str | None = None) -> None:
        #: When set, every message must be signed with this VAPID key (as browsers enforce).
        self.application_server_key = application_server_key
        self.subscribers: dict[str, Subscriber] = {}
        self.received: list[Received] = []
        #: Requests refused (VAPID, headers, decryption), as one line each.
        self.rejected: list[str] = []
        self._arrived = asyncio.Condition()
        self._server = AsyncExitStack()
        self.origin = ""

    async def __aenter__(self) -> LoopbackPushService:
        self.origin = await self._server.enter_async_context(loopback_server(self._push))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.aclose()

    def subscribe(self, *, unifiedpush: bool = False) -> Subscriber:
        """A new subscription; ``unifiedpush`` gives it an ntfy-style UnifiedPush endpoint."""
        sid = b64url(os.urandom(12))
        endpoint = f"{self.origin}/up{sid}?up=1" if unifiedpush else f"{self.origin}/push/{sid}"
        subscriber = Subscriber(sid, endpoint, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        self.subscribers[sid] = subscriber
        return subscriber

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` messages arrived in all; all of them."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.received) >= count), timeout)
        return list(self.received)

    async def _push(self, request: web.Request) -> web.Response:
        """``POST /push/ID``, or an ntfy-style UnifiedPush endpoint ``POST /upID?up=1``."""
        path = request.path
        sid = next((path[len(prefix) :] for prefix in ("/push/", "/up") if path.startswith(prefix)), "")
        subscriber = self.subscribers.get(sid) if request.method == "POST" else None
        if subscriber is None:
            return web.Response(status=404, text="no such subscription")
        body = await request.read()
        headers = dict(request.headers)
        try:
            claims = verify_vapid(
                headers.get("Authorization", ""), subscriber.endpoint, self.application_server_key, time.time()
            )
            if headers.get("Content-Encoding") != "aes128gcm":
                raise VapidRejected("Content-Encoding is not aes128gcm")
            if not headers.get("TTL", "").isdigit():
                raise VapidRejected("TTL header missing")
            plaintext = http_ece.decrypt(
                body, private_key=subscriber.private_key, auth_secret=subscriber.auth, version="aes128gcm"
            )
        except (VapidRejected, ValueError, http_ece.ECEException) as exc:
            self.rejected.append(str(exc))
            return web.Response(status=403 if isinstance(exc, VapidRejected) else 400, text=str(exc))
        if subscriber.answers:
            status, extra = subscriber.answers.popleft()
            if status >= 300:
                return web.Response(status=status, headers=extra)
        async with self._arrived:
            self.received.append(Received(subscriber.id, bytes(plaintext), headers, claims))
            self._arrived.notify_all()
        return web.Response(status=201, headers={"Location": f"{self.origin}/message/{len(self.received)}"})
