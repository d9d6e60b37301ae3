"""Where the daemon's ingress is: its path, its default address, and the URL a sender uses.

Shared by the daemon (which serves the path), ``send``/``replay`` and ``dovecot-config`` (which
accept the daemon's address or its full ingress URL), so all of them agree on one spelling.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

#: The path transactions are posted to.
TRANSACTIONS_PATH = "/v1/transactions"
#: The daemon's address when nothing else is configured (``listen = 127.0.0.1:8425``).
DEFAULT_URL = "http://127.0.0.1:8425"


def ingress_url(url: str) -> tuple[str, str | None]:
    """The full ingress URL for ``url`` (a daemon's address or its full ingress URL), and a
    warning when its path is neither; ``ValueError`` for something that is not an http(s) URL."""
    example = f"e.g. {DEFAULT_URL}"
    if "://" not in url:
        raise ValueError(f"{url!r} has no scheme; write http://{url.lstrip('/')} ({example})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc} ({example})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host ({example})")
    path = parts.path.rstrip("/")
    if path.endswith(TRANSACTIONS_PATH):
        return url, None
    full = parts._replace(path=path + TRANSACTIONS_PATH).geturl()
    if not path:
        return full, None
    return full, (
        f"{url}: the daemon's ingress is at {TRANSACTIONS_PATH}; using {full}"
        " (a reverse proxy's prefix?); any other path answers 404"
    )


def is_loopback_host(host: str) -> bool:
    """Whether only this machine reaches ``host`` (``localhost``, ``127.0.0.1``, ``::1``, empty)."""
    host = host.removeprefix("[").removesuffix("]")
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface
