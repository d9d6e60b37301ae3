"""A recording driver whose failures a test scripts, and a dispatcher over a real queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from push_notification.dispatch import Dispatcher
from push_notification.drivers import DriverContext, DriverInstance
from push_notification.hookspecs import hookimpl
from push_notification.queue import Queue
from push_notification.settings import Settings
from push_notification.transaction import Transaction

#: Decides, per delivery attempt, what the driver does: return None to accept, or an exception to raise.
Script = Callable[[Transaction, int], BaseException | None]


class Recorder:
    """Accepts transactions unless its script says to fail; remembers what it accepted."""

    def __init__(self, ctx: DriverContext, script: Script | None = None) -> None:
        ctx.settings.check_unknown()
        self.script = script
        self.delivered: list[Transaction] = []
        self.attempts: dict[str, int] = {}

    @hookimpl
    async def end_txn(self, txn: Transaction) -> None:
        count = self.attempts.get(txn.id, 0) + 1
        self.attempts[txn.id] = count
        error = self.script(txn, count) if self.script else None
        if error is not None:
            raise error
        self.delivered.append(txn)

    @property
    def delivered_ids(self) -> list[str]:
        return [txn.id for txn in self.delivered]


class RecorderInstance(DriverInstance):
    """A driver instance whose plugin is known to be a :class:`Recorder`."""

    plugin: Recorder


def recorder(name: str, script: Script | None = None) -> RecorderInstance:
    ctx = DriverContext(instance=name, driver="recorder", settings=Settings.from_dict(name, {}))
    return RecorderInstance(name, "recorder", Recorder(ctx, script), timeout=5.0)


async def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; fail the test if it never is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Running:
    """A started dispatcher over ``queue`` and ``instances``, stopped (and the queue closed) on exit."""

    def __init__(self, queue: Queue, *instances: DriverInstance) -> None:
        self.queue = queue
        self.dispatcher = Dispatcher(queue, instances)

    async def __aenter__(self) -> Dispatcher:
        await self.dispatcher.start()
        return self.dispatcher

    async def __aexit__(self, *exc: object) -> None:
        await self.dispatcher.remove(list(self.dispatcher.instances))
        await self.queue.close()
