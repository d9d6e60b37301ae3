"""The lua driver's settings, from either Dovecot config syntax.

2.4: ``push_notification NAME { driver = lua  lua_file = /x.lua  lua_settings { k = v } }``
(the config reader hands ``lua_file`` over as ``file`` and ``lua_settings`` as section
``settings``). 2.3: ``push_notification_driver = lua:file=/x.lua`` and the global
``push_notification_lua_script_file``, which wins over ``file=`` as in Dovecot 2.3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from push_notification.settings import Settings

from .doveadm import Doveadm
from .runtime import RUNTIMES

SCRIPT_FILE_ENV = "push_notification_lua_script_file"


@dataclass(frozen=True)
class LuaConfig:
    """Everything the driver reads from its block, checked at start-up."""

    file: Path
    #: ``lua_settings { }``: passed to ``script_init(settings)`` and read by ``plugin_getenv``.
    script_settings: Mapping[str, str] = field(default_factory=dict)
    runtime: str = "lua54"
    sandbox: bool = True
    doveadm: Doveadm | None = None


def read_config(settings: Settings, plugin_env: Mapping[str, str]) -> LuaConfig:
    """Read and check the settings; every mistake is one ConfigError line."""
    file = settings.get_str("file", aliases=("script_file",))
    env_file = plugin_env.get(SCRIPT_FILE_ENV)
    chosen = env_file or file
    if not chosen:
        raise settings.error(
            "file",
            f"No file in config and no {SCRIPT_FILE_ENV} set; add lua_file = /path/script.lua"
            " (2.4) or push_notification_driver = lua:file=/path/script.lua (2.3)",
        )
    path = Path(chosen)
    if not path.is_file():
        key = "file" if chosen == file else SCRIPT_FILE_ENV
        raise settings.error(key, f"Lua script {chosen} does not exist or is not a file; check the path")
    runtime = (settings.get_str("runtime", "lua54") or "lua54").lower()
    if runtime not in RUNTIMES:
        raise settings.error("runtime", f"unknown Lua runtime {runtime!r}; use lua54 or luajit")
    sandbox = settings.get_bool("sandbox", True)
    url = settings.get_str("doveadm_url") or plugin_env.get("doveadm_url")
    api_key = settings.get_str("doveadm_api_key") or plugin_env.get("doveadm_api_key")
    doveadm = None
    if url or api_key:
        if not (url and api_key):
            missing = "doveadm_api_key" if url else "doveadm_url"
            raise settings.error(missing, "doveadm_url and doveadm_api_key must be set together")
        if not url.startswith(("http://", "https://")):
            raise settings.error("doveadm_url", f"{url!r} is not an http:// URL (e.g. http://127.0.0.1:8080)")
        doveadm = Doveadm(url, api_key, settings.get_time("doveadm_timeout", 10.0, minimum=0.1))
    section = settings.section("settings")
    script_settings = section.as_dict() if section is not None else {}
    if section is not None:
        for name in section:
            section.get_str(name)
        section.check_unknown()
    settings.check_unknown()
    return LuaConfig(
        file=path,
        script_settings=script_settings,
        runtime=runtime,
        sandbox=sandbox,
        doveadm=doveadm,
    )
