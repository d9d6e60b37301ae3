"""Which asyncio event loop runs the daemon: uvloop when installed, asyncio's own otherwise.

uvloop does the loop's work (polling, sockets, timers) in C: the daemon spends less CPU per
notification on it (``benchmarks/dovecot_e2e.py``). Drivers see an ordinary asyncio loop
either way; ``event_loop = asyncio`` is there for a third-party driver that needs the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from push_notification.errors import PushNotificationError

__all__ = ["run"]


def run(main: Coroutine[Any, Any, None], choice: str = "auto") -> None:
    """Run ``main`` to completion on the loop ``choice`` names (``auto``, ``uvloop``, ``asyncio``)."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()
                raise PushNotificationError(
                    "event_loop = uvloop, but uvloop is not installed; pip install uvloop, or set event_loop = auto"
                ) from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
