"""The dispatcher: every committed transaction to every driver instance.

Each instance has its own worker task reading its own stream from the queue, so instances
run concurrently and a slow, hanging or raising instance never holds back the others, while
one instance sees transactions strictly in order. Hook results that are awaitables are
awaited (datasette's rule); instances that block (``blocking = True``) run in a thread of
their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from push_notification.drivers import DriverInstance, isawaitable
from push_notification.errors import PushNotificationError
from push_notification.log_fields import delivery_fields
from push_notification.queue.contract import Queue
from push_notification.transaction import Transaction

log = logging.getLogger("push_notification.dispatch")

#: How many transactions a worker takes from the queue at once.
BATCH = 256

#: Starts a long-running task: ``spawn(name, run)`` (the daemon's supervisor restarts it on a crash).
Spawn = Callable[[str, Callable[[], Awaitable[None]]], "asyncio.Task[None]"]


def _plain_task(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    async def main() -> None:
        await run()

    return asyncio.create_task(main(), name=name)


class _HookPlan:
    """Which hooks an instance has, settled once per instance: a driver that implements only
    ``end_txn`` (or ``begin_txn``/``end_txn``) never has ``txn.hook_calls`` built for it."""

    __slots__ = ("__weakref__", "begin", "end", "hooks", "middle")

    def __init__(self, hooks: dict[str, Callable[..., Any]]) -> None:
        self.hooks = hooks
        self.begin = hooks.get("begin_txn")
        self.end = hooks.get("end_txn")
        #: Any hook between begin_txn and end_txn (process_*, an event hook).
        self.middle = any(name not in ("begin_txn", "end_txn") for name in hooks)


_PLANS: weakref.WeakKeyDictionary[DriverInstance, _HookPlan] = weakref.WeakKeyDictionary()


def _plan(instance: DriverInstance) -> _HookPlan:
    plan = _PLANS.get(instance)
    if plan is None or plan.hooks is not instance.hooks:
        plan = _PLANS[instance] = _HookPlan(instance.hooks)
    return plan


def deliver_sync(instance: DriverInstance, txn: Transaction) -> None:
    """Run one transaction through a blocking instance's hooks, in Dovecot's order."""
    plan = _plan(instance)
    begin = plan.begin
    if begin is not None and begin(txn) is False:
        return
    if plan.middle:
        hooks = plan.hooks
        for name, args in txn.hook_calls:
            hook = hooks.get(name)
            if hook is not None:
                hook(*args)
    end = plan.end
    if end is not None:
        end(txn, txn.success)


async def deliver(instance: DriverInstance, txn: Transaction) -> None:
    """Run one transaction through an instance's hooks, awaiting what they return."""
    await _deliver_planned(_plan(instance), txn)


async def _deliver_planned(plan: _HookPlan, txn: Transaction) -> None:
    """:func:`deliver` with the instance's plan at hand (a worker looks it up once per batch)."""
    begin = plan.begin
    if begin is not None:
        accepted = begin(txn)
        if accepted is not None and isawaitable(accepted):
            accepted = await accepted
        if accepted is False:
            return
    if plan.middle:
        hooks = plan.hooks
        for name, args in txn.hook_calls:
            hook = hooks.get(name)
            if hook is not None:
                result = hook(*args)
                if result is not None and isawaitable(result):
                    await result
    end = plan.end
    if end is not None:
        result = end(txn, txn.success)
        if result is not None and isawaitable(result):
            await result


