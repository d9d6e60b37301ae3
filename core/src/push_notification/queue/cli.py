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
from push_notification.config.cli_options import chosen_config, config_option
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


_queue_path_option = click.option(
    "--queue-path",
    envvar="PUSH_NOTIFICATION_QUEUE_PATH",
    help="The queue file (default: queue_path from the config).",
)


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every ``queue`` command takes to pick dead letters."""
    options = [
        click.option("--instance", "-i", help="Only this driver instance (push_notification NAME)."),
        click.option("--user", "-u", help="Only this mail user."),
        click.option("--older-than", callback=_duration, help="Only letters accepted at least this long ago (1h)."),
        click.option("--newer-than", callback=_duration, help="Only letters accepted at most this long ago (30 mins)."),
        click.option("--id", "txn_id", help="Only the transaction with this id."),
        _queue_path_option,
        config_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _open(queue_path: str | None, config_path: str | None = None) -> DeadLetterBook:
    """The queue's book, named on stderr (which queue, from which config) so a count of 0 is
    never a surprise from reading another daemon's queue."""
    try:
        if queue_path is None:
            config = load_config(chosen_config(config_path))
            book = open_dead_letters(config.queue, path=config.queue_path, url=config.queue_url, source=config.source)
            origin = f"{'queue_url' if config.queue == 'redis' else 'queue_path'} of {config.source}"
        else:
            book = SqliteDeadLetters(queue_path)
            origin = "--queue-path"
    except PushNotificationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{book.where()} ({origin})", err=True)
    return book


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
@config_option
def queue_group(config_path: str | None) -> None:
    """The durable queue: status; dead letters: list, show, retry, purge."""


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@queue_group.command("status")
@_queue_path_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per instance.")
def status_command(queue_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Per instance: pending, retrying (and the next attempt), dead letters, the oldest's age.

    Counts what the queue file holds: a running daemon keeps a spooled transaction in memory
    until an instance has to retry it."""
    conn = _open(queue_path, config_path)
    try:
        rows = conn.status()
    finally:
        conn.close()
    now = time.time()
    for row in rows:
        age = None if row.oldest_accepted is None else now - row.oldest_accepted
        if as_json:
            data = {
                "instance": row.instance,
                "pending": row.pending,
                "retrying": row.retrying,
                "next_attempt": _when(row.next_attempt) if row.next_attempt else None,
                "dead": row.dead,
                "oldest_age_seconds": None if age is None else round(age, 3),
            }
            click.echo(json.dumps(data))
            continue
        if row is rows[0]:
            click.echo(f"{'INSTANCE':16}  {'PENDING':>7}  {'RETRYING':>8}  {'NEXT ATTEMPT':19}  {'DEAD':>6}  OLDEST")
        next_attempt = _when(row.next_attempt if row.retrying else None)
        click.echo(
            f"{row.instance:16}  {row.pending:7}  {row.retrying:8}  {next_attempt:19}"
            f"  {row.dead:6}  {'-' if age is None else _age(age)}"
        )
    if not rows and not as_json:
        click.echo("the queue is empty", err=True)


@queue_group.command("list")
@_filters
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=int, default=None, help="Show at most this many.")
def list_command(queue_path: str | None, as_json: bool, limit: int | None, **options: Any) -> None:
    """List dead letters, oldest first."""
    conn = _open(queue_path, options.pop("config_path", None))
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
@_queue_path_option
@config_option
def show_command(instance: str, txn_id: str, queue_path: str | None, config_path: str | None) -> None:
    """Show one dead letter and its transaction (INSTANCE and ID as `queue list` prints them)."""
    conn = _open(queue_path, config_path)
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
    conn = _open(queue_path, options.pop("config_path", None))
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
    config_path = options.pop("config_path", None)
    which = _filter(options)
    if which == Filter() and not everything:
        raise click.UsageError("purge needs a filter (--instance, --user, --older-than, ...) or --all")
    conn = _open(queue_path, config_path)
    try:
        count = conn.purge(which)
    finally:
        conn.close()
    click.echo(f"purged {count} dead letter(s)")
