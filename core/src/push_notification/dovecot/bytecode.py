"""Precompile the bridge script to Lua bytecode with the Lua library Dovecot itself links.

Dovecot loads the script once per mail user (every delivery): parsing 16 kB of Lua source cost
more instructions than the whole rest of the bridge, loading its stripped bytecode a tenth of
that. The bytecode must come from the same Lua version Dovecot runs, so it is made with the
shared library Dovecot's Lua plugin links (``liblua5.4.so.0``, Debian's; 5.3 as a fallback);
the loader stub (``loader.lua``) falls back to the source when the bytecode does not load.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["LUA_LIBRARIES", "compile_lua"]

#: Sonames tried in order (what Dovecot's mail_lua plugin links on Debian and derivatives).
LUA_LIBRARIES = ("liblua5.4.so.0", "liblua5.4.so", "liblua5.3.so.0", "liblua5.3.so")

_WRITER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


def _library() -> ctypes.CDLL | None:
    for name in LUA_LIBRARIES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library("lua5.4") or ctypes.util.find_library("lua5.3")
    if found:
        try:
            return ctypes.CDLL(found)
        except OSError:
            return None
    return None


def compile_lua(source: str, chunk_name: str) -> bytes | None:
    """Stripped bytecode of ``source``, or None when no Lua library is here or it does not compile."""
    lua = _library()
    if lua is None:
        return None
    lua.luaL_newstate.restype = ctypes.c_void_p
    lua.luaL_loadbufferx.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_char_p,
    ]
    lua.lua_dump.argtypes = [ctypes.c_void_p, _WRITER, ctypes.c_void_p, ctypes.c_int]
    lua.lua_close.argtypes = [ctypes.c_void_p]
    state = lua.luaL_newstate()
    if not state:
        return None
    chunks: list[bytes] = []

    def write(_state: int, data: int, size: int, _ud: int) -> int:
        chunks.append(ctypes.string_at(data, size))
        return 0

    writer = _WRITER(write)
    try:
        text = source.encode("utf-8")
        if lua.luaL_loadbufferx(state, text, len(text), b"=" + chunk_name.encode(), b"t") != 0:
            return None
        if lua.lua_dump(state, writer, None, 1) != 0:
            return None
    finally:
        lua.lua_close(state)
    return b"".join(chunks)
