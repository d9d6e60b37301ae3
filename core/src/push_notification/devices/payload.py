"""What a device push says: by default nothing a push service could read mail from.

The content-free payload names the account, the mailbox, the event and the unseen count, so an
app knows whom to sync and what badge to show; From, Subject and snippet go out only through
templates the admin writes (``title_template``, ``body_template``), which run in jinja2's
sandbox. ``payload_account = opaque`` replaces the user name with a keyed hash the app maps
back to its account (the push service then learns no address either).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from push_notification.events import Event
from push_notification.settings import Settings
from push_notification.templates import Template, TemplateError, event_fields, sandbox
from push_notification.transaction import Transaction


class PayloadBuilder:
    """An instance's payload: content-free, plus the admin's optional templates."""

    def __init__(self, settings: Settings, state_dir: Path | None) -> None:
        mode = (settings.get_str("payload_account", "user") or "user").lower()
        if mode not in ("user", "opaque"):
            raise settings.error("payload_account", "use user (the login name) or opaque (a keyed hash of it)")
        self._secret = _account_secret(state_dir) if mode == "opaque" else None
        env = sandbox()
        self.templates: dict[str, Template] = {}
        for field in ("title", "body"):
            source = settings.get_str(f"{field}_template")
            if source:
                try:
                    self.templates[field] = Template(env, source)
                except TemplateError as exc:
                    raise settings.error(f"{field}_template", exc.describe()) from None

    def account(self, user: str) -> str:
        if self._secret is None:
            return user
        return hmac.new(self._secret, user.encode(), hashlib.sha256).hexdigest()[:32]

    def build(self, txn: Transaction, events: Sequence[Event]) -> dict[str, Any]:
        """The payload for the waking ``events`` of ``txn`` (raises TemplateError)."""
        last = events[-1]
        payload: dict[str, Any] = {
            "account": self.account(txn.user.username),
            "mailbox": txn.mailbox,
            "event": last.name,
            "count": len(events),
        }
        if txn.status is not None:
            payload["unseen"] = txn.status.unseen
        if self.templates:
            context = {"event": event_fields(last), "user": txn.user.username, "mailbox": txn.mailbox,
                       "count": len(events), "unseen": payload.get("unseen")}  # fmt: skip
            for field, template in self.templates.items():
                payload[field] = template.render(context)
        return payload


def _account_secret(state_dir: Path | None) -> bytes:
    """The instance's key for opaque account ids, made once and kept (ids must stay stable)."""
    if state_dir is None:
        raise TemplateError("payload_account = opaque needs the daemon's state_dir")
    path = state_dir / "account-id.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        state_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        path.write_bytes(secret)
        path.chmod(0o600)
        return secret
