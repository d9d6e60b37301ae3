"""Driver discovery through entry points, and driver instances.

A driver distribution declares, in its ``pyproject.toml``::

    [project.entry-points."push_notification.drivers"]
    ox = "push_notification_ox:OxDriver"

The value is the driver's factory: a class called with a :class:`DriverContext` whose
instance carries ``@hookimpl`` methods. Only drivers named in the config are imported, so
an unrelated broken package cannot stop the daemon.
"""

from __future__ import annotations

import inspect
import logging
import operator
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import CoroutineType, MappingProxyType
from typing import Any, Protocol, TypeGuard

import pluggy

from push_notification import hookspecs
from push_notification.errors import ConfigError, PushNotificationError, closest
from push_notification.events import EVENT_TYPES, Event
from push_notification.settings import Settings
from push_notification.transaction import Message, Transaction

#: What hooks return that is plainly not awaitable, told apart without ``inspect``'s look at
#: ``collections.abc.Awaitable`` (an ABC check, the slowest part of it for ``True``/``False``).
_NOT_AWAITABLE = frozenset((bool, int, str, bytes, type(None)))


def isawaitable(result: object) -> TypeGuard[Awaitable[Any]]:
    """``inspect.isawaitable``, quick for what hooks return (a coroutine, None, a bool)."""
    kind = type(result)
    return kind is CoroutineType or (kind not in _NOT_AWAITABLE and inspect.isawaitable(result))


ENTRY_POINT_GROUP = "push_notification.drivers"
#: How to name a driver distribution so ``pip install`` hints are right.
DISTRIBUTION_PREFIX = "push-notification-"


@dataclass(frozen=True)
class InstalledDriver:
    """A driver offered by an installed distribution."""

    name: str
    entry_point: EntryPoint

    @property
    def distribution(self) -> str:
        dist = self.entry_point.dist
        return dist.name if dist is not None else "?"

    @property
    def version(self) -> str:
        dist = self.entry_point.dist
        return dist.version if dist is not None else "?"

    def load(self) -> Callable[[DriverContext], object]:
        try:
            factory = self.entry_point.load()
        except Exception as exc:  # noqa: BLE001 - a broken driver package must be one clear line
            raise PushNotificationError(
                f"driver {self.name!r} from {self.distribution} {self.version} failed to import:"
                f" {type(exc).__name__}: {exc}; reinstall or upgrade {self.distribution}"
            ) from None
        if not callable(factory):
            raise PushNotificationError(
                f"driver {self.name!r}: entry point {self.entry_point.value!r} is not a class or callable"
            )
        return factory  # type: ignore[no-any-return]


def installed_drivers() -> dict[str, InstalledDriver]:
    """Every driver name offered by installed distributions; a name claimed twice is an error."""
    found: dict[str, InstalledDriver] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        driver = InstalledDriver(ep.name.lower(), ep)
        other = found.get(driver.name)
        if other is None:
            found[driver.name] = driver
        elif (other.distribution, other.entry_point.value) != (driver.distribution, ep.value):
            raise PushNotificationError(
                f"driver {driver.name!r} is provided by two distributions:"
                f" {other.distribution} {other.version} ({other.entry_point.value}) and"
                f" {driver.distribution} {driver.version} ({ep.value}); uninstall one of them"
            )
    return found


def find_driver(name: str, instance: str, where: str = "", setting_keys: Iterable[str] = ()) -> InstalledDriver:
    """The installed driver called ``name`` (case-insensitive, as Dovecot), or a clear error
    (``setting_keys``, the instance's settings, may tell which driver was meant)."""
    drivers = installed_drivers()
    driver = drivers.get(name.lower())
    if driver is None:
        prefix = f"{where}: " if where else ""
        installed = ", ".join(sorted(drivers)) or "none"
        meant = meant_driver(name, instance, drivers, setting_keys)
        fix = (
            f"; {meant} (installed: {installed})"
            if meant
            else f" (installed: {installed}); install it with: pip install {DISTRIBUTION_PREFIX}{name.lower()}"
        )
        raise ConfigError(f"{prefix}push_notification {instance}: driver {name!r} is not installed{fix}")
    return driver


