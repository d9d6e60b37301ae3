"""One Lua state with Dovecot's Lua API, built with lupa.

Lua 5.4 by default (as Debian's Dovecot links liblua5.4); LuaJIT 2.1 when the admin sets
``lua_runtime = luajit``. Lupa's own ``python`` bridge is removed and Python attributes
starting with ``_`` are hidden, so a script reaches Python only through the API.
"""

from __future__ import annotations

import importlib
from importlib.resources import files
from typing import Any

from push_notification.errors import ConfigError

from .host import LuaHost

RUNTIMES = {"lua54": "lupa.lua54", "lua5.4": "lupa.lua54", "luajit": "lupa.luajit21", "luajit21": "lupa.luajit21"}

#: ``dovecot.storage`` constants exactly as a running Dovecot 2.3.19 exposes them (2.4's
#: MAILBOX_FLAG_AUTO_* are absent there); numbers are floats, as Dovecot pushes them with
#: ``lua_pushnumber``.
STORAGE_CONSTANTS: dict[str, Any] = {
    "STATUS_MESSAGES": 0x01,
    "STATUS_RECENT": 0x02,
    "STATUS_UIDNEXT": 0x04,
    "STATUS_UIDVALIDITY": 0x08,
    "STATUS_UNSEEN": 0x10,
    "STATUS_FIRST_UNSEEN_SEQ": 0x20,
    "STATUS_KEYWORDS": 0x40,
    "STATUS_HIGHESTMODSEQ": 0x80,
    "STATUS_PERMANENT_FLAGS": 0x200,
    "STATUS_FIRST_RECENT_UID": 0x400,
    "STATUS_HIGHESTPVTMODSEQ": 0x2000,
    "MAILBOX_FLAG_READONLY": 0x01,
    "MAILBOX_FLAG_SAVEONLY": 0x02,
    "MAILBOX_FLAG_DROP_RECENT": 0x04,
    "MAILBOX_FLAG_NO_INDEX_FILES": 0x10,
    "MAILBOX_FLAG_KEEP_LOCKED": 0x20,
    "MAILBOX_FLAG_IGNORE_ACLS": 0x100,
    "MAILBOX_SYNC_FLAG_FULL_READ": 0x01,
    "MAILBOX_SYNC_FLAG_FULL_WRITE": 0x02,
    "MAILBOX_SYNC_FLAG_FAST": 0x04,
    "MAILBOX_SYNC_FLAG_NO_EXPUNGES": 0x08,
    "MAILBOX_SYNC_FLAG_FIX_INCONSISTENT": 0x40,
    "MAILBOX_SYNC_FLAG_EXPUNGE": 0x80,
    "MAILBOX_SYNC_FLAG_FORCE_RESYNC": 0x100,
}
STORAGE_STRINGS = {
    "MAILBOX_ATTRIBUTE_PREFIX_DOVECOT": "vendor/vendor.dovecot/",
    "MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT": "vendor/vendor.dovecot/pvt/",
    "MAILBOX_ATTRIBUTE_PREFIX_DOVECOT_PVT_SERVER": "vendor/vendor.dovecot/pvt/server/",
}

_BITS_54 = """return {
  bor = function(a, b) return math.tointeger(a) | math.tointeger(b) end,
  band = function(a, b) return math.tointeger(a) & math.tointeger(b) end,
  bnot = function(a) return ~math.tointeger(a) end,
}"""
_BITS_JIT = "local bit = require('bit'); return {bor = bit.bor, band = bit.band, bnot = bit.bnot}"


def _source(name: str) -> str:
    return (files(__package__) / "lua" / name).read_text(encoding="utf-8")


def _deny_private(obj: object, name: object, is_setting: bool) -> object:
    """Lupa attribute filter: scripts may call the host's public methods, nothing else."""
    if is_setting or not isinstance(name, str) or name.startswith("_"):
        raise AttributeError(f"access to {name!r} is not allowed")
    return name


class LuaState:
    """A fresh Lua state with the ``dovecot`` global and the provided modules."""

    def __init__(self, host: LuaHost, *, runtime: str = "lua54", sandbox: bool = True) -> None:
        module_name = RUNTIMES[runtime]
        try:
            lupa_module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigError(
                f"lua runtime {runtime!r} is not available in this lupa build ({module_name}); use lua_runtime = lua54"
            ) from None
        self.lua = lupa_module.LuaRuntime(
            unpack_returned_tuples=True,
            register_eval=False,
            register_builtins=False,
            attribute_filter=_deny_private,
        )
        self.lua_type = lupa_module.lua_type
        self.version = self.lua.eval("_VERSION")
        host._bind(self.lua, self.lua_type)
        g = self.lua.globals()
        g.python = None
        constants: dict[str, Any] = {k: float(v) for k, v in STORAGE_CONSTANTS.items()}
        constants.update(STORAGE_STRINGS)
        bits = self.lua.execute(_BITS_JIT if "jit" in module_name else _BITS_54)
        setup = self.lua.execute(
            "return function(...) return load(select(1, ...), '=runtime', 't')(select(2, ...)) end"
        )
        self.api = setup(
            _source("runtime.lua"),
            host,
            self.lua.table_from(constants),
            bits,
            _source("dovecot.lua"),
            _source("modules.lua"),
            sandbox,
        )
        self.provided: str = self.api.provided
        self.make_user = self.api.make_user

    def table(self, fields: dict[str, Any]) -> Any:
        return self.lua.table_from(fields, recursive=True)

    def compile(self, source: str, chunkname: str) -> str | None:
        """Compile the script; the syntax error, if any."""
        result = self.api.compile(source, chunkname)
        return None if result is True else str(result[1])

    def missing_require(self, source: str) -> tuple[int, str] | None:
        """(line, module) of the first ``require "x"`` that cannot load, found without running."""
        result = self.api.missing_require(source)
        if isinstance(result, tuple):
            return int(result[0]), str(result[1])
        return None

    def run(self) -> str | None:
        """Run the compiled main chunk; the error (with traceback), if any."""
        result = self.api.run()
        return None if result is True else str(result[1])

    def is_function(self, name: str) -> bool:
        return bool(self.api.is_function(name))

    def defined(self, names: Any) -> set[str]:
        """Which of ``names`` (a Lua array from :meth:`array`) are global functions now."""
        return set(str(self.api.defined(names)).split())

    def array(self, items: list[str]) -> Any:
        return self.lua.table_from(items)

    def call(self, name: str, *args: Any) -> tuple[bool, Any]:
        """Call a global function: (True, first result) or (False, error with traceback)."""
        result = self.api.call(name, *args)
        if isinstance(result, tuple):
            return bool(result[0]), result[1] if len(result) > 1 else None
        return bool(result), None
