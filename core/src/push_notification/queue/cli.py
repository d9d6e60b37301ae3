"""``push-notification queue``: see, retry and purge the dead letters of the durable queue.

Like ``postqueue``/``postsuper`` for Postfix: once accepted, a transaction is delivered or
visibly dead, and an admin decides what happens to the dead. Works against the queue file
directly, with or without a running daemon (which picks up retried letters within a second).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from push_notification.config import load_config
from push_notification.errors import PushNotificationError
from push_notification.queue.dead_letters import DeadLetterBook, SqliteDeadLetters, open_dead_letters
from push_notification.queue.sqlite_store import DeadLetter, Filter
from push_notification.settings import parse_time


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every ``queue`` command takes to pick dead letters."""
    options = [
        click.option("--instance", "-i", help="Only this driver instance (push_notification NAME)."),
        click.option("--user", "-u", help="Only this mail user."),
        click.option("--older-than", callback=_duration, help="Only letters accepted at least this long ago (1h)."),
        click.option("--newer-than", callback=_duration, help="Only letters accepted at most this long ago (30 mins)."),
        click.option("--id", "txn_id", help="Only the transaction with this id."),
        click.option(
            "--queue-path",
            envvar="PUSH_NOTIFICATION_QUEUE_PATH",
            help="The queue file (default: queue_path from the config).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _open(queue_path: str | None) -> DeadLetterBook:
    try:
        if queue_path is not None:
            return SqliteDeadLetters(queue_path)
        config = load_config(_group_config())
        return open_dead_letters(config.queue, path=config.queue_path, url=config.queue_url, source=config.source)
    except PushNotificationError as exc:
        raise click.ClickException(str(exc)) from None


def _group_config() -> str | None:
    """``-c`` given to ``queue`` itself (``push-notification queue -c FILE list``)."""
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None:
        if ctx.command.name == "queue":
            value = ctx.params.get("config_path")
            return str(value) if value else None
        ctx = ctx.parent
    return None


def _filter(options: dict[str, Any]) -> Filter:
    return Filter(
        instance=options.get("instance"),
        user=options.get("user"),
        older_than=options.get("older_than"),
        newer_than=options.get("newer_than"),
        txn_id=options.get("txn_id"),
    )


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _as_dict(letter: DeadLetter) -> dict[str, Any]:
    return {
        "instance": letter.instance,
        "id": letter.txn_id,
        "user": letter.username,
        "accepted": _when(letter.accepted_at),
        "failed": _when(letter.failed_at),
        "attempts": letter.attempts,
        "error": letter.last_error,
    }


@click.group("queue")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="PUSH_NOTIFICATION_CONFIG",
    help="The daemon's config file, to find queue_path. Env: PUSH_NOTIFICATION_CONFIG.",
)
def queue_group(config_path: str | None) -> None:
    """Dead letters of the durable queue: list, show, retry, purge."""


@queue_group.command("list")
@_filters
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=int, default=None, help="Show at most this many.")
def list_command(queue_path: str | None, as_json: bool, limit: int | None, **options: Any) -> None:
    """List dead letters, oldest first."""
    conn = _open(queue_path)
    try:
        count = 0
        for letter in conn.dead_letters(_filter(options), limit=limit):
            count += 1
            if as_json:
                click.echo(json.dumps(_as_dict(letter)))
            else:
                if count == 1:
                    click.echo(f"{'ACCEPTED':19}  {'INSTANCE':12}  {'USER':20}  {'ID':32}  TRIES  ERROR")
                click.echo(
                    f"{_when(letter.accepted_at):19}  {letter.instance:12}  {letter.username:20}"
                    f"  {letter.txn_id:32}  {letter.attempts:5}  {letter.last_error or ''}"
                )
        if not as_json:
            click.echo(f"{count} dead letter(s)", err=True)
    finally:
        conn.close()


@queue_group.command("show")
@click.argument("instance")
@click.argument("txn_id")
@click.option("--queue-path", envvar="PUSH_NOTIFICATION_QUEUE_PATH", help="The queue file.")
def show_command(instance: str, txn_id: str, queue_path: str | None) -> None:
    """Show one dead letter and its transaction (INSTANCE and ID as `queue list` prints them)."""
    conn = _open(queue_path)
    try:
        found = conn.dead_letter_body(instance, txn_id)
    finally:
        conn.close()
    if found is None:
        raise click.ClickException(
            f"no transaction {txn_id} queued for push_notification {instance}; see push-notification queue list"
        )
    letter, body = found
    data = _as_dict(letter)
    data["state"] = letter.state
    data["transaction"] = json.loads(body)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@queue_group.command("retry")
@_filters
def retry_command(queue_path: str | None, **options: Any) -> None:
    """Send matching dead letters back for delivery (with a fresh retry deadline)."""
    conn = _open(queue_path)
    try:
        count = conn.requeue(_filter(options))
    finally:
        conn.close()
    click.echo(f"requeued {count} dead letter(s); a running daemon delivers them within a second")


@queue_group.command("purge")
@_filters
@click.option("--all", "everything", is_flag=True, help="Purge every dead letter (needed without a filter).")
def purge_command(queue_path: str | None, everything: bool, **options: Any) -> None:
    """Delete matching dead letters for good."""
    which = _filter(options)
    if which == Filter() and not everything:
        raise click.UsageError("purge needs a filter (--instance, --user, --older-than, ...) or --all")
    conn = _open(queue_path)
    try:
        count = conn.purge(which)
    finally:
        conn.close()
    click.echo(f"purged {count} dead letter(s)")