def meant_driver(name: str, instance: str, drivers: Iterable[str], setting_keys: Iterable[str] = ()) -> str | None:
    """The fix when ``name`` is not installed but an installed driver was surely meant: a
    block named after itself whose settings are spelt ``ox_url`` ("add driver = ox"), or a
    near miss ("did you mean 'dlog'?")."""
    known = sorted(drivers)
    if name.lower() == instance.lower():  # no driver line: the block's name stood in for it
        for driver in known:
            if any(key.lower().startswith(f"{driver}_") for key in setting_keys):
                return f"its settings are the {driver} driver's: add `driver = {driver}` to the block"
    close = closest(name.lower(), known)
    if close:
        return f"did you mean {close!r}? (driver = {close})"
    return None


def implemented_hooks(factory: object) -> list[str]:
    """Names of the hooks a driver class implements (for ``push-notification drivers``)."""
    marker = f"{hookspecs.PROJECT}_impl"
    return sorted(name for name, member in inspect.getmembers(factory) if callable(member) and hasattr(member, marker))


class Metadata(Protocol):
    """Server METADATA per user and mailbox (``""`` = server), as Dovecot's ``METADATA``
    keys (``/private/...``, ``/shared/...``). The daemon's store implements it; a driver
    only needs these four calls, so another backend (Redis) can stand in."""

    def get(self, username: str, key: str, mailbox: str = "") -> str | None: ...

    def set(self, username: str, key: str, value: str | None, mailbox: str = "") -> None: ...

    def unset(self, username: str, key: str, mailbox: str = "") -> None: ...

    def list(self, username: str, prefix: str = "", mailbox: str = "") -> dict[str, str]: ...


class PushDevice(Protocol):
    """One registered device as a driver sees it (``push_notification.devices.Device``)."""

    @property
    def id(self) -> str: ...

    @property
    def user(self) -> str: ...

    @property
    def kind(self) -> str: ...

    #: The endpoint URL (Web Push) or the token (APNs, FCM).
    @property
    def address(self) -> str: ...

    #: Kind-specific keys (Web Push: ``p256dh``, ``auth``).
    @property
    def keys(self) -> Mapping[str, str]: ...


class Devices(Protocol):
    """The device registry as a driver that wakes devices needs it; the daemon's registry
    (SQLite, or a shared backend) implements it. Drivers serving devices declare the kinds
    they serve with a ``device_kinds`` class attribute (see ``push_notification.devices``)."""

    async def for_transaction(self, txn: Transaction, kinds: Collection[str]) -> list[PushDevice]:
        """The user's devices of ``kinds``, after taking in any device the transaction's
        METADATA registers."""
        ...

    async def succeeded(self, device: PushDevice) -> None:
        """A push reached the device's push service."""

    async def failed(self, device: PushDevice) -> None:
        """A push failed for a reason that may go away."""

    async def gone(self, device: PushDevice, reason: str) -> None:
        """The push service says the device no longer exists: remove it (and count it)."""


@dataclass(frozen=True)
class DriverContext:
    """Everything a driver instance gets from the daemon."""

    #: The instance name (``ox1`` in ``push_notification ox1 { ... }``).
    instance: str
    #: The driver name (``ox``).
    driver: str
    #: This instance's settings; read them in ``__init__`` and call ``check_unknown()``.
    settings: Settings
    #: Global ``plugin { }`` settings, for Dovecot's ``plugin_getenv``.
    plugin_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Server METADATA per user (``push-notification metadata set``), when the daemon has one.
    metadata: Metadata | None = None
    #: A directory the instance may keep files in.
    state_dir: Path | None = None
    #: The device registry, for drivers that declare ``device_kinds``.
    devices: Devices | None = None

    @property
    def log(self) -> logging.Logger:
        """The instance's logger; its records carry the instance name."""
        return logging.getLogger(f"push_notification.driver.{self.instance}")


_SPEC_ARGS = {
    name: tuple(inspect.signature(getattr(hookspecs, name)).parameters)
    for name in dir(hookspecs)
    if hasattr(getattr(hookspecs, name), f"{hookspecs.PROJECT}_spec")
}


#: The per-event hooks, each followed by the catch-all ``event`` hook of an instance that has one.
EVENT_HOOKS = tuple(cls.hook for cls in EVENT_TYPES.values())


