"""``push-notification queue``: the admin's view of dead letters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from push_notification.errors import PermanentError
from push_notification.queue.cli import queue_group
from push_notification.queue.sqlite import SqliteQueue
from push_notification.queue.sqlite_store import count_deliveries
from push_notification.testing import make_event, make_transaction
from push_notification.transaction import Transaction

from .queue_helpers import Running, recorder, wait_for


async def dead_letters_for(path: Path, *users: str) -> list[Transaction]:
    """Queue one transaction per user to an instance ``ox`` that rejects everything."""
    sent = [make_transaction(make_event("MessageNew", uid=i), user=u) for i, u in enumerate(users, 1)]
    ox = recorder("ox", lambda t, a: PermanentError("400 Bad Request"))
    async with Running(SqliteQueue(path), ox) as dispatcher:
        for t in sent:
            await dispatcher.queue.put(t)
        await wait_for(lambda: dispatcher.queue.dead_letters("ox") == len(sent))
    return sent


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(queue_group, list(args))
    return result.exit_code, result.output


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


async def test_list_shows_dead_letters_with_their_error(path):
    sent = await dead_letters_for(path, "alice", "bob")
    code, out = run("list", "--queue-path", str(path))
    assert code == 0
    assert sent[0].id in out and sent[1].id in out
    assert "400 Bad Request" in out
    assert "2 dead letter(s)" in out


async def test_list_filters_by_user_and_instance(path):
    sent = await dead_letters_for(path, "alice", "bob")
    code, out = run("list", "--queue-path", str(path), "--user", "bob", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["id"] for line in lines] == [sent[1].id]
    assert lines[0]["instance"] == "ox" and lines[0]["attempts"] == 1
    code, out = run("list", "--queue-path", str(path), "--instance", "web", "--json")
    assert (code, out) == (0, "")


async def test_list_filters_by_age(path):
    await dead_letters_for(path, "alice")
    _, out = run("list", "--queue-path", str(path), "--older-than", "1h", "--json")
    assert out == ""
    _, out = run("list", "--queue-path", str(path), "--newer-than", "1h", "--json")
    assert len(out.splitlines()) == 1


async def test_show_prints_the_transaction(path):
    sent = await dead_letters_for(path, "alice")
    code, out = run("show", "--queue-path", str(path), "ox", sent[0].id)
    assert code == 0
    data = json.loads(out)
    assert data["transaction"] == sent[0].to_dict()
    assert data["state"] == "dead"


async def test_show_of_an_unknown_id_is_one_line(path):
    await dead_letters_for(path, "alice")
    code, out = run("show", "--queue-path", str(path), "ox", "nope")
    assert code == 1
    assert out.strip() == "Error: no transaction nope queued for push_notification ox; see push-notification queue list"


async def test_retry_delivers_dead_letters_once_the_endpoint_is_fixed(path):
    sent = await dead_letters_for(path, "alice", "bob")
    code, out = run("retry", "--queue-path", str(path), "--user", "alice")
    assert code == 0
    assert out.startswith("requeued 1 dead letter(s)")
    fixed = recorder("ox")
    async with Running(SqliteQueue(path), fixed) as dispatcher:
        assert await dispatcher.drain(5)
        assert dispatcher.queue.dead_letters("ox") == 1  # bob's is still dead
    assert fixed.plugin.delivered_ids == [sent[0].id]


async def test_purge_needs_a_filter_or_all(path):
    await dead_letters_for(path, "alice", "bob")
    code, out = run("purge", "--queue-path", str(path))
    assert code == 2 and "purge needs a filter" in out
    code, out = run("purge", "--queue-path", str(path), "--user", "bob")
    assert out.strip() == "purged 1 dead letter(s)"
    code, out = run("purge", "--queue-path", str(path), "--all")
    assert out.strip() == "purged 1 dead letter(s)"
    assert count_deliveries(path) == 0


def test_a_missing_queue_file_is_one_line(tmp_path):
    code, out = run("list", "--queue-path", str(tmp_path / "none.db"))
    assert code == 1
    assert (
        out.strip() == f"Error: queue_path {tmp_path / 'none.db'}: no such queue file; check queue_path in the config"
    )


def test_a_bad_age_is_one_line(path):
    code, out = run("list", "--queue-path", str(path), "--older-than", "soon")
    assert code == 2
    assert "Invalid value for '--older-than'" in out


async def test_the_queue_file_is_found_through_the_config(path, tmp_path):
    sent = await dead_letters_for(path, "alice")
    config = tmp_path / "pn.conf"
    config.write_text(f"queue_path = {path}\npush_notification dlog {{ }}\n")
    code, out = run("-c", str(config), "list", "--json")
    assert code == 0
    assert json.loads(out)["id"] == sent[0].id


def test_memory_mode_has_no_dead_letters(tmp_path):
    config = tmp_path / "pn.conf"
    config.write_text("queue = memory\npush_notification dlog { }\n")
    code, out = run("-c", str(config), "list")
    assert code == 1
    assert out.strip() == f"Error: {config}: queue = memory keeps no dead letters (set queue = sqlite)"
