"""The README's set-up commands, as written, on a stock Debian 13 with only Debian's python3 and
python3-venv: the daemon comes up, ``/healthz`` answers, and the README's ``send`` reaches dlog.

Only a listen address is added (``--listen``, ``--url``): a free port instead of the default
8425, which another daemon on this machine may hold.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from e2e_support import REPO, require, wait_until
from push_notification.testing.dovecot import free_port
from stock_debian import StockDebianRun, readme_commands, stock_debian_missing

require(stock_debian_missing(), "the Debian 13 chroot with python3-venv")

#: pip builds the five distributions and fetches their dependencies: minutes on a busy machine.
INSTALL_TIMEOUT = 600


def healthz(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return dict(json.load(response))
    except OSError:
        return None


@pytest.fixture
def debian() -> Iterator[StockDebianRun]:
    run = StockDebianRun(REPO)
    yield run
    run.remove()


def test_the_readme_set_up_command_serves_and_a_send_reaches_dlog(debian: StockDebianRun) -> None:
    set_up, send = readme_commands(REPO / "README.md")[:2]
    assert set_up.startswith("python3 -m venv ") and set_up.endswith(" serve"), set_up
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    debian.start(f"{set_up} --listen 127.0.0.1:{port}")

    came_up = wait_until(lambda: healthz(url) is not None or debian.proc is None or debian.proc.poll() is not None,
                         INSTALL_TIMEOUT, interval=0.1)  # fmt: skip
    assert came_up and healthz(url) is not None, f"the daemon did not come up:\n{debian.output()[-4000:]}"
    health = healthz(url)
    assert health is not None and health["status"] == "ok" and "dlog" in health["instances"]  # type: ignore[operator]

    sent = debian.run(f"{send} --url {url}")
    assert sent.returncode == 0, sent.stderr
    for line in (
        "dlog: Called begin_txn push_notification plugin hook.",
        "dlog: Message data: Mailbox [INBOX], UID [1], UIDVALIDITY [1700000000]",
    ):
        assert wait_until(lambda line=line: line in debian.output()), f"{line!r} not logged:\n{debian.output()[-4000:]}"
