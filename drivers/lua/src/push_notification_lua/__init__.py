"""push-notification-lua: run Dovecot push-notification Lua scripts unchanged."""

from .driver import LuaDriver

__all__ = ["LuaDriver"]
