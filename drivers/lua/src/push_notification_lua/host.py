"""The Python side of the Lua API: what ``dovecot.*``, the user and mailbox objects and the
provided modules call.

Methods return error values instead of raising, so the Lua glue raises a Lua error at the
script's own line (``x.lua:12: ...``), as Dovecot's C functions do with ``luaL_error``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from push_notification import Metadata
from push_notification.transaction import Transaction, User

from . import http_client, json_codec
from .doveadm import Doveadm, DoveadmError
from .var_expand import var_expand

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_ASK_DOVECOT = "set doveadm_url and doveadm_api_key so the lua driver can ask Dovecot"
_NO_STATUS = (
    "mailbox status for {mailbox!r} is unknown: only the transaction's own mailbox comes with"
    " the transaction; " + _ASK_DOVECOT
)
_NO_SNAPSHOT = (
    "mailbox status for {mailbox!r} is unknown: this transaction came without a status snapshot"
    " (the Dovecot bridge takes one for transactions on messages unless its status setting is no);"
    " " + _ASK_DOVECOT
)
_METADATA_LOCAL = (
    "{call}: Dovecot does not see METADATA the lua driver writes without the doveadm API;"
    " kept in the daemon's metadata store only; " + _ASK_DOVECOT + " and write it there"
)


class _Item:
    """What scripts see as ``user.item`` and ``mbox.item``: in Dovecot, a userdata holding the
    C struct, opaque to Lua. A Python object reaches Lua as userdata too."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "item"


