"""The ``-c/--config`` option, shared by every command and command group.

``push-notification queue -c FILE list`` and ``push-notification queue list -c FILE`` mean
the same: a subcommand without its own ``-c`` uses its group's. Without either (and without
``PUSH_NOTIFICATION_CONFIG``), root gets the system config when it exists, as the systemd
unit does, so ``serve`` and ``queue`` read the same queue file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from push_notification.config.ingress_address import ingress_url

CONFIG_ENV = "PUSH_NOTIFICATION_CONFIG"
#: Where the systemd unit's config lives (contrib/systemd/push-notification.service).
SYSTEM_CONFIG = "/etc/push-notification/push-notification.conf"

F = TypeVar("F", bound=Callable[..., Any])

config_option: Callable[[F], F] = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    help=f"Config file (Dovecot syntax). Default: {SYSTEM_CONFIG} for root when present, else built-in"
    f" (dlog enabled). Env: {CONFIG_ENV}. Accepted before or after the subcommand.",
)


def chosen_config(value: str | None = None) -> str | None:
    """The config file a command uses: its own ``-c``, else an enclosing group's, else the
    system config for root (when it exists), else ``None`` (the built-in default)."""
    if value:
        return value
    ctx: click.Context | None = click.get_current_context(silent=True)
    while ctx is not None:
        given = ctx.params.get("config_path")
        if given:
            return str(given)
        ctx = ctx.parent
    if os.geteuid() == 0 and os.path.isfile(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return None


def ingress_url_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--url``: the daemon's address or its full ingress URL; other paths get a warning."""
    try:
        url, warning = ingress_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if warning:
        click.echo(f"warning: {warning}", err=True)
    return url
