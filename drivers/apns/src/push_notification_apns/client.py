"""The HTTP/2 connection to APNs: httpx with h2, one connection per endpoint carrying every
push as its own stream (Apple asks providers to keep connections open, not to open one per
push). Answers are read, not judged: the driver decides what Apple's reason means."""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass

import httpx
from push_notification.errors import RetryableError
from push_notification.http_retry import parse_retry_after

#: httpx logs every request's URL at INFO, hpack every header at DEBUG, and an APNs request
#: carries the device token in its path and the provider token in a header: credentials the
#: daemon's log must never show, whatever its log_level.
for _name in ("httpx", "httpcore", "h2", "hpack"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class ApnsAnswer:
    status: int
    #: Apple's ``reason`` (``Unregistered``, ``BadDeviceToken``...); empty on success.
    reason: str
    apns_id: str
    retry_after: float | None = None


def _reason(body: bytes) -> str:
    try:
        reason = json.loads(body).get("reason", "")
    except (ValueError, AttributeError):
        return ""
    return reason if isinstance(reason, str) else ""


class ApnsClient:
    """``start`` and ``close`` bracket the connection pool; ``post`` sends one push."""

    def __init__(self, ssl_context: ssl.SSLContext, timeout: float, max_connections: int) -> None:
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._max_connections = max_connections
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

    async def post(self, url: str, headers: dict[str, str], body: bytes, label: str) -> ApnsAnswer:
        """Apple's answer; a request that got none is a RetryableError naming ``label`` (never
        the URL: it holds the device token)."""
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            response = await self._client.post(url, headers=headers, content=body)
        except httpx.TimeoutException:
            raise RetryableError(f"{label}: no answer within {self._timeout:g}s") from None
        except httpx.HTTPError as exc:
            cause = str(exc).replace(url, "<APNs>") or type(exc).__name__
            raise RetryableError(f"{label}: {type(exc).__name__}: {cause}") from None
        return ApnsAnswer(
            status=response.status_code,
            reason=_reason(response.content) if response.status_code != 200 else "",
            apns_id=response.headers.get("apns-id", ""),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
