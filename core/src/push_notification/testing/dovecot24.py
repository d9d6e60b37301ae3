"""A real Dovecot 2.4 for tests: the harness's :class:`Dovecot`, run inside a Debian chroot.

Debian bookworm ships Dovecot 2.3; 2.4 comes from trixie, whose packages cannot be installed
beside bookworm's libc, so ``scripts/install-dovecot24`` builds a trixie chroot with them. This
class keeps the instance's directory inside that chroot (visible on the host under
``chroot/tmp/…``), writes 2.4 syntax and runs ``chroot DIR dovecot -F -c CONFIG``. The chroot
shares the host's network, so the IMAP and LMTP ports are reached as usual::

    with Dovecot24(extra_config=render_snippet(options, "2.4"), mail_plugins="") as dovecot:
        dovecot.deliver("Subject: hi\\r\\n\\r\\nbody\\r\\n", "alice@example.com")

Needs root (chroot). Mail processes run as the chroot's ``mail`` account.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from push_notification.testing.dovecot import LDA_BINARY, Dovecot, DovecotUnavailable

__all__ = ["DEFAULT_CHROOT", "Dovecot24", "dovecot24_missing", "dovecot24_version"]

#: Where ``scripts/install-dovecot24`` puts the chroot (``PN_DOVECOT24_ROOT`` overrides).
DEFAULT_CHROOT = Path(os.environ.get("PN_DOVECOT24_ROOT", "/var/lib/pn-dovecot24"))
_INSTALL_HINT = "run scripts/install-dovecot24 as root"


def dovecot24_missing(chroot: Path = DEFAULT_CHROOT) -> str | None:
    """Why the Dovecot 2.4 chroot cannot be used here, or ``None``."""
    if not (chroot / "usr/sbin/dovecot").exists():
        return f"no Dovecot 2.4 chroot in {chroot}: {_INSTALL_HINT}"
    if not (chroot / "usr/lib/dovecot/modules/lib22_push_notification_lua_plugin.so").exists():
        return f"the chroot {chroot} lacks the Lua push driver: {_INSTALL_HINT}"
    if os.geteuid() != 0:
        return f"running Dovecot in the chroot {chroot} needs root"
    return None


def dovecot24_version(chroot: Path = DEFAULT_CHROOT) -> str:
    """``dovecot --version`` inside the chroot, e.g. ``2.4.1-4 (7d8c0e5759)``."""
    argv = ["chroot", str(chroot), "/usr/sbin/dovecot", "--version"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def _chroot_account(chroot: Path, names: list[str]) -> tuple[int, int]:
    entries: dict[str, tuple[int, int]] = {}
    for line in (chroot / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 4:
            entries[fields[0]] = (int(fields[2]), int(fields[3]))
    for name in names:
        if name in entries:
            return entries[name]
    raise DovecotUnavailable(f"no account {' or '.join(names)} in {chroot}/etc/passwd for the mail processes")


class Dovecot24(Dovecot):
    """:class:`Dovecot` with Dovecot 2.4 from ``chroot`` (default :data:`DEFAULT_CHROOT`).

    ``plugin`` entries become top-level settings (2.4 has no ``plugin { }`` block);
    ``mail_plugins`` is a space-separated list as for 2.3.
    """

    def __init__(self, *, chroot: Path | None = None, **kwargs: Any) -> None:
        self.chroot = Path(chroot or DEFAULT_CHROOT).resolve()
        if kwargs.get("pop3"):
            raise ValueError("the Dovecot 2.4 chroot has no POP3 server")
        super().__init__(**kwargs)

    # The hooks of Dovecot: binaries, account and paths inside the chroot.
    def _find_binary(self) -> str:
        reason = dovecot24_missing(self.chroot)
        if reason is not None:
            raise DovecotUnavailable(reason)
        return "/usr/sbin/dovecot"

    def _mail_account(self, name: str | None) -> tuple[int, int]:
        return _chroot_account(self.chroot, [name] if name else ["mail", "nobody"])

    def _temp_parent(self) -> str | None:
        return str(self.chroot / "tmp")

    def conf_path(self, path: Path) -> str:
        """``path`` (on the host, inside the chroot) as Dovecot in the chroot sees it."""
        try:
            return "/" + str(Path(path).resolve().relative_to(self.chroot))
        except ValueError:
            raise ValueError(f"{path} is outside the chroot {self.chroot}; Dovecot 2.4 cannot see it") from None

    def _command(self, program: str, *args: str) -> list[str]:
        binaries = {"dovecot": "/usr/sbin/dovecot", "dovecot-lda": LDA_BINARY}
        return ["chroot", str(self.chroot), binaries.get(program, f"/usr/bin/{program}"), *args]

    def render_config(self) -> str:
        """The dovecot.conf text in 2.4 syntax for the current ports and options."""
        path = self.conf_path
        plugins = "".join(f"  {name} = yes\n" for name in self.mail_plugins.split())
        mail_plugins = f"mail_plugins {{\n{plugins}}}\n" if plugins else ""
        settings = "".join(f"{key} = {value}\n" for key, value in self.plugin.items())
        env = "".join(f"  {key} = {value}\n" for key, value in self.environment.items())
        import_environment = f"import_environment {{\n{env}}}\n" if env else ""
        doveadm = ""
        if self.doveadm_port is not None:
            doveadm = (
                f"doveadm_api_key = {self.doveadm_api_key}\n"
                "service doveadm {\n"
                f"  inet_listener http {{\n    listen = 127.0.0.1\n    port = {self.doveadm_port}\n  }}\n"
                "}\n"
            )
        return f"""# Written by push_notification.testing.dovecot24 for one test instance.
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
instance_name = {self.instance_name}
base_dir = {path(self.root / "run")}
state_dir = {path(self.root / "state")}
log_path = {path(self.log_path)}
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_debug = {"yes" if self.mail_debug else "no"}
{import_environment}passdb passwd-file {{
  passwd_file_path = {path(self.root / "passwd")}
}}
userdb passwd-file {{
  passwd_file_path = {path(self.root / "passwd")}
}}
mail_driver = maildir
mail_path = ~/Maildir
mail_attribute {{
  dict file {{
    path = %{{home}}/dovecot-attributes
  }}
}}
{mail_plugins}namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  imap_metadata = yes
}}
service imap-login {{
  inet_listener imap {{
    listen = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    listen = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
{doveadm}{settings}{self.extra_config}
"""
