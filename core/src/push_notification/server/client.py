"""Posting transactions to a running daemon (``send`` and ``replay``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aiohttp

from push_notification.config.ingress_address import DEFAULT_URL, TRANSACTIONS_PATH, ingress_url
from push_notification.errors import PushNotificationError
from push_notification.settings import mask_url

__all__ = ["DEFAULT_URL", "IngressClient", "read_json_lines"]


class IngressClient:
    """A keep-alive session to one daemon's ingress."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 10.0) -> None:
        try:
            self.endpoint = ingress_url(url)[0]  # the CLI shows the warning (cli_options.py)
        except ValueError as exc:
            raise PushNotificationError(f"--url {exc}") from None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> IngressClient:
        self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, transaction: dict[str, Any]) -> str:
        """Post one transaction; returns its id, or raises one clear line."""
        assert self._session is not None, "use 'async with IngressClient(...)'"
        try:
            async with self._session.post(self.endpoint, json=transaction) as response:
                text = await response.text()
                if response.status == 202:
                    return str(json.loads(text)["id"])
                try:
                    reason = json.loads(text)["error"]
                except (ValueError, KeyError, TypeError):
                    reason = text.strip()[:200] or response.reason
                hint = _HINTS.get(response.status, "")
                raise PushNotificationError(
                    f"daemon at {mask_url(self.endpoint)} answered {response.status}: {reason}{hint}"
                )
        except aiohttp.ClientError as exc:
            raise PushNotificationError(
                f"cannot reach the daemon at {mask_url(self.endpoint)}: {exc};"
                " is 'push-notification serve' running there?"
            ) from None
        except TimeoutError:
            raise PushNotificationError(f"the daemon at {mask_url(self.endpoint)} did not answer in time") from None


#: What to do about an answer, beside the daemon's own reason.
_HINTS = {
    401: "; pass the daemon's ingress_token with --token or the PUSH_NOTIFICATION_TOKEN environment variable",
    404: f"; no ingress at this path: give the daemon's address ({DEFAULT_URL}) or its {TRANSACTIONS_PATH} URL",
}


def read_json_lines(lines: Iterable[str], source: str) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PushNotificationError(f"{source}:{number}: invalid JSON: {exc.msg}") from None
        yield number, data
