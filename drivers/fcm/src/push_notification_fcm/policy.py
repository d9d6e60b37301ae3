"""How the shared HTTP sender treats FCM's (and Google's token endpoint's) answers: 429 and
5xx are retried, a ``Retry-After`` waited for by the queue, never by a worker; errors name
FCM's error code and message (``404 Not Found: UNREGISTERED: Requested entity was not found.``).
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from push_notification.http_retry import RetryPolicy

HINTS = MappingProxyType(
    {
        401: "the access token was refused: check service_account",
        403: "the service account may not send for this project: check project_id and its roles",
        404: "the registration token is no longer valid",
    }
)


def _error_code(error: dict[str, Any]) -> str:
    """FCM's own code (``UNREGISTERED``, ``QUOTA_EXCEEDED``...) from ``details``, else the status."""
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and isinstance(detail.get("errorCode"), str):
            return str(detail["errorCode"])
    return str(error.get("status") or "")


class FcmPolicy(RetryPolicy):
    def describe(self, status: int, body: bytes) -> str:
        try:
            answer = json.loads(body)
        except ValueError:
            return ""
        if not isinstance(answer, dict):
            return ""
        error = answer.get("error")
        if isinstance(error, dict):  # FCM: {"error": {"status": ..., "message": ..., "details": [...]}}
            text = " ".join(str(error.get("message") or "").split())
            return f"{_error_code(error)}: {text}".strip(": ")
        if isinstance(error, str):  # OAuth2: {"error": "invalid_grant", "error_description": ...}
            return f"{error}: {answer.get('error_description', '')}".strip(": ")
        return ""


POLICY = FcmPolicy(max_wait_in_place=0.0, status_hints=HINTS)
