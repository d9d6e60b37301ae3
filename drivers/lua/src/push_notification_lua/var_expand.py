"""Dovecot's ``%`` variables for ``user:var_expand(template)``.

Supports the mail-user variables Dovecot 2.3 offers scripts (``%u %n %d %h %s %l %r %p``
and their ``%{long}`` names, ``%{uid}``, ``%{gid}``, ``%{session}``, ``%{userdb:key}`` from
the user's extra fields) and the ``L``/``U`` (lower/upper case) modifiers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from push_notification.transaction import User

_SHORT = {"u": "user", "n": "username", "d": "domain", "h": "home", "s": "service", "l": "lip", "r": "rip", "p": "pid"}
_TOKEN = re.compile(r"%([LU]*)(\{[^}]*\}|.)")


def variables(user: User) -> dict[str, str]:
    """The values of every long variable name for ``user``."""
    local, _, domain = user.username.partition("@")
    extra = {k: str(v) for k, v in user.extra.items() if isinstance(v, (str, int, float))}
    values = {
        "user": user.username,
        "username": local,
        "domain": domain,
        "home": user.home or "",
        "service": user.service,
        "session": user.session_id,
        "uid": "" if user.uid is None else str(user.uid),
        "gid": "" if user.gid is None else str(user.gid),
        "lip": extra.get("local_ip", extra.get("lip", "")),
        "rip": extra.get("remote_ip", extra.get("rip", "")),
        "pid": extra.get("pid", ""),
    }
    return values


def var_expand(template: str, user: User, extra: Mapping[str, str] | None = None) -> str:
    """Expand ``template`` for ``user``; an unknown name becomes ``UNSUPPORTED_VARIABLE_<name>``."""
    values = variables(user)
    userdb = {"home": values["home"], "uid": values["uid"], "gid": values["gid"], "user": user.username}
    userdb.update({k: str(v) for k, v in user.extra.items()})
    if extra:
        userdb.update(extra)

    def replace(match: re.Match[str]) -> str:
        modifiers, name = match.group(1), match.group(2)
        if name == "%":
            return "%"
        if name.startswith("{"):
            key = name[1:-1]
            if key.startswith("userdb:"):
                field, _, default = key[7:].partition(":")
                value = userdb.get(field, default)
            elif key in values:
                value = values[key]
            else:
                value = f"UNSUPPORTED_VARIABLE_{key}"
        elif name in _SHORT:
            value = values[_SHORT[name]]
        else:
            # Dovecot 2.3 expands an unknown variable to this text and succeeds (observed).
            value = f"UNSUPPORTED_VARIABLE_{name}"
        if "L" in modifiers:
            value = value.lower()
        if "U" in modifiers:
            value = value.upper()
        return value

    return _TOKEN.sub(replace, template)
