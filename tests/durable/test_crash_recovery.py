"""At-least-once across SIGKILLs: every transaction the daemon accepted reaches every OX
driver instance, or is visibly dead and can be retried (issue 6, "Done when")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest.mark.parametrize(
    ("fsync", "total", "kill_at"),
    [("no", 10_000, (3_000, 6_500)), ("yes", 3_000, (1_000, 2_000))],
    ids=["commit", "fsync"],
)
async def test_nothing_accepted_is_lost_across_sigkills_and_an_unavailable_endpoint(
    tmp_path: Path, fsync: str, total: int, kill_at: tuple[int, int]
) -> None:
    fixed = False

    def answer(name: str, count: int) -> int:
        if name == "ok" and 1_500 <= count < 3_000:
            return 503  # the endpoint is unavailable for a stretch (with Retry-After: 1)
        if name == "broken" and not fixed:
            return 400  # permanently failing until an admin fixes it
        return 200

    async with Sink() as sink:
        sink.answer = answer
        daemon = Daemon(
            tmp_path,
            f"queue = sqlite\nqueue_fsync = {fsync}\n"
            "queue_retry_delay = 100ms\nqueue_retry_max_delay = 1s\nlog_level = error\n"
            # The real OX driver, one attempt per delivery: retrying is the queue's job here.
            f"push_notification ok {{\n driver = ox\n url = {sink.url('ok')}\n user_from_metadata = yes\n"
            " http_client_request_max_attempts = 1\n}\n"
            f"push_notification broken {{\n driver = ox\n url = {sink.url('broken')}\n user_from_metadata = yes\n"
            " http_client_request_max_attempts = 1\n}\n",
        )
        daemon.start()
        try:
            sender = Sender(daemon.url)
            kills = 0

            async def crash_mid_burst(accepted: int) -> None:
                nonlocal kills
                if accepted in kill_at:
                    daemon.kill()
                    kills += 1
                    await asyncio.to_thread(daemon.start)

            sender.on_accept = crash_mid_burst
            sent = [transaction(f"user{i % 50}", i) for i in range(total)]
            await sender.send_all(sent)
            accepted = set(sender.accepted)
            assert kills == 2
            assert accepted == {t["id"] for t in sent}

            await eventually(lambda: sink.ids("ok") >= accepted, 180, "every accepted transaction at the ok endpoint")
            assert sink.calls["ok"] > len(sink.received["ok"])  # the 503 stretch really happened

            async def broken_settled() -> bool:
                depth = await daemon.metrics()
                return depth[("push_notification_queue_depth", (("instance", "broken"),))] == 0

            await eventually(broken_settled, 120, "the broken instance's queue to settle into dead letters")
            listed = daemon.cli("queue", "-c", str(daemon.config), "list", "--instance", "broken", "--json")
            assert listed.returncode == 0, listed.stderr
            dead = {json.loads(line)["id"] for line in listed.stdout.splitlines()}
            assert dead >= accepted
            assert not sink.ids("broken")

            fixed = True
            retried = daemon.cli("queue", "-c", str(daemon.config), "retry", "--instance", "broken")
            assert retried.returncode == 0, retried.stderr
            assert int(retried.stdout.split()[1]) >= len(dead)  # "requeued N dead letter(s)..."
            await eventually(lambda: sink.ids("broken") >= accepted, 180, "retried dead letters at the fixed endpoint")
            listed = daemon.cli("queue", "-c", str(daemon.config), "list", "--json")
            assert listed.stdout == ""
        finally:
            daemon.stop()
