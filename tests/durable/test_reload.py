"""SIGHUP re-reads the config: instances come and go, queued work is kept; logs can be JSON."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path

import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


def instance(name: str, url: str) -> str:
    return f"push_notification {name} {{\n driver = durable_test_http\n url = {url}\n}}\n"


def log_messages(daemon: Daemon) -> list[str]:
    return [json.loads(line)["message"] for line in daemon.log().splitlines() if line.startswith("{")]


async def test_sighup_adds_restarts_and_removes_instances_without_losing_queued_work(tmp_path: Path) -> None:
    a_up = False
    async with Sink() as sink:
        sink.answer = lambda name, count: 200 if name != "a" or a_up else 503
        settings = "log_format = json\nqueue_retry_delay = 100ms\nqueue_retry_max_delay = 200ms\n"
        daemon = Daemon(tmp_path, settings + instance("a", sink.url("a")))
        daemon.start()
        try:
            first = Sender(daemon.url)
            await first.send_all(transaction(f"u{i % 3}", i) for i in range(20))
            await eventually(lambda: sink.calls.get("a", 0) >= 3, 10, "a's endpoint refusing")

            # Add b; restart a (its setting changed) while its 20 transactions wait.
            base = daemon.config.read_text().split("push_notification")[0]
            daemon.config.write_text(base + instance("a", sink.url("a") + "?v=2") + instance("b", sink.url("b")))
            daemon.signal(signal.SIGHUP)
            await eventually(
                lambda: any(m.startswith("reloaded") for m in log_messages(daemon)), 10, "the reload log line"
            )
            assert "added b; removed none; restarted a" in next(m for m in log_messages(daemon) if "reloaded" in m)
            second = Sender(daemon.url)
            await second.send_all(transaction(f"u{i % 3}", i) for i in range(20))
            await eventually(lambda: sink.ids("b") == set(second.accepted), 10, "b getting what came after it")

            a_up = True
            everything = set(first.accepted) | set(second.accepted)
            await eventually(lambda: sink.ids("a") == everything, 20, "a's queued work delivered after its restart")

            # Remove a: later transactions reach only b.
            daemon.config.write_text(base + instance("b", sink.url("b")))
            daemon.signal(signal.SIGHUP)
            await eventually(
                lambda: any("removed a" in m for m in log_messages(daemon)), 10, "the second reload log line"
            )
            third = Sender(daemon.url)
            await third.send_all(transaction("u9", i) for i in range(5))
            await eventually(lambda: sink.ids("b") >= set(third.accepted), 10, "b getting the last ones")
            assert not sink.ids("a") & set(third.accepted)
        finally:
            daemon.stop()


async def test_a_broken_config_on_sighup_keeps_the_running_one(tmp_path: Path) -> None:
    async with Sink() as sink:
        daemon = Daemon(tmp_path, "log_format = json\n" + instance("a", sink.url("a")))
        daemon.start()
        try:
            daemon.config.write_text(daemon.config.read_text() + "push_notification b {\n driver = nosuch\n}\n")
            daemon.signal(signal.SIGHUP)
            await eventually(lambda: any("reload:" in m for m in log_messages(daemon)), 10, "the reload error")
            error = next(m for m in log_messages(daemon) if "reload:" in m)
            assert "driver 'nosuch' is not installed" in error and error.endswith("still running the previous config")
            sender = Sender(daemon.url)
            await sender.send_all([transaction("alice", 1)])
            await eventually(lambda: sink.ids("a") == set(sender.accepted), 10, "delivery with the old config")
        finally:
            daemon.stop()


@pytest.mark.parametrize("queue", ["sqlite", "memory"])
async def test_sighups_under_load_lose_no_accepted_transaction(tmp_path: Path, queue: str) -> None:
    """Both instances restart at every SIGHUP while transactions keep arriving and one
    endpoint fails every fourth request: every transaction answered 202 reaches both (with
    the memory queue, which drops failures as Dovecot does, it is at least tried at both)."""
    total, reloads = 1200, 5

    def config(version: int) -> str:
        return (
            f"queue = {queue}\nlog_format = json\nqueue_retry_delay = 50ms\nqueue_retry_max_delay = 100ms\n"
            + instance("steady", f"{sink.url('steady')}?v={version}")
            + instance("flaky", f"{sink.url('flaky')}?v={version}")
        )

    async with Sink() as sink:
        sink.answer = lambda name, count: 500 if name == "flaky" and count % 4 == 0 else 200
        daemon = Daemon(tmp_path, config(0))
        await daemon.astart()
        try:
            sent = 0

            async def reload_now(accepted: int) -> None:
                """Every so many acceptances, restart both instances (the other senders go on)."""
                nonlocal sent
                if accepted % (total // (reloads + 1)) == 0 and sent < reloads:
                    sent += 1
                    daemon.config.write_text(f"state_dir = {tmp_path / 'state'}\n{config(sent)}")
                    daemon.signal(signal.SIGHUP)
                    await eventually(
                        lambda: sum("restarted steady, flaky" in m for m in log_messages(daemon)) == sent,
                        30,
                        f"reload {sent} restarting both instances",
                    )

            sender = Sender(daemon.url, concurrency=8)
            sender.on_accept = reload_now
            await sender.send_all(transaction(f"user{i % 40}", i) for i in range(total))
            assert sent == reloads
            accepted = set(sender.accepted)
            assert len(accepted) == total
            flaky = sink.ids if queue == "sqlite" else lambda name: sink.tried.get(name, set())

            def missing() -> dict[str, int]:
                return {"steady": len(accepted - sink.ids("steady")), "flaky": len(accepted - flaky("flaky"))}

            with contextlib.suppress(AssertionError):
                await eventually(lambda: not any(missing().values()), 60, "every transaction at both endpoints")
            assert missing() == {"steady": 0, "flaky": 0}
        finally:
            await daemon.astop()
        assert "Traceback" not in daemon.log()
