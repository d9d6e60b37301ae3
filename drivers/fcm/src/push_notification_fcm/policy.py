"""How the shared HTTP sender treats FCM's (and Google's token endpoint's) answers: 429 and
5xx are retried, a ``Retry-After`` waited for by the queue, never by a worker; errors name
FCM's error code and message (``404 Not Found: UNREGISTERED: Requested entity was not found.``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from push_notification.http import Failure, HttpResponse, RetryPolicy

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


def describe(body: bytes) -> str:
    """What FCM (or the token endpoint) said about a refusal, from its JSON body."""
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


class FcmPolicy(RetryPolicy):
    """The core's rules, with FCM's own words in each refusal."""

    def classify(self, response: HttpResponse) -> Failure | None:
        failure = super().classify(response)
        said = describe(response.body) if failure is not None else ""
        if failure is None or not said:
            return failure
        status, _, hint = failure.what.partition(" (")
        return replace(failure, what=f"{status}: {said}" + (f" ({hint}" if hint else ""))


POLICY = FcmPolicy(max_wait_in_place=0.0, status_hints=HINTS)
