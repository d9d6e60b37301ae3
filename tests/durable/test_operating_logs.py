"""The daemon's log as an admin reads it (issue 14): which config, what the spool held at
start, one JSON line per retry and per delivery with the delivery's fields, the CLI's URL
and token hints against the real ingress, and a shutdown that counts transactions and
deliveries apart."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from durable_kit import Daemon, Sender, Sink, eventually, transaction

TOKEN = "s3cret-ingress-token"


def log_lines(daemon: Daemon) -> list[dict[str, object]]:
    return [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]


@pytest.mark.asyncio(loop_scope="function")
async def test_the_log_tells_an_admin_what_happens(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for sub in ("tmp", "new", "bad"):
        (spool / sub).mkdir(parents=True)
    (spool / "new" / "waiting.json").write_text(json.dumps(transaction("spooled", 1)))
    async with Sink() as sink:
        sink.answer = lambda name, count: 503 if name == "down" else 200
        daemon = Daemon(
            tmp_path,
            f"log_format = json\ningress_token = {TOKEN}\nspool_dir = {spool}\n"
            "queue_retry_delay = 100ms\nqueue_retry_max_delay = 200ms\n"
            + "".join(
                f"push_notification {name} {{\n driver = durable_test_http\n url = {sink.url(name)}\n}}\n"
                for name in ("up", "down", "also_up")
            ),
        )
        await daemon.astart()
        try:
            sent = await asyncio.to_thread(daemon.cli, "send", "MessageNew", "-u", "alice", "-f", "uid=1", "-f", "uid_validity=1",
                              "--url", f"{daemon.url}/v1/transactions", "--token", TOKEN, check=False)  # fmt: skip
            assert sent.returncode == 0, sent.stderr
            no_token = await asyncio.to_thread(daemon.cli, "send", "MessageNew", "-u", "bob", "-f", "uid=1", "-f", "uid_validity=1",
                                  "--url", daemon.url, check=False)  # fmt: skip
            assert no_token.returncode == 1
            assert "answered 401" in no_token.stderr and "--token" in no_token.stderr
            wrong_path = await asyncio.to_thread(daemon.cli, "send", "MessageNew", "-u", "bob", "-f", "uid=1", "-f", "uid_validity=1",
                                    "--url", f"{daemon.url}/push", "--token", TOKEN, check=False)  # fmt: skip
            assert "warning:" in wrong_path.stderr and "answered 404" in wrong_path.stderr
            assert "is 'push-notification serve' running" not in wrong_path.stderr

            def retried_twice() -> bool:
                return sum(1 for line in log_lines(daemon) if line.get("outcome") == "retry") >= 4

            await eventually(retried_twice, 10, "retries of both transactions")
        finally:
            await daemon.astop()  # the sink keeps answering meanwhile
    lines = log_lines(daemon)
    assert lines[0]["message"].startswith("push-notification ")  # type: ignore[union-attr]
    assert str(lines[0]["message"]).endswith(f"starting; config: {daemon.config}")
    assert any("1 spooled transaction(s) waiting" in str(line["message"]) for line in lines)
    retries = [line for line in lines if line.get("outcome") == "retry"]
    assert {line["instance"] for line in retries} == {"down"}
    assert all(line["level"] == "warning" for line in retries)
    first = retries[0]
    assert {"user", "mailbox", "txn_id", "event", "attempt", "next_attempt"} <= first.keys()
    assert first["event"] == "MessageNew" and first["mailbox"] == "INBOX" and first["attempt"] == 1
    assert float(first["next_attempt"]) > time.time() - 60  # type: ignore[arg-type]
    assert [line for line in lines if line["level"] == "error"] == []  # a retry is not an error
    delivered = [line for line in lines if line.get("outcome") == "delivered"]
    assert {(line["instance"], line["user"]) for line in delivered} == {
        (name, user) for name in ("up", "also_up") for user in ("spooled", "alice")
    }
    assert all(float(line["latency"]) >= 0 and line["driver"] == "durable_test_http" for line in delivered)  # type: ignore[arg-type]
    (shutdown,) = [line for line in lines if str(line["message"]).startswith("shutdown:")]
    assert shutdown["message"] == (
        "shutdown: 2 transaction(s) (2 delivery(ies) to driver instances) stay queued for the next start"
    )
    assert TOKEN not in daemon.log()


@pytest.mark.asyncio(loop_scope="function")
async def test_no_user_or_spool_file_name_forges_a_text_log_line(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for sub in ("tmp", "new", "bad"):
        (spool / sub).mkdir(parents=True)
    (spool / "new" / "x\nERROR push_notification: forged by a file name.json").write_text("not json")
    async with Sink() as sink:
        daemon = Daemon(
            tmp_path,
            f"spool_dir = {spool}\npush_notification up {{\n driver = durable_test_http\n url = {sink.url('up')}\n}}\n",
        )
        await daemon.astart()
        try:
            await Sender(daemon.url).send_all([transaction("evil\nINFO push_notification: forged by a user", 1)])
            await eventually(lambda: "delivered transaction" in daemon.log(), 10, "the delivery line")
            await eventually(lambda: any((spool / "bad").iterdir()), 10, "the bad spool file moved")
        finally:
            await daemon.astop()
    lines = daemon.log().splitlines()
    assert not [line for line in lines if "forged" in line and not line.startswith("20")]
    assert any("evil\\nINFO push_notification: forged by a user" in line for line in lines)
    assert any("x\\nERROR push_notification: forged by a file name.json" in line for line in lines)
