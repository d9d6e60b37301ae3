"""The ``apns`` device kind: a device token as the app got it from
``didRegisterForRemoteNotificationsWithDeviceToken`` (hex), checked before it is stored.

``{"user": ..., "kind": "apns", "token": "<hex>", "environment": "sandbox"}``: ``environment``
is optional (``sandbox`` for development builds, ``production`` otherwise; unset means the
instance's ``environment``). chatmail's ``sandbox:TOKEN`` METADATA value arrives the same way.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from push_notification.devices import DeviceError, DeviceFields

ENVIRONMENTS = ("production", "sandbox")
#: Tokens are 32 bytes today; Apple says they may grow, so longer even-length hex is taken.
MIN_TOKEN_HEX, MAX_TOKEN_HEX = 64, 200


def parse_token(registration: Mapping[str, Any]) -> DeviceFields:
    """The device fields of an ``apns`` registration, or a one-line DeviceError."""
    token = registration.get("token")
    if not isinstance(token, str) or not token.strip():
        raise DeviceError('an apns registration needs "token": the device token in hex')
    token = token.strip().replace(" ", "").lower()
    if not set(token) <= set(string.hexdigits.lower()) or len(token) % 2:
        raise DeviceError("the apns token must be hex (the deviceToken bytes, two digits each)")
    if not MIN_TOKEN_HEX <= len(token) <= MAX_TOKEN_HEX:
        raise DeviceError(f"the apns token must be {MIN_TOKEN_HEX} to {MAX_TOKEN_HEX} hex digits (got {len(token)})")
    environment = registration.get("environment")
    if environment in (None, ""):
        return DeviceFields(token, {})
    if environment not in ENVIRONMENTS:
        raise DeviceError(f"the apns environment must be {' or '.join(ENVIRONMENTS)}")
    return DeviceFields(token, {"environment": str(environment)})