def _adapt(function: Callable[..., Any], argnames: tuple[str, ...], spec: tuple[str, ...]) -> Callable[..., Any]:
    """A callable taking the spec's arguments positionally, passing the impl only what it asks."""
    if argnames == spec:
        return function
    picks = [spec.index(name) for name in argnames]
    # One shape per common case: these run once per hook call, on the dispatcher's hot path.
    if not picks:
        return lambda *args: function()
    if len(picks) == 1:
        only = picks[0]
        return lambda *args: function(args[only])
    if picks == list(range(len(picks))):
        count = len(picks)
        return lambda *args: function(*args[:count])
    pick = operator.itemgetter(*picks)
    return lambda *args: function(*pick(args))


def _then_event(specific: Callable[..., Any] | None, catch_all: Callable[..., Any]) -> Callable[..., Any]:
    """One table entry for an event hook: the instance's own hook for it, then ``event``."""
    if specific is None:
        return catch_all

    async def rest(first: Awaitable[Any], txn: Any, event: Any) -> None:
        await first
        result = catch_all(txn, event)
        if result is not None and isawaitable(result):
            await result

    def both(txn: Any, event: Any) -> Any:
        first = specific(txn, event)
        if first is not None and isawaitable(first):
            return rest(first, txn, event)
        return catch_all(txn, event)

    return both


class DriverInstance:
    """One configured instance of a driver: its plugin object and its hook table.

    The table maps each hook the driver implements to a plain function taking the hookspec's
    arguments positionally; the dispatcher calls it directly (see :mod:`hookspecs` for why).
    What varies per instance is settled here, once: arguments a hook leaves out, the
    ``event`` hook folded into the event hooks, tracing (``PUSH_NOTIFICATION_TRACE``).
    """

    def __init__(
        self,
        name: str,
        driver: str,
        plugin: object,
        *,
        timeout: float,
        trace: bool | None = None,
        max_parallel: int | None = None,
    ) -> None:
        self.name = name
        self.driver = driver
        self.plugin = plugin
        self.timeout = timeout
        #: Run hooks in a thread of their own (drivers that block, such as Lua, say so).
        self.threaded = bool(getattr(plugin, "blocking", False))
        #: How many users' transactions may be delivered at once (``max_parallel_deliveries``);
        #: one user's are always delivered one after the other. A blocking instance has one thread.
        self.max_parallel = 1 if self.threaded else max_parallel or default_parallel(plugin)
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        try:
            manager.register(plugin, name=name)
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PushNotificationError(f"driver {driver!r} (instance {name}): invalid hook: {exc}") from None
        self.hooks: dict[str, Callable[..., Any]] = {}
        self.is_async = False
        if trace is None:
            trace = tracing_wanted()
        for caller in manager.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                spec = _SPEC_ARGS[caller.name]
                function = _adapt(impl.function, tuple(impl.argnames), spec)
                self.hooks[caller.name] = traced(name, caller.name, spec, function) if trace else function
                self.is_async |= inspect.iscoroutinefunction(impl.function)
        catch_all = self.hooks.pop("event", None)
        if catch_all is not None:
            for hook in EVENT_HOOKS:
                self.hooks[hook] = _then_event(self.hooks.get(hook), catch_all)

    def __repr__(self) -> str:
        return f"<DriverInstance {self.name} driver={self.driver}>"


#: The instance setting read by the daemon, never by the driver.
MAX_PARALLEL_KEY = "max_parallel_deliveries"
#: More than this at once is a typo, not a setting.
MAX_PARALLEL_LIMIT = 10_000


def default_parallel(driver: object) -> int:
    """A driver's own default for ``max_parallel_deliveries``: its ``max_parallel_deliveries``
    attribute (drivers that wait on the network declare more than 1), else 1."""
    value = getattr(driver, MAX_PARALLEL_KEY, 1)
    return value if isinstance(value, int) and value >= 1 else 1


