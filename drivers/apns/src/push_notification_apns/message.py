"""One APNs request: the JSON payload with its ``aps`` dictionary, and the ``apns-*`` headers.

``background`` (the default) is a silent, content-free wake-up: ``content-available: 1`` and
the core's payload beside ``aps``, priority 5 (Apple delivers it when the device sees fit and
throttles more urgent background pushes). ``alert`` shows a notification, title and body from
the instance's templates, priority 10.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from push_notification.devices.waking import collapse_key

PRIORITY = {"background": "5", "alert": "10"}
#: The title of an alert when the admin wrote no title_template (it says nothing of the mail).
DEFAULT_TITLE = "New mail"
#: Apple's limit for a notification payload.
MAX_PAYLOAD = 4096


def encode(push_type: str, payload: Mapping[str, Any]) -> bytes:
    """The request body: ``aps`` plus the content-free fields (``account``, ``mailbox``...)."""
    data = dict(payload)
    if push_type == "alert":
        alert = {"title": data.pop("title", "") or DEFAULT_TITLE}
        body = data.pop("body", "")
        if body:
            alert["body"] = body
        aps: dict[str, Any] = {"alert": alert, "sound": "default"}
        if isinstance(data.get("unseen"), int):
            aps["badge"] = data["unseen"]
    else:
        aps = {"content-available": 1}
    return json.dumps({"aps": aps, **data}, separators=(",", ":"), ensure_ascii=False).encode()


def headers(topic: str, push_type: str, ttl: int, user: str, mailbox: str, *, collapse: bool) -> dict[str, str]:
    """The ``apns-*`` headers; ``apns-collapse-id`` keeps one pending push per user and mailbox."""
    result = {
        "apns-topic": topic,
        "apns-push-type": push_type,
        "apns-priority": PRIORITY[push_type],
        "apns-expiration": str(int(time.time()) + ttl) if ttl else "0",
    }
    if collapse:
        result["apns-collapse-id"] = collapse_key(user, mailbox)
    return result
