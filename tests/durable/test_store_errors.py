"""A corrupt or unusable queue file stops the daemon at start-up with one clear line."""

from __future__ import annotations

import subprocess
from pathlib import Path

from durable_kit import Daemon


def serve(daemon: Daemon) -> subprocess.CompletedProcess[str]:
    """``serve`` in the foreground, for a daemon expected to refuse to start."""
    return daemon.cli("serve", "-c", str(daemon.config), "--listen", daemon.listen, check=False)


def test_a_corrupt_queue_file_is_one_line_and_no_start(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "push_notification dlog { }\n")
    daemon.queue_path.parent.mkdir(parents=True)
    daemon.queue_path.write_bytes(b"\x00garbage, not SQLite\n" * 512)
    result = serve(daemon)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: queue_path {daemon.queue_path}: not usable (file is not a database); fix its permissions,"
        " or move a damaged file aside to start an empty queue"
    ]
    assert daemon.queue_path.read_bytes().startswith(b"\x00garbage")  # left alone for the admin


def test_a_queue_path_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "queue.sqlite"
    daemon = Daemon(tmp_path, f"queue_path = {missing}\npush_notification dlog {{ }}\n")
    result = serve(daemon)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: queue_path {missing}: directory {missing.parent} does not exist; create it or change queue_path"
    )


def test_a_second_daemon_on_the_same_queue_is_refused(tmp_path: Path) -> None:
    first = Daemon(tmp_path, "push_notification dlog { }\n")
    first.start()
    try:
        second = Daemon(tmp_path, "push_notification dlog { }\n")  # same state_dir, another port
        result = serve(second)
        assert result.returncode == 1
        assert "in use by another push-notification daemon" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        first.stop()