def read_max_parallel(settings: Settings, driver: object) -> int:
    """The instance's ``max_parallel_deliveries`` (the driver's default where the block is
    silent); a blocking driver, which runs on one thread, accepts only 1."""
    value = settings.get_int(MAX_PARALLEL_KEY, default_parallel(driver), minimum=1)
    if value > MAX_PARALLEL_LIMIT:
        raise settings.error(MAX_PARALLEL_KEY, f"must be at most {MAX_PARALLEL_LIMIT}")
    if value > 1 and getattr(driver, "blocking", False):
        raise settings.error(
            MAX_PARALLEL_KEY, "this driver blocks and delivers on one thread, one transaction at a time (remove it)"
        )
    return value


def create_instance(
    context: DriverContext,
    factory: Callable[[DriverContext], object],
    *,
    timeout: float = 30.0,
    trace: bool | None = None,
) -> DriverInstance:
    """Build an instance; any exception from the factory becomes one line naming the instance.

    ``max_parallel_deliveries`` is read from the instance's settings first, so the driver
    never sees it as a setting of its own."""
    max_parallel = read_max_parallel(context.settings, factory)
    try:
        plugin = factory(context)
    except PushNotificationError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line naming the instance, not a traceback
        raise ConfigError(
            f"{context.settings.where}: push_notification {context.instance}: driver"
            f" {context.driver!r} failed to start: {type(exc).__name__}: {exc}"
        ) from None
    return DriverInstance(
        context.instance, context.driver, plugin, timeout=timeout, trace=trace, max_parallel=max_parallel
    )


# --- PUSH_NOTIFICATION_TRACE=1: one log line per hook call, for seeing what a driver is given.
#
# Each line names the instance, the hook, a short form of its arguments, what it returned (or
# raised) and how long it took, async hooks included (datasette's DATASETTE_TRACE_PLUGINS):
#
#     trace ox1 message_new(txn=<txn 3e8c… alice INBOX>, event=<MessageNew uid=7>) -> None in 0.041 ms
#
# Whether to trace is decided once, when an instance is created: the dispatcher then calls the
# wrapped functions of its hook table, so tracing costs nothing when it is off. Lines go to the
# ``push_notification.trace`` logger at INFO, which is opened to INFO for the purpose.

TRACE_ENV = "PUSH_NOTIFICATION_TRACE"
_TRACE_OFF = ("", "0", "no", "false", "off")
#: How much of an argument a line shows at most.
TRACE_MAX_ARG = 60

trace_log = logging.getLogger("push_notification.trace")


def tracing_wanted() -> bool:
    """True when ``PUSH_NOTIFICATION_TRACE`` is set to anything but 0/no/false/off."""
    return os.environ.get(TRACE_ENV, "").strip().lower() not in _TRACE_OFF


def short(value: object) -> str:
    """A few words for an argument: which transaction, which event; never a message body."""
    if isinstance(value, Transaction):
        return f"<txn {value.id} {value.user.username} {value.mailbox}>"
    if isinstance(value, Event):
        uid = getattr(value, "uid", None)
        return f"<{value.name} uid={uid}>" if uid is not None else f"<{value.name} {value.mailbox}>"
    if isinstance(value, Message):
        return f"<message uid={value.uid} events={len(value.events)}>"
    text = repr(value)
    return text if len(text) <= TRACE_MAX_ARG else text[: TRACE_MAX_ARG - 1] + "…"


def traced(instance: str, hook: str, argnames: tuple[str, ...], function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` logging each call of ``hook``; awaitables are timed until they finish."""
    trace_log.setLevel(logging.INFO)

    def line(args: tuple[Any, ...], outcome: str, started: float) -> None:
        shown = ", ".join(f"{name}={short(arg)}" for name, arg in zip(argnames, args, strict=False))
        took = (time.perf_counter() - started) * 1000
        trace_log.info("trace %s %s(%s) %s in %.3f ms", instance, hook, shown, outcome, took)

    async def finish(args: tuple[Any, ...], awaitable: Awaitable[Any], started: float) -> Any:
        try:
            result = await awaitable
        except BaseException as exc:
            line(args, f"raised {type(exc).__name__}", started)
            raise
        line(args, f"-> {short(result)}", started)
        return result

    def call(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            result = function(*args)
        except BaseException as exc:
            line(args, f"raised {type(exc).__name__}", started)
            raise
        if result is not None and isawaitable(result):
            return finish(args, result, started)
        line(args, f"-> {short(result)}", started)
        return result

    return call