class LuaHost:
    """Callbacks for one Lua state. Lua sees only public methods (no ``_`` names)."""

    def __init__(
        self,
        *,
        log: logging.Logger,
        settings: Mapping[str, str],
        plugin_env: Mapping[str, str],
        metadata: Metadata | None,
        doveadm: Doveadm | None,
        script: str,
    ) -> None:
        self._log = log
        self._settings = settings
        self._plugin_env = plugin_env
        self._metadata = metadata
        self._doveadm = doveadm
        self._script = script
        self._runtime: Any = None
        self._lua_type: Any = None
        self._rawequal: Any = None
        #: The transaction being delivered (its user, status snapshot, forwarded metadata).
        self.txn: Transaction | None = None
        #: ``user.item`` / ``mbox.item``.
        self.item = _Item()
        self._warned_local_metadata = False

    def _bind(self, runtime: Any, lua_type: Any) -> None:
        self._runtime = runtime
        self._lua_type = lua_type
        self._rawequal = runtime.eval("rawequal")

    def _table(self, value: Mapping[str, Any]) -> Any:
        return self._runtime.table_from(value, recursive=True)

    # ------------------------------------------------------------ logging
    def log(self, level: str, text: str, fields: Any, name: str | None) -> None:
        extra: dict[str, Any] = {"lua_script": self._script}
        if fields is not None:
            extra["lua_fields"] = dict(fields.items())
        if name is not None:
            extra["lua_event"] = name
        self._log.log(_LEVELS.get(level, logging.INFO), "%s", text, extra=extra)

    # ------------------------------------------------------------ user
    def _user(self, username: str) -> User:
        if self.txn is not None and self.txn.user.username == username:
            return self.txn.user
        return User(username=username)

    def plugin_getenv(self, key: str) -> str | None:
        """The instance's settings first, then the global ``plugin { }`` block."""
        if key in self._settings:
            return self._settings[key]
        return self._plugin_env.get(key)

    def var_expand(self, username: str, template: str) -> tuple[str | None, str | None]:
        return var_expand(template, self._user(username)), None

    # ------------------------------------------------------------ metadata
    def _check(self, key: str) -> str | None:
        if not (key.startswith("/private/") or key.startswith("/shared/")):
            return "Invalid key prefix, must be /private/ or /shared/"
        if self._metadata is None:
            return "no metadata store is configured for the daemon (metadata_path)"
        return None

    def metadata_get(self, username: str, mailbox: str, key: str) -> tuple[bool, str | None]:
        error = self._check(key)
        if error is not None:
            return False, error
        assert self._metadata is not None
        value = self._metadata.get(username, key, mailbox)
        if value is None and mailbox == "" and self.txn is not None and self.txn.user.username == username:
            # server metadata the Dovecot bridge forwarded with the transaction
            value = self.txn.metadata.get(key)
        return True, value

    def metadata_set(self, username: str, mailbox: str, key: str, value: str | None) -> tuple[bool, str | None]:
        """Into Dovecot's METADATA through the doveadm API when configured (what a script that
        flags something for its mail backend needs); else the daemon's own store, said once."""
        if not (key.startswith("/private/") or key.startswith("/shared/")):
            return False, "Invalid key prefix, must be /private/ or /shared/"
        if self._doveadm is not None:
            try:
                self._doveadm.metadata_set(username, mailbox, key, value)
            except DoveadmError as exc:
                return False, str(exc)
            return True, None
        error = self._check(key)
        if error is not None:
            return False, f"{error}, and Dovecot's METADATA is out of reach: {_ASK_DOVECOT}"
        assert self._metadata is not None
        if not self._warned_local_metadata:
            self._warned_local_metadata = True
            what = "mbox:metadata_set" if mailbox else "user:metadata_set"
            self._log.warning(_METADATA_LOCAL.format(call=what), extra={"lua_script": self._script})
        self._metadata.set(username, key, value, mailbox)
        return True, None

    def metadata_list(self, username: str, mailbox: str, prefix: str) -> tuple[bool, Any]:
        error = self._check(prefix)
        if error is not None:
            return False, error
        assert self._metadata is not None
        items: dict[str, str] = {}
        if mailbox == "" and self.txn is not None and self.txn.user.username == username:
            items.update({k: v for k, v in self.txn.metadata.items() if k.startswith(prefix)})
        items.update(self._metadata.list(username, prefix, mailbox))
        return True, self._table(items)

    # ------------------------------------------------------------ mailbox status
    def mailbox_sync(self, username: str, mailbox: str) -> tuple[Any, str | None]:
        """``mbox:sync()``: with the doveadm API, the mailbox as Dovecot shows it now (what the
        object's later ``status()`` returns); without, nothing to do: the bridge's snapshot was
        taken from a synced view."""
        if self._doveadm is None:
            return None, None
        try:
            return self._table(self._doveadm.mailbox_status(username, mailbox)), None
        except DoveadmError as exc:
            return None, f"mailbox_sync({mailbox}) failed: {exc}"

    def mailbox_status(self, username: str, mailbox: str, items: float, synced: Any = None) -> tuple[Any, str | None]:
        values: dict[str, int] | None = None
        txn = self.txn
        own = txn is not None and txn.mailbox == mailbox and txn.user.username == username
        if synced is not None:
            values = {key: int(synced[key]) for key in ("messages", "recent", "unseen", "uidvalidity", "uidnext")}
        elif own and txn is not None and txn.status is not None:
            values = txn.status.to_dict()
        elif self._doveadm is not None:
            try:
                values = self._doveadm.mailbox_status(username, mailbox)
            except DoveadmError as exc:
                return None, f"mailbox_get_status({mailbox}, {int(items)}) failed: {exc}"
        if values is None:
            return None, (_NO_SNAPSHOT if own else _NO_STATUS).format(mailbox=mailbox)
        table: dict[str, Any] = {"mailbox": mailbox}
        for key in ("messages", "recent", "unseen", "uidvalidity", "uidnext"):
            table[key] = float(values[key])
        for key in ("first_unseen_seq", "first_recent_uid", "highest_modseq", "highest_pvt_modseq"):
            table[key] = 0.0
        table["permanent_flags"] = 0.0
        table["flags"] = 0.0
        for key in (
            "permanent_keywords",
            "allow_new_keywords",
            "nonpermanent_modseqs",
            "no_modseq_tracking",
            "have_guids",
            "have_save_guids",
            "have_only_guid128",
        ):
            table[key] = False
        return self._table(table), None

    # ------------------------------------------------------------ HTTP
    def http_request(
        self,
        method: str,
        url: str,
        headers: Any,
        body: str | None,
        body_hex: bool,
        timeout_msecs: float,
        connect_timeout_msecs: float,
        attempts: float,
        user_agent: str | None,
        lib_http: bool,
    ) -> Any:
        pairs = [(str(h[1]), str(h[2])) for h in headers.values()] if headers is not None else []
        if user_agent is not None:
            pairs.insert(0, ("User-Agent", str(user_agent)))
        timeout = (timeout_msecs or connect_timeout_msecs or 0) / 1000 or http_client.DEFAULT_TIMEOUT
        data = bytes.fromhex(body) if body is not None and body_hex else body
        response = http_client.request(
            str(method), str(url), pairs, data, timeout=timeout, attempts=int(attempts), lib_http=bool(lib_http)
        )
        table: dict[str, Any] = {
            "status": response.status,
            "reason": response.reason,
            "headers": response.headers,
            "payload": response.payload,
            "status_line": response.status_line,
        }
        if response.error is not None:
            table["error"] = response.error
        return self._table(table)

    # ------------------------------------------------------------ JSON, time
    def json_encode(self, value: Any, style: str, null: Any) -> tuple[str | None, str | None]:
        try:
            return json_codec.encode(value, style, self._lua_type, null, self._rawequal), None
        except json_codec.JsonError as exc:
            return None, str(exc)

    def json_decode(self, text: str, style: str, null: Any) -> tuple[Any, str | None]:
        try:
            return json_codec.decode(self._runtime, text, style, null), None
        except json_codec.JsonError as exc:
            return None, str(exc)

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, float(seconds)))
