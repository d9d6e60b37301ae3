"""The ``fcm`` device kind: a registration token as the app got it from
``FirebaseMessaging.getInstance().token``, checked before it is stored.

``{"user": ..., "kind": "fcm", "token": "<registration token>"}``; chatmail's
``fcm-PACKAGE:TOKEN`` METADATA value arrives the same way, its package kept beside the token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from push_notification.devices import DeviceError, DeviceFields

#: Registration tokens are URL-safe text (today about 160 characters, ``instance:APA91b...``).
TOKEN = re.compile(r"[A-Za-z0-9_:\-.]{20,4096}")


def parse_token(registration: Mapping[str, Any]) -> DeviceFields:
    """The device fields of an ``fcm`` registration, or a one-line DeviceError."""
    token = registration.get("token")
    if not isinstance(token, str) or not token.strip():
        raise DeviceError('an fcm registration needs "token": the FCM registration token of the app')
    token = token.strip()
    if not TOKEN.fullmatch(token):
        raise DeviceError("the fcm token must be 20 to 4096 letters, digits and _ : - . (an FCM registration token)")
    package = registration.get("package")
    return DeviceFields(token, {"package": package} if isinstance(package, str) and package else {})
