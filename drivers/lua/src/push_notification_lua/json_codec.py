"""JSON for Lua scripts, with the number and table conventions of the modules they expect.

``cjson`` (lua-cjson 2.1): numbers as ``%.14g`` (so Dovecot's float ``42.0`` is ``42``),
``/`` escaped as ``\\/``, empty table ``{}``, decoded numbers are Lua floats, ``null`` is
``cjson.null``. ``jsonlua`` (Jeffrey Friedl's JSON.lua): numbers as Lua's ``tostring``
(``42.0``), object keys sorted, empty table ``[]``, ``null`` decodes to nil.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

LuaType = Callable[[Any], str | None]

_CJSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSONLUA_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MAX_DEPTH = 1000


class JsonError(ValueError):
    """A value that cannot be encoded, or text that cannot be decoded (the Lua error text)."""


def _escape(text: str, table: dict[str, str]) -> str:
    out = []
    for ch in text:
        esc = table.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _lua_tostring_number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "1e+9999" if value > 0 else "-1e+9999"
    text = format(value, ".14g")
    if all(c in "-0123456789" for c in text):
        text += ".0"
    return text


def _array_length(table: Any, *, cjson: bool) -> int | None:
    """The array length if every key is a positive integer, else None."""
    keys = list(table.keys())
    if not keys:
        return None
    highest = 0
    for key in keys:
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        if not isinstance(key, int) or isinstance(key, bool) or key < 1:
            return None
        highest = max(highest, key)
    if cjson and highest > 10 and highest > 2 * len(keys):
        raise JsonError("Cannot serialise table: excessively sparse array")
    return highest


def encode(value: Any, style: str, lua_type: LuaType, null: Any = None, rawequal: Any = None) -> str:
    """Encode a Lua value (as lupa hands it over) in the given module's style."""
    cjson = style == "cjson"
    pretty = style == "jsonlua-pretty"

    def _is_table(v: Any) -> bool:
        return lua_type(v) == "table"

    def enc(v: Any, depth: int, indent: str) -> str:
        if depth > _MAX_DEPTH:
            raise JsonError("Cannot serialise, excessive nesting (1001)")
        if v is None or (null is not None and _is_table(v) and rawequal(v, null)):
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            if cjson:
                if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
                    raise JsonError("Cannot serialise number: must not be NaN or Inf")
                return format(float(v), ".14g")
            if isinstance(v, float) and math.isnan(v):
                return "null"
            return _lua_tostring_number(v)
        if isinstance(v, str):
            return _escape(v, _CJSON_ESCAPES if cjson else _JSONLUA_ESCAPES)
        if _is_table(v):
            return enc_table(v, depth + 1, indent)
        kind = lua_type(v) or type(v).__name__
        raise JsonError(f"Cannot serialise {kind}: type not supported")

    def enc_table(t: Any, depth: int, indent: str) -> str:
        length = _array_length(t, cjson=cjson)
        inner = indent + "  "
        sep, open_sep, close_sep = (",\n" + inner, "\n" + inner, "\n" + indent) if pretty else (",", "", "")
        if length is not None:
            items = [enc(t[i], depth, inner) for i in range(1, length + 1)]
            return "[" + open_sep + sep.join(items) + close_sep + "]"
        pairs = list(t.items())
        if not pairs:
            return "{}" if cjson else "[]"
        out = []
        for key, val in pairs:
            if isinstance(key, (int, float)) and not isinstance(key, bool):
                key = format(float(key), ".14g") if cjson else _lua_tostring_number(key)
            elif not isinstance(key, str):
                raise JsonError("Cannot serialise table: table key must be a number or string")
            out.append((key, val))
        if not cjson:
            out.sort(key=lambda kv: kv[0])
        colon = ": " if pretty else ":"
        body = sep.join(
            _escape(k, _CJSON_ESCAPES if cjson else _JSONLUA_ESCAPES) + colon + enc(v, depth, inner) for k, v in out
        )
        return "{" + open_sep + body + close_sep + "}"

    return enc(value, 0, "")


def decode(runtime: Any, text: str, style: str, null: Any = None) -> Any:
    """Decode JSON text into Lua values for ``runtime``."""
    cjson = style == "cjson"

    def number(value: str) -> float | int:
        if cjson:
            return float(value)
        as_float = float(value)
        return int(value) if value.lstrip("-").isdigit() else as_float

    try:
        data = json.loads(text, parse_int=number, parse_float=float)
    except json.JSONDecodeError as exc:
        raise JsonError(f"Expected value but found invalid token at character {exc.pos + 1}") from None
    except (ValueError, RecursionError) as exc:
        raise JsonError(f"Expected value but found invalid token: {exc}") from None

    def to_lua(v: Any) -> Any:
        if v is None:
            return null
        if isinstance(v, list):
            table = runtime.table()
            for i, item in enumerate(v, 1):
                table[i] = to_lua(item)
            return table
        if isinstance(v, dict):
            table = runtime.table()
            for key, item in v.items():
                table[key] = to_lua(item)
            return table
        return v

    return to_lua(data)
