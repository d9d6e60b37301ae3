"""One POST to a push service and what its answer means for the device and the transaction.

The queue does the retrying (429/5xx with ``Retry-After``, connection failures), so a worker
never sleeps on one push service while other users wait. 404/410 mean the subscription is
gone; 413 means the payload is too big for this service (no retry can fix it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit

import aiohttp

Verdict = Literal["delivered", "gone", "retry", "permanent"]


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    #: One line for logs and errors: never the endpoint's path (it is the subscription's secret).
    reason: str
    retry_after: float | None = None


def origin(url: str) -> str:
    """Scheme, host and port: the part of an endpoint that may be logged."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return "<unparsable endpoint>"


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def judge(status: int, reason: str, where: str, retry_header: str | None) -> Answer:
    """What an HTTP status from a push service means."""
    line = f"{where}: {status} {reason}".rstrip()
    if 200 <= status < 300:
        return Answer("delivered", line)
    if status in (404, 410):
        return Answer("gone", f"{line} (the subscription expired or was unsubscribed)")
    if status == 413:
        return Answer("permanent", f"{line}: the encrypted payload is too large for this push service")
    if status in (401, 403):
        return Answer("permanent", f"{line}: the push service refused the VAPID signature (vapid_key, vapid_subject)")
    if status in (408, 429) or status >= 500:
        return Answer("retry", line, retry_after(retry_header))
    return Answer("permanent", line)


async def post(session: aiohttp.ClientSession, endpoint: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST one encrypted message; network trouble is a retry."""
    where = origin(endpoint)
    try:
        async with session.post(endpoint, data=body, headers=headers, allow_redirects=False) as response:
            await response.read()
            return judge(response.status, response.reason or "", where, response.headers.get("Retry-After"))
    except TimeoutError:
        return Answer("retry", f"{where}: request timed out")
    except aiohttp.ClientError as exc:
        text = str(exc).replace(endpoint, where)
        return Answer("retry", f"{where}: {type(exc).__name__}: {text}")
