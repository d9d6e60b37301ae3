"""A running Dovecot's doveadm HTTP API: mailbox status and METADATA writes.

``mbox:status(...)`` asks it for mailboxes other than the transaction's own (whose status the
Dovecot bridge sends with the transaction) and after ``mbox:sync()``; ``user:metadata_set`` and
``mbox:metadata_set`` write through it, so Dovecot (and whatever reads its METADATA) sees them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from push_notification.settings import mask_url

from . import http_client

STATUS_FIELDS = ("messages", "recent", "unseen", "uidvalidity", "uidnext")


class DoveadmError(RuntimeError):
    """The lookup failed; the message is one line for the Lua error."""


@dataclass(frozen=True)
class Doveadm:
    """Where the doveadm HTTP API listens and the key it wants."""

    url: str
    api_key: str
    timeout: float = 10.0

    @property
    def endpoint(self) -> str:
        parts = urlsplit(self.url)
        if parts.path in ("", "/"):
            return self.url.rstrip("/") + "/doveadm/v1"
        return self.url

    def mailbox_status(self, username: str, mailbox: str) -> dict[str, int]:
        """``doveadm mailbox status -u USER messages recent unseen uidvalidity uidnext MAILBOX``."""
        params = {"user": username, "mailboxMask": [mailbox], "field": list(STATUS_FIELDS)}
        data = self._call("mailboxStatus", params, f"mailboxStatus({username}, {mailbox})")
        rows = [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []
        row = next((r for r in rows if r.get("mailbox") == mailbox), rows[0] if rows else None)
        if row is None:
            raise DoveadmError(f"{self._where}: mailboxStatus({username}, {mailbox}) returned no mailbox")
        return {key: int(row.get(key, 0)) for key in STATUS_FIELDS}

    def metadata_set(self, username: str, mailbox: str, key: str, value: str | None) -> None:
        """``doveadm mailbox metadata set|unset -u USER [-s] MAILBOX KEY [VALUE]``; mailbox ``""``
        is the server METADATA that ``user:metadata_set`` writes in Dovecot."""
        params: dict[str, object] = {"user": username, "mailbox": mailbox, "key": key}
        if mailbox == "":
            params["allowEmptyMailboxName"] = True
        command = "mailboxMetadataUnset" if value is None else "mailboxMetadataSet"
        if value is not None:
            params["value"] = value
        self._call(command, params, f"{command}({username}, {mailbox or 'server'}, {key})")

    @property
    def _where(self) -> str:
        return f"doveadm API {mask_url(self.endpoint)}"

    def _call(self, command: str, params: Mapping[str, object], what: str) -> object:
        """Run one doveadm command; its reply data, or DoveadmError naming what to check."""
        auth = base64.b64encode(self.api_key.encode()).decode()
        response = http_client.request(
            "POST",
            self.endpoint,
            [("Content-Type", "application/json"), ("Authorization", f"X-Dovecot-API {auth}")],
            json.dumps([[command, params, "lua"]]),
            timeout=self.timeout,
        )
        where = self._where
        if response.status >= 9000:
            raise DoveadmError(f"{where}: {response.reason} (check doveadm_url)")
        if response.status == 401 or response.status == 403:
            raise DoveadmError(f"{where}: {response.status} {response.reason} (check doveadm_api_key)")
        if response.status != 200:
            raise DoveadmError(f"{where}: {response.status} {response.reason}")
        try:
            reply = json.loads(response.payload)
            kind, data = reply[0][0], reply[0][1]
        except (ValueError, IndexError, KeyError, TypeError):
            raise DoveadmError(f"{where}: unexpected reply {response.payload[:200]!r}") from None
        if kind == "error":
            code = data.get("exitCode") if isinstance(data, dict) else None
            hint = " (mailbox does not exist)" if code == 68 else ""
            raise DoveadmError(f"{where}: {what} failed: exit code {code}{hint}")
        return data
