"""An async service (a loopback push service) on an event loop of its own thread, for the
synchronous end-to-end tests that drive Dovecot and the daemon subprocess."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractAsyncContextManager
from typing import Any


class Threaded:
    """``with Threaded(LoopbackApns(...), LoopbackFcm()) as (apns, fcm):`` entered and exited on
    the thread's loop."""

    def __init__(self, *services: AbstractAsyncContextManager[Any]) -> None:
        self.services = services
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        """Run ``coroutine`` on the services' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> tuple[Any, ...]:
        self._thread.start()
        return tuple(self.run(service.__aenter__()) for service in self.services)

    def __exit__(self, *exc: object) -> None:
        for service in reversed(self.services):
            self.run(service.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
