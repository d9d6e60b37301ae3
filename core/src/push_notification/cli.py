"""The ``push-notification`` command line (click, as llm and datasette do).

Every user mistake is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from push_notification.config import load_config, render_effective
from push_notification.config.cli_options import chosen_config, config_option, ingress_url_callback
from push_notification.config.ingress_address import TRANSACTIONS_PATH
from push_notification.drivers import implemented_hooks, installed_drivers
from push_notification.errors import PushNotificationError
from push_notification.events import event_type
from push_notification.queue.cli import queue_group
from push_notification.server.client import DEFAULT_URL, IngressClient, read_json_lines
from push_notification.server.metadata import MetadataStore, open_metadata
from push_notification.transaction import transaction_from_dict

if TYPE_CHECKING:
    from push_notification.server.redis_metadata import RedisMetadataStore

TOKEN_ENV = "PUSH_NOTIFICATION_TOKEN"


class Cli(click.Group):
    """Turns our errors into ``push-notification: error: <one line>``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PushNotificationError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


url_option = click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    callback=ingress_url_callback,
    help=f"The daemon's address ({DEFAULT_URL}) or its full ingress URL ({DEFAULT_URL}{TRANSACTIONS_PATH}).",
)
token_option = click.option("--token", envvar=TOKEN_ENV, help=f"Ingress token. Env: {TOKEN_ENV}.")


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="push-notification")
@config_option
def cli(config_path: str | None) -> None:
    """Turn mail-store events (RFC 5423) into notifications delivered by pluggable drivers."""


@cli.command()
@config_option
@click.option("--listen", help="HOST:PORT, [IPv6]:PORT or unix:/path (overrides the 'listen' setting).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Overrides 'log_level'.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Overrides 'log_format'.")
def serve(config_path: str | None, listen: str | None, log_level: str | None, log_format: str | None) -> None:
    """Run the daemon: the HTTP ingress and every configured driver instance."""
    from dataclasses import replace

    from push_notification.config.daemon import is_local, parse_listen
    from push_notification.server import event_loop
    from push_notification.server.daemon import Daemon
    from push_notification.server.logs import setup_logging

    config = load_config(chosen_config(config_path))
    if listen:
        try:
            listen = parse_listen(listen)
        except ValueError as exc:
            raise PushNotificationError(f"--listen {listen}: {exc}") from None
        if not config.ingress_token and not is_local(listen):
            raise PushNotificationError(
                f"--listen {listen} lets other hosts submit transactions; set ingress_token in the config"
                " (or listen on 127.0.0.1, [::1] or a unix: socket)"
            )
        config = replace(config, listen=listen)
    config = replace(config, log_level=log_level or config.log_level, log_format=log_format or config.log_format)
    setup_logging(config.log_level, config.log_format)

    async def run() -> None:
        await Daemon(config).run()

    event_loop.run(run(), config.event_loop)