class Dispatcher:
    """Runs one worker per driver instance over a :class:`Queue`, which the ingress and the
    spool reader fill."""

    def __init__(
        self,
        queue: Queue,
        instances: Iterable[DriverInstance],
        *,
        spawn: Spawn = _plain_task,
        log_deliveries: bool = True,
    ) -> None:
        self.queue = queue
        self._spawn = spawn
        #: One info line per delivered transaction and instance (``log_deliveries = no`` turns it off).
        self.log_deliveries = log_deliveries
        self.instances: dict[str, DriverInstance] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._busy: dict[str, int] = {}
        self._deadline: dict[str, float | None] = {}
        self._progress = asyncio.Event()
        self._draining = 0
        self._expired: dict[str, bool] = {}
        self._initial = list(instances)

    async def start(self) -> None:
        """Initialise every instance and start its worker."""
        await self.add(self._initial)

    async def add(self, instances: Iterable[DriverInstance]) -> None:
        """Start more instances."""
        await self.replace((), instances)

    async def remove(self, names: Iterable[str]) -> None:
        """Stop instances (reload or shutdown): their worker, then ``driver_deinit``/``cleanup``."""
        await self.replace(names, ())

    async def replace(self, stop: Iterable[str], start: Iterable[DriverInstance]) -> None:
        """A reload: stop the instances named in ``stop``, then start ``start``.

        Atomic for accepted work: every name in ``start`` is attached to the queue before
        anything stops and stays attached while its predecessor stops and it initialises, so
        a transaction accepted meanwhile is recorded for it and delivered once its worker
        runs; what the predecessor had taken and not finished is handed to it again. Only
        names stopped and not started again are detached. An instance whose ``driver_init``
        fails is detached; the others start, then :class:`PushNotificationError` names it.
        """
        starting = list(start)
        successors = {instance.name for instance in starting}
        stopping = [name for name in dict.fromkeys(stop) if name in self.instances]
        recorded = [*self.instances, *(name for name in successors if name not in self.instances)]
        self.queue.attach(recorded)
        for name in stopping:
            task = self._workers.pop(name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._busy.pop(name, None)  # what it had taken goes back to the queue
        self.queue.attach([name for name in recorded if name not in stopping or name in successors])
        for name in stopping:
            await self._finish(self.instances.pop(name))
        failures: list[PushNotificationError] = []
        for instance in starting:
            try:
                await self._initialise(instance)
            except PushNotificationError as exc:
                failures.append(exc)
                continue
            self.instances[instance.name] = instance
            self._workers[instance.name] = self._spawn(f"worker {instance.name}", self._worker(instance))
        if failures:
            self.queue.attach(self.instances)
            if len(failures) == 1:
                raise failures[0]
            raise PushNotificationError("; ".join(map(str, failures)))

    async def _initialise(self, instance: DriverInstance) -> None:
        """``driver_init``, on the instance's own thread if it blocks; a failure is one line."""
        if instance.threaded:
            self._executors[instance.name] = ThreadPoolExecutor(1, thread_name_prefix=f"pn-{instance.name}")
        try:
            await self._lifecycle(instance, "driver_init")
        except Exception as exc:
            executor = self._executors.pop(instance.name, None)
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            if isinstance(exc, PushNotificationError):
                raise
            raise PushNotificationError(
                f"push_notification {instance.name}: driver {instance.driver!r} failed to start: {_describe(exc)}"
            ) from None

    async def _finish(self, instance: DriverInstance) -> None:
        """``driver_deinit`` and ``driver_cleanup`` of a stopped instance; failures are logged."""
        for hook in ("driver_deinit", "driver_cleanup"):
            try:
                await asyncio.wait_for(self._lifecycle(instance, hook), instance.timeout)
            except Exception as exc:  # noqa: BLE001 - logged, shutdown goes on
                log.error("push_notification %s: %s failed: %s", instance.name, hook, _describe(exc))
        executor = self._executors.pop(instance.name, None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _worker(self, instance: DriverInstance) -> Callable[[], Awaitable[None]]:
        """The worker of ``instance``, as its supervisor (re)starts it: a restarted worker
        first takes back what its crashed predecessor had taken and not finished."""

        async def run() -> None:
            self.queue.requeue_taken(instance.name)
            self._busy[instance.name] = 0
            # Awaited from here, one coroutine less to resume at every wake-up.
            if instance.max_parallel > 1:
                await self._work_parallel(instance)
            else:
                await self._work_in_order(instance)

        return run

    async def _lifecycle(self, instance: DriverInstance, hook_name: str) -> None:
        """Run ``driver_init``/``driver_deinit``/``driver_cleanup`` if the instance has it, on the
        instance's own thread when it blocks (a Lua state must stay on one thread)."""
        hook = instance.hooks.get(hook_name)
        if hook is None:
            return
        executor = self._executors.get(instance.name)
        if executor is not None:
            result = await asyncio.get_running_loop().run_in_executor(executor, hook)
        else:
            result = hook()
        if result is not None and isawaitable(result):
            await result

    def idle(self) -> bool:
        """True when nothing is queued or being delivered."""
        return self.queue.depth() == 0 and not any(self._busy.values())

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far was delivered (or ``timeout``); True if idle.

        Workers wake it after each batch, so it costs nothing while deliveries run.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._draining += 1
        try:
            while not self.idle():
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.clear()
                # Capped so a transaction put straight into the queue (not by us) is noticed too.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), min(remaining or 0.05, 0.05))
            return True
        finally:
            self._draining -= 1

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish in-flight work (up to ``timeout``), then stop every instance."""
        await self.drain(timeout)
        await self.remove(list(self.instances))

    async def _work_in_order(self, instance: DriverInstance) -> None:
        """One delivery at a time, in the order the queue hands them out: the cheapest path
        (no task per delivery), for instances that deliver one at a time."""
        name = instance.name
        queue = self.queue
        executor = self._executors.get(name)
        loop = asyncio.get_running_loop()
        timeout = instance.timeout
        watched = instance.is_async
        plan = _plan(instance)
        if watched:
            watchdog = asyncio.create_task(self._watchdog(instance, asyncio.current_task()))  # type: ignore[arg-type]
        try:
            while True:
                batch = await queue.get(name, BATCH)
                if not batch:
                    return
                self._busy[name] = len(batch)
                if plan.hooks is not instance.hooks:  # replaced meanwhile: settled again
                    plan = _plan(instance)
                # A blocking instance gets the whole batch in one hand-off to its thread.
                outcomes = _run_in_thread(executor, loop, instance, batch) if executor is not None else None
                # Asked once per batch: a clock read per delivery only when its line is written.
                logged = self.log_deliveries and log.isEnabledFor(logging.INFO)
                started = 0.0
                for index, txn in enumerate(batch):
                    error: BaseException | None = None
                    expired = False
                    if logged:
                        started = loop.time()
                    try:
                        if outcomes is not None:
                            async with asyncio.timeout(timeout):
                                failure = await outcomes[index]
                            if failure is not None:
                                raise failure
                        elif watched:
                            self._deadline[name] = loop.time() + timeout
                            try:
                                await _deliver_planned(plan, txn)
                            finally:
                                self._deadline[name] = None
                                expired = self._expired.pop(name, False)
                        else:
                            await _deliver_planned(plan, txn)
                    except asyncio.CancelledError:
                        # Only the watchdog's own cancel becomes a timeout; shutdown still stops us.
                        if not expired or asyncio.current_task().uncancel() > 0:  # type: ignore[union-attr]
                            raise
                        error = TimeoutError()
                        _log_failure(instance, txn, error, queue.durable)
                    except Exception as exc:  # noqa: BLE001 - a driver's failure is its own
                        error = exc
                        _log_failure(instance, txn, exc, queue.durable)
                    await queue.done(name, txn, error)
                    if error is None and logged:
                        _log_delivered(instance, txn, loop.time() - started)
                    self._busy[name] -= 1
                if self._draining:
                    self._progress.set()
        finally:
            if watched:
                watchdog.cancel()

    async def _work_parallel(self, instance: DriverInstance) -> None:
        """Up to ``instance.max_parallel`` deliveries at once, each of a different user.

        One task per user with work in hand delivers that user's transactions in order; a user
        whose task is running gets nothing new from the queue (every queue hands out a user's
        next transactions only once the earlier ones are done) and, should it, the transaction
        waits behind. Users beyond the limit wait for a task to finish. Each delivery has the
        instance's timeout. Stopping the worker cancels every delivery in flight; what they had
        taken is handed back by the queue.
        """
        name = instance.name
        queue = self.queue
        limit = instance.max_parallel
        #: Per user with a task: the transactions taken and waiting behind its delivery.
        behind: dict[str, deque[Transaction]] = {}
        #: First transactions of users that wait for a free task.
        waiting: deque[Transaction] = deque()
        room = asyncio.Event()
        running = 0

        async def deliver_user(txn: Transaction) -> None:
            nonlocal running
            user = txn.user.username
            while True:
                await self._deliver_timed(instance, txn)
                later = behind[user]
                if later:
                    txn = later.popleft()
                    continue
                del behind[user]
                if waiting:
                    txn = waiting.popleft()
                    user = txn.user.username
                    continue
                running -= 1
                room.set()
                return

        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    while running >= limit:
                        room.clear()
                        await room.wait()
                    batch = await queue.get(name, BATCH)
                    if not batch:
                        return
                    self._busy[name] += len(batch)
                    for txn in batch:
                        user = txn.user.username
                        later = behind.get(user)
                        if later is not None:
                            later.append(txn)
                            continue
                        behind[user] = deque()
                        if running < limit:
                            running += 1
                            group.create_task(deliver_user(txn))
                        else:
                            waiting.append(txn)
        except BaseExceptionGroup as failure:  # a queue that failed mid-delivery: the worker crashed
            raise failure.exceptions[0] from None

    async def _deliver_timed(self, instance: DriverInstance, txn: Transaction) -> None:
        """One delivery of the parallel path, with its own timeout, and its outcome reported."""
        error: Exception | None = None
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(instance.timeout):
                await deliver(instance, txn)
        except Exception as exc:  # noqa: BLE001 - a driver's failure (or its timeout) is its own
            error = exc
            _log_failure(instance, txn, exc, self.queue.durable)
        await self.queue.done(instance.name, txn, error)
        if error is None and self.log_deliveries:
            _log_delivered(instance, txn, asyncio.get_running_loop().time() - started)
        self._busy[instance.name] -= 1
        if self._draining:
            self._progress.set()

    async def _watchdog(self, instance: DriverInstance, worker: asyncio.Task[None]) -> None:
        """Cancels a delivery that overran the instance's timeout.

        One timer per instance instead of ``asyncio.timeout`` per transaction, which costs more
        than a no-op delivery itself. The deadline is set only while the worker awaits inside
        ``deliver``, so a cancel can only land there.
        """
        name = instance.name
        loop = asyncio.get_running_loop()
        tick = min(instance.timeout / 10, 0.5)
        while True:
            await asyncio.sleep(tick)
            deadline = self._deadline.get(name)
            if deadline is not None and loop.time() >= deadline and not self._expired.get(name):
                self._expired[name] = True
                worker.cancel()


def _run_in_thread(
    executor: ThreadPoolExecutor, loop: asyncio.AbstractEventLoop, instance: DriverInstance, batch: list[Transaction]
) -> list[asyncio.Future[Exception | None]]:
    """Deliver ``batch`` on the instance's thread; one future per transaction tells how it ended.

    A future given up on (timeout) is cancelled; the thread still finishes that transaction and
    goes on with the next, in order.
    """
    outcomes: list[asyncio.Future[Exception | None]] = [loop.create_future() for _ in batch]
    finished: list[tuple[asyncio.Future[Exception | None], Exception | None]] = []
    lock = threading.Lock()

    def settle() -> None:  # on the loop: every outcome finished since the last wake-up
        with lock:
            ready = finished[:]
            finished.clear()
        for outcome, failure in ready:
            if not outcome.done():
                outcome.set_result(failure)

    def run() -> None:
        for txn, outcome in zip(batch, outcomes, strict=True):
            failure: Exception | None = None
            try:
                deliver_sync(instance, txn)
            except Exception as exc:  # noqa: BLE001 - reported to the worker, which logs it
                failure = exc
            with lock:
                finished.append((outcome, failure))
                wake = len(finished) == 1  # else a wake-up is already on its way
            if wake:
                try:
                    loop.call_soon_threadsafe(settle)
                except RuntimeError:  # the loop closed: the daemon is gone
                    return

    executor.submit(run)
    return outcomes


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _log_delivered(instance: DriverInstance, txn: Transaction, latency: float) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(
            "push_notification %s: delivered transaction %s (user %s, mailbox %s) in %.3fs",
            instance.name,
            txn.id,
            txn.user.username,
            txn.mailbox,
            latency,
            extra=delivery_fields(instance.name, txn, "delivered", driver=instance.driver, latency=round(latency, 6)),
        )


def _log_failure(instance: DriverInstance, txn: Transaction, exc: BaseException, durable: bool) -> None:
    """Memory mode drops a failure: that is the line. A durable queue logs one line itself
    (retry with attempt and time, or dead letter), so here it is only debug."""
    what = f"timed out after {instance.timeout:g}s" if isinstance(exc, TimeoutError) else _describe(exc)
    log.log(
        logging.DEBUG if durable else logging.ERROR,
        "push_notification %s: transaction %s (user %s, mailbox %s) failed: %s%s",
        instance.name,
        txn.id,
        txn.user.username,
        txn.mailbox,
        what,
        "" if durable else "; dropped (queue = memory does not retry)",
        extra=delivery_fields(instance.name, txn, "failed" if durable else "dropped", driver=instance.driver),
    )
    log.debug("push_notification %s: traceback", instance.name, exc_info=exc)
