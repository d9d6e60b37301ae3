"""One FCM HTTP v1 message for one registration token.

``data`` (the default) is a data-only message: the app's ``onMessageReceived`` gets the
content-free fields as strings and syncs, with Android priority ``normal``. ``alert`` adds a
``notification`` (title and body from the instance's templates) and priority ``high``, which
Android reserves for what the user sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from push_notification.devices.waking import collapse_key

PUSH_TYPES = ("data", "alert")
#: The title of an alert when the admin wrote no title_template (it says nothing of the mail).
DEFAULT_TITLE = "New mail"


def encode(
    token: str, push_type: str, payload: Mapping[str, Any], ttl: int, user: str, mailbox: str, *, collapse: bool
) -> bytes:
    """The ``messages:send`` request body."""
    data = {key: str(value) for key, value in payload.items() if key not in ("title", "body")}
    android: dict[str, Any] = {"ttl": f"{ttl}s", "priority": "high" if push_type == "alert" else "normal"}
    if collapse:
        android["collapse_key"] = collapse_key(user, mailbox)
    message: dict[str, Any] = {"token": token, "data": data, "android": android}
    if push_type == "alert":
        notification = {"title": str(payload.get("title") or DEFAULT_TITLE)}
        if payload.get("body"):
            notification["body"] = str(payload["body"])
        message["notification"] = notification
    return json.dumps({"message": message}, separators=(",", ":"), ensure_ascii=False).encode()
