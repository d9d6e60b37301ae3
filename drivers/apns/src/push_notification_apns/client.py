"""The HTTP/2 leg to APNs: an httpx (h2) transport for the core's shared HTTP sender, one
connection per endpoint carrying every push as its own stream (Apple asks providers to keep
connections open, not to open one per push), and the policy that reads Apple's answers."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

import httpx
from push_notification.http import (
    Failure,
    HttpClientSettings,
    HttpRequest,
    HttpResponse,
    RetryPolicy,
    TransportError,
    safe_url,
)

#: httpx logs every request's URL at INFO, hpack every header at DEBUG, and an APNs request
#: carries the device token in its path and the provider token in a header: credentials the
#: daemon's log must never show, whatever its log_level.
for _name in ("httpx", "httpcore", "h2", "hpack"):
    logging.getLogger(_name).setLevel(logging.WARNING)

#: What to fix, for the reasons an admin can fix.
HINTS = MappingProxyType(
    {
        "InvalidProviderToken": "check key_file, key_id and team_id",
        "MissingProviderToken": "set key_file, key_id and team_id, or certificate_file",
        "BadCertificate": "certificate_file is not an APNs certificate",
        "BadCertificateEnvironment": "the certificate is for the other environment",
        "TopicDisallowed": "the key or certificate may not push to this topic",
        "BadTopic": "topic must be the app's bundle id",
        "MissingTopic": "set topic to the app's bundle id",
        "DeviceTokenNotForTopic": "the device belongs to another app than topic",
        "PayloadTooLarge": "shorten title_template/body_template",
        "TooManyProviderTokenUpdates": "another process renews tokens of this key too often",
    }
)


def apple_reason(response: HttpResponse | None) -> str:
    """Apple's ``reason`` (``Unregistered``, ``BadDeviceToken``...) of a refusal, or ``""``."""
    if response is None:
        return ""
    try:
        reason = json.loads(response.body).get("reason", "")
    except (ValueError, AttributeError):
        return ""
    return reason if isinstance(reason, str) else ""


class ApnsPolicy(RetryPolicy):
    """Apple's reason and what to do about it in every refusal; no attempt again in place:
    429 and 5xx go back to the queue, which skips the devices already reached."""

    def classify(self, response: HttpResponse) -> Failure | None:
        failure = super().classify(response)
        reason = apple_reason(response) if failure is not None else ""
        if failure is None or not reason:
            return failure
        hint = HINTS.get(reason)
        return replace(failure, what=f"{failure.what}: {reason}" + (f" ({hint})" if hint else ""))

    def next_wait(self, failure: Failure, attempt: int, max_attempts: int) -> float | None:
        return None


POLICY = ApnsPolicy()


class Http2Transport:
    """httpx with h2 (implements ``push_notification.http.Transport``)."""

    def __init__(self, settings: HttpClientSettings) -> None:
        assert settings.ssl_context is not None
        self._ssl_context = settings.ssl_context
        self._timeout = settings.request_timeout
        self._max_connections = settings.max_parallel_connections
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                http2=True,
                verify=self._ssl_context,
                timeout=httpx.Timeout(self._timeout),
                limits=httpx.Limits(max_connections=self._max_connections, keepalive_expiry=3600),
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def request(self, request: HttpRequest) -> HttpResponse:
        if self._client is None:
            await self.start()
        assert self._client is not None
        url = str(request.url)
        try:
            response = await self._client.request(request.method, url, headers=request.headers, content=request.body)
        except httpx.TimeoutException:
            raise TransportError("timeout", f"no answer within {self._timeout:g}s") from None
        except httpx.HTTPError as exc:
            kind = "lost"
            if isinstance(exc, httpx.ConnectError):
                kind = "certificate" if isinstance(exc.__context__, ssl.SSLCertVerificationError) else "connect"
            cause = str(exc).replace(url, safe_url(url)) or type(exc).__name__
            raise TransportError(kind, f"{type(exc).__name__}: {cause}") from None
        headers: Mapping[str, str] = response.headers
        return HttpResponse(response.status_code, response.reason_phrase, headers, response.content)