@cli.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Validate the config, load every driver it names, print the effective config (secrets masked)."""
    from push_notification.devices.service import DeviceService
    from push_notification.devices.sqlite import SqliteDeviceRegistry
    from push_notification.server.daemon import build_instances

    config = load_config(chosen_config(config_path))
    # An empty registry in memory: device drivers need one to start, the check must not open the real file.
    build_instances(config, MetadataStore(), DeviceService(SqliteDeviceRegistry(), {}))
    click.echo(render_effective(config), nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def drivers(as_json: bool) -> None:
    """List installed drivers: name, distribution, version, hooks implemented."""
    rows = []
    for name, driver in sorted(installed_drivers().items()):
        try:
            hooks = implemented_hooks(driver.load())
        except PushNotificationError as exc:
            hooks = [f"<failed to load: {exc}>"]
        rows.append({"name": name, "distribution": driver.distribution, "version": driver.version, "hooks": hooks})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No drivers installed. Install one, e.g.: pip install push-notification-dlog")
    for row in rows:
        click.echo(f"{row['name']:<12} {row['distribution']} {row['version']}")
        click.echo(f"{'':<12} hooks: {', '.join(row['hooks']) or 'none'}")


@cli.command()
@click.argument("event")
@click.option("--user", "-u", required=True, help="The mail user.")
@click.option("--mailbox", "-m", default="INBOX", show_default=True, help="The mailbox (UTF-8 name).")
@click.option(
    "--field", "-f", "fields", multiple=True, metavar="KEY=VALUE",
    help="An event field, e.g. uid=1, uid_validity=1700000000, subject=Hi, flags='\\Seen'. Repeatable.",
)  # fmt: skip
@url_option
@token_option
def send(event: str, user: str, mailbox: str, fields: tuple[str, ...], url: str, token: str | None) -> None:
    """Post one event, as a one-event transaction, to a running daemon."""
    name = event_type(event).name
    data: dict[str, Any] = {"name": name, "mailbox": mailbox}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PushNotificationError(f"--field {item!r}: expected KEY=VALUE, e.g. --field uid=1")
        data[key.strip()] = value
    transaction = {"user": {"username": user}, "mailbox": mailbox, "events": [data]}
    transaction_from_dict(transaction)  # a mistake is reported here, before anything is sent

    async def post() -> str:
        async with IngressClient(url, token) as client:
            return await client.post(transaction)

    click.echo(f"accepted transaction {asyncio.run(post())}")


@cli.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@url_option
@token_option
def replay(file: Any, url: str, token: str | None) -> None:
    """Post recorded transactions (JSON lines, one transaction per line; - for stdin)."""
    source = getattr(file, "name", "<stdin>")

    async def post_all() -> int:
        sent = 0
        async with IngressClient(url, token) as client:
            for number, data in read_json_lines(file, source):
                try:
                    transaction_from_dict(data)
                    await client.post(data)
                except PushNotificationError as exc:
                    raise PushNotificationError(
                        f"{source}:{number}: {exc} ({sent} earlier transaction(s) were accepted)"
                    ) from None
                sent += 1
        return sent

    click.echo(f"accepted {asyncio.run(post_all())} transaction(s)")


@cli.group()
@config_option
def metadata(config_path: str | None) -> None:
    """Server METADATA per user (as doveadm mailbox metadata): OX activation."""


def _store(config_path: str | None) -> MetadataStore | RedisMetadataStore:
    return open_metadata(load_config(chosen_config(config_path)))


def _metadata_options(func: Any) -> Any:
    options = [
        config_option,
        click.option("-u", "--user", required=True, help="The mail user."),
        click.option(
            "-s", "server", default="", metavar='""',
            help='Server metadata (-s ""), as doveadm; the only kind the daemon keeps.',
        ),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@metadata.command("set")
@_metadata_options
@click.argument("key")
@click.argument("value")
def metadata_set(config_path: str | None, user: str, server: str, key: str, value: str) -> None:
    """Set KEY to VALUE.

    For example KEY /private/vendor/vendor.dovecot/http-notify, VALUE user=11@3 (OX). The
    daemon's store serves transactions that carry no METADATA of their own; the Dovecot bridge
    forwards Dovecot's, which then wins."""
    _store(config_path).set(user, key, value)


@metadata.command("get")
@_metadata_options
@click.argument("key")
def metadata_get(config_path: str | None, user: str, server: str, key: str) -> None:
    """Print KEY's value (exit 1 when unset)."""
    value = _store(config_path).get(user, key)
    if value is None:
        raise click.ClickException(f"{key} is not set for {user}")
    click.echo(value)


@metadata.command("unset")
@_metadata_options
@click.argument("key")
def metadata_unset(config_path: str | None, user: str, server: str, key: str) -> None:
    """Remove KEY."""
    _store(config_path).unset(user, key)


def _add_feature_commands() -> None:
    """Commands that live beside the feature they serve."""
    from push_notification.devices.cli import devices_group
    from push_notification.dovecot.setup import dovecot_config
    from push_notification.scaffold import new_driver

    cli.add_command(new_driver)
    cli.add_command(queue_group)
    cli.add_command(devices_group)
    cli.add_command(dovecot_config, "dovecot-config")


_add_feature_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="push-notification")


if __name__ == "__main__":
    main()
