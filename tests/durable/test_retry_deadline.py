"""Each instance may set its own retry deadline; past it, a failing delivery is a dead letter."""

from __future__ import annotations

from pathlib import Path

import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction


@pytest.mark.asyncio(loop_scope="function")
async def test_an_instance_with_a_short_deadline_dead_letters_while_the_other_keeps_retrying(tmp_path: Path) -> None:
    async with Sink() as sink:
        sink.answer = lambda name, count: 503
        daemon = Daemon(
            tmp_path,
            "queue_retry_delay = 100ms\nqueue_retry_max_delay = 200ms\nlog_level = error\n"
            f"push_notification short {{\n driver = durable_test_http\n url = {sink.url('short')}\n"
            " queue_retry_deadline = 1s\n}\n"
            f"push_notification long {{\n driver = durable_test_http\n url = {sink.url('long')}\n}}\n",
        )
        checked = daemon.cli("check-config", "-c", str(daemon.config))
        assert checked.returncode == 0, checked.stderr
        daemon.start()
        try:
            await Sender(daemon.url).send_all([transaction("alice", 1)])

            async def short_gave_up() -> bool:
                m = await daemon.metrics()
                return m[("push_notification_dead_letters", (("instance", "short"),))] == 1

            await eventually(short_gave_up, 10, "the short-deadline instance's dead letter")
            m = await daemon.metrics()
            assert m[("push_notification_queue_depth", (("instance", "long"),))] == 1
            assert m[("push_notification_dead_letters", (("instance", "long"),))] == 0
            # Retried, not dropped: the sink's Retry-After (1s) put the second attempt at the deadline.
            assert sink.calls["short"] == 2
        finally:
            daemon.stop()


def test_a_bad_instance_deadline_is_one_line(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "push_notification dlog {\n queue_retry_deadline = soon\n}\n")
    checked = daemon.cli("check-config", "-c", str(daemon.config), check=False)
    assert checked.returncode == 1
    assert len(checked.stderr.strip().splitlines()) == 1
    assert "queue_retry_deadline" in checked.stderr and "invalid time 'soon'" in checked.stderr
