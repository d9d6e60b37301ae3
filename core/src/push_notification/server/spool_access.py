"""Whether the daemon may use the Dovecot bridge's spool, and if not, the fix that matches.

Dovecot writes the spool as the mail user; the daemon lists ``new/`` and deletes there. A
mismatch used to show as a silent stall: this says at start-up who the daemon runs as, who
owns the directory, and what to change (the spool reader then reports the same problem on
``/healthz`` until it is fixed).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

#: What the daemon needs on each directory: list it, and create/delete entries in it.
_NEEDED = os.R_OK | os.W_OK | os.X_OK


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def running_as() -> str:
    """``push-notification (uid 998, groups push-notification, mail)``."""
    uid = os.geteuid()
    groups = sorted({os.getegid(), *os.getgroups()})
    return f"{_user_name(uid)} (uid {uid}, groups {', '.join(_group_name(g) for g in groups)})"


def spool_access_problem(spool_dir: str | os.PathLike[str]) -> str | None:
    """One line naming the spool directory the daemon cannot use and the fix, or None."""
    spool = Path(spool_dir)
    for path in (spool, spool / "new", spool / "tmp"):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue  # created at start-up, or reported by the spool reader
        except PermissionError:
            return f"spool_dir {spool}: cannot reach {path} as {running_as()}; {_fix(spool, None, 0)}"
        if os.access(path, _NEEDED) or _read_only_mount(path):
            continue  # a read-only mount (ProtectSystem=strict) is the spool reader's to report
        owner, group = _user_name(info.st_uid), _group_name(info.st_gid)
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"spool_dir {spool}: {path} (owner {owner}, group {group}, mode {mode:04o}) is not readable and"
            f" writable by the daemon, which runs as {running_as()}; {_fix(spool, (owner, group), mode)}"
        )
    return None


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _fix(spool: Path, owner: tuple[str, str] | None, mode: int) -> str:
    me = _user_name(os.geteuid())
    if owner is None:
        return f"make {spool} and its parents searchable by {me}"
    user, group = owner
    chmod = "" if mode & 0o070 == 0o070 else f"make the spool group-writable (chmod 2770 {spool} {spool}/*) and "
    return (
        f"{chmod}let {me} join group {group} (systemd: SupplementaryGroups={group} in the unit;"
        f" else usermod -a -G {group} {me}), or run the daemon as {user}"
    )
