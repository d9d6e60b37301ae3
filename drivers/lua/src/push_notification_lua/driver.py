"""The ``lua`` driver: Dovecot's push-notification Lua API, so existing scripts run unchanged.

Per transaction it calls, as ``push-notification-driver-lua.c`` does,
``dovecot_lua_notify_begin_txn(user)`` (its one result is the context),
``dovecot_lua_notify_event_<name>(ctx, event)`` per event the script has a handler for, and
``dovecot_lua_notify_end_txn(ctx, success)``. ``script_init``/``script_deinit`` run at start
and stop. Each instance owns one Lua state, used only from the instance's own thread
(``blocking = True``), so blocking HTTP in a script never stalls the daemon or other drivers.
"""

from __future__ import annotations

import re
from typing import Any

from push_notification import DriverContext, hookimpl
from push_notification.errors import ConfigError
from push_notification.events import EVENT_TYPES, Event
from push_notification.transaction import Transaction, User

from .config import LuaConfig, read_config
from .event_tables import event_table, handler_name
from .host import LuaHost
from .runtime import LuaState

BEGIN = "dovecot_lua_notify_begin_txn"
END = "dovecot_lua_notify_end_txn"
_TRUNCATED = re.compile(r"\.\.\.([^\s:]+)(?=:\d+:)")
HANDLERS = {name: handler_name(name) for name in EVENT_TYPES}


class LuaDriver:
    """One Lua script, one Lua state, for one ``push_notification`` instance."""

    name = "lua"
    #: Lua calls block (HTTP inside scripts): the dispatcher gives this instance its own thread.
    blocking = True

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.config: LuaConfig = read_config(ctx.settings, ctx.plugin_env)
        self.script = str(self.config.file)
        self.host = LuaHost(
            log=self.log,
            settings=self.config.script_settings,
            plugin_env=ctx.plugin_env,
            metadata=ctx.metadata,
            doveadm=self.config.doveadm,
            script=self.script,
        )
        self.state = LuaState(self.host, runtime=self.config.runtime, sandbox=self.config.sandbox)
        self._compile()
        self._names = self.state.array([BEGIN, END, *HANDLERS.values()])
        self._ctx: Any = None
        self._handlers: dict[str, str] = {}
        self._has_end = False
        self._began = False

    # ------------------------------------------------------------ start-up
    def _fail(self, message: str) -> ConfigError:
        return ConfigError(
            f"{self.ctx.settings.where}: push_notification {self.ctx.instance}: lua script {self.script}: {message}"
        )

    def _full_path(self, message: Any) -> str:
        """Lua shortens long chunk names to ``...tail``; put the script's full path back."""
        script = self.script

        def restore(match: re.Match[str]) -> str:
            return script if script.endswith(match.group(1)) else match.group(0)

        return _TRUNCATED.sub(restore, str(message))

    def _compile(self) -> None:
        """Read and compile the script: a syntax error stops the instance at construction."""
        try:
            source = self.config.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self._fail(f"cannot read it: {exc}") from None
        self.log.debug("lua: Loading %s", self.script)
        error = self.state.compile(source, "@" + self.script)
        if error is not None:
            raise self._fail(f"syntax error: {_first_line(self._full_path(error))}")
        missing = self.state.missing_require(source)
        if missing is not None:
            line, module = missing
            raise self._fail(
                f"{self.script}:{line}: module '{module}' is not available: the lua driver provides"
                f" {self.state.provided} and .lua files on package.path; install it as a .lua file there"
                " or remove the require"
            )

    @hookimpl
    def driver_init(self) -> None:
        """Run the main chunk and ``script_init`` on the instance's own thread (they may block)."""
        error = self.state.run()
        if error is not None:
            raise self._fail(f"failed to run: {_first_line(self._full_path(error))}")
        if self.state.is_function("script_init"):
            self.log.debug("lua: Calling script_init")
            ok, result = self.state.call("script_init", self.state.table(dict(self.config.script_settings)))
            if not ok:
                raise self._fail(f"script_init() failed: {_first_line(self._full_path(result))}")
            # 2.3 requires an integer 0; 2.4 ignores the result. nil (the 2.4 examples) is accepted.
            if isinstance(result, (int, float)) and not isinstance(result, bool):
                if result != 0:
                    raise self._fail(f"Script init failed: script_init() returned {result:g}, expected 0")
            elif result is not None:
                raise self._fail("script_init() returned non-number")

    # ------------------------------------------------------------ helpers
    def _error(self, function: str, message: Any) -> None:
        text = self._full_path(message)
        self.log.error(
            "%s: lua: %s failed: %s",
            self.ctx.instance,
            function,
            _first_line(text),
            extra={"lua_script": self.script, "lua_function": function},
        )
        self.log.debug("%s: lua: %s traceback: %s", self.ctx.instance, function, text)

    def _user(self, user: User) -> Any:
        fields: dict[str, Any] = {
            "username": user.username,
            "service": user.service,
            "session_id": user.session_id,
        }
        if user.home is not None:
            fields["home"] = user.home
        for key in ("uid", "gid", "session_create_time"):
            value = getattr(user, key)
            fields[key] = float(value) if value is not None else 0.0
        for key in (
            "nonexistent",
            "anonymous",
            "autocreated",
            "mail_debug",
            "fuzzy_search",
            "dsyncing",
            "admin",
            "session_restored",
        ):
            fields[key] = bool(user.extra.get(key, False))
        return self.state.make_user(self.state.table(fields))

    # ------------------------------------------------------------ transactions
    @hookimpl
    def begin_txn(self, txn: Transaction) -> bool:
        # Dovecot registers only the events whose handler exists; none => no calls at all.
        defined = self.state.defined(self._names)
        handlers = {event: fn for event, fn in HANDLERS.items() if fn in defined}
        if not handlers:
            self.log.debug("lua: No event handlers found in script")
            return False
        if BEGIN not in defined:
            self._error(BEGIN, f"Missing function {BEGIN}")
            return False
        self.host.txn = txn
        self.log.debug("lua: Calling %s(%s)", BEGIN, txn.user.username)
        ok, result = self.state.call(BEGIN, self._user(txn.user))
        if not ok:
            self.host.txn = None
            self._error(BEGIN, result)
            return False
        self._ctx = result
        self._handlers = handlers
        self._has_end = END in defined
        self._began = True
        return True

    @hookimpl
    def event(self, txn: Transaction, event: Event) -> None:
        # Dovecot calls a handler for every event registered by any driver and logs
        # "'dovecot_lua_notify_event_x' is not a function" for missing ones; we call only the
        # handlers the script defines (on purpose: that error is a Dovecot bug).
        function = self._handlers.get(event.name)
        if function is None or not self._began:
            return
        ok, result = self.state.call(function, self._ctx, self.state.table(event_table(event)))
        if not ok:
            self._error(function, result)

    @hookimpl
    def end_txn(self, txn: Transaction, success: bool) -> None:
        if not self._began:
            return
        try:
            if not self._has_end:
                self._error(END, f"Missing function {END}")
                return
            ok, result = self.state.call(END, self._ctx, success)
            if not ok:
                self._error(END, result)
        finally:
            self._ctx = None
            self._handlers = {}
            self._began = False
            self.host.txn = None

    @hookimpl
    def driver_deinit(self) -> None:
        if self.state.is_function("script_deinit"):
            ok, result = self.state.call("script_deinit")
            if not ok:
                self._error("script_deinit", result)


def _first_line(text: Any) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else "unknown error"
