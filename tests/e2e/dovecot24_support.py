"""Dovecot 2.4 (the trixie chroot of scripts/install-dovecot24) wired to the bridge script."""

from __future__ import annotations

from typing import Any

from e2e_support import require, take_spool_files
from push_notification.dovecot.setup import DEFAULT_INGRESS, BridgeOptions, install_script, render_snippet
from push_notification.testing.dovecot24 import Dovecot24, dovecot24_missing


def require_dovecot24() -> None:
    """Call at the top of a test module: under CI=true (whose nox session builds the chroot)
    a missing Dovecot 2.4 fails the run, elsewhere the module is skipped with the reason."""
    require(dovecot24_missing(), "Dovecot 2.4")


class BridgedDovecot24(Dovecot24):
    """Dovecot 2.4 configured by the snippet ``push-notification dovecot-config --version 2.4``
    prints (mail_plugins and the ``push_notification bridge { driver = lua … }`` block), alone:
    ``mail_plugins`` (default none) are loaded besides.

    ``spool`` is the bridge's spool directory inside the chroot, owned by the mail account.
    ``lua_settings`` adds script settings the snippet does not print (e.g. http_pause_secs).
    """

    def __init__(
        self,
        transport: str = "spool",
        *,
        url: str = DEFAULT_INGRESS,
        token: str | None = None,
        status: bool = True,
        timeout_msecs: int = 1000,
        lua_settings: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mail_plugins", "")
        super().__init__(**kwargs)
        self.spool = self.make_spool()
        script = install_script(self.root / "share")
        self.options = BridgeOptions(
            script_path=self.conf_path(script),
            transport=transport,
            spool=self.conf_path(self.spool),
            url=url,
            token=token,
            timeout_msecs=timeout_msecs,
            status=status,
        )
        snippet = render_snippet(self.options, "2.4")
        extra = "".join(f"    {key} = {value}\n" for key, value in (lua_settings or {}).items())
        self.extra_config = snippet.replace("  lua_settings {\n", "  lua_settings {\n" + extra, 1) + self.extra_config

    def take_spool(self) -> list[bytes]:
        """The files in ``spool/new`` as written (oldest first), removed from the spool."""
        return take_spool_files(self.spool)
