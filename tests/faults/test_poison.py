"""A poison transaction (one the driver can never deliver: a TypeError on its data) is a dead
letter at once, and its user's later transactions still arrive; nothing waits for the
one-hour retry deadline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def test_a_poison_transaction_is_dead_at_once_and_the_users_later_ones_arrive(tmp_path: Path) -> None:
    async with Sink() as sink:
        daemon = Daemon(
            tmp_path,
            "queue = sqlite\nqueue_retry_delay = 1s\n"
            f"push_notification hook {{\n driver = durable_test_poisoned\n url = {sink.url('hook')}\n}}\n",
        )
        daemon.start()
        try:
            poison = transaction("alice", 1)
            poison["mailbox"] = "Poison"
            later = [transaction("alice", uid) for uid in (2, 3)]
            other = transaction("bob", 4)
            sender = Sender(daemon.url, concurrency=1)
            await sender.send_all([poison, *later, other])
            wanted = {t["id"] for t in [*later, other]}
            await eventually(lambda: sink.ids("hook") >= wanted, 10, "alice's later transactions")
            assert [i for i in sink.received["hook"] if i in {t["id"] for t in later}] == [t["id"] for t in later]
            listed = daemon.cli("queue", "-c", str(daemon.config), "list", "--json")
            assert listed.returncode == 0, listed.stderr
            dead = [json.loads(line) for line in listed.stdout.splitlines()]
            assert [(d["id"], d["attempts"]) for d in dead] == [(poison["id"], 1)]
            assert dead[0]["error"].startswith("TypeError: ")
        finally:
            daemon.stop()
    log = daemon.log()
    assert "is a dead letter after 1 attempt(s): TypeError" in log
    assert "Traceback" not in log
