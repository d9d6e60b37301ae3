"""The daemon as an admin runs it: serve, send, replay, check-config, errors as one line."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
from push_notification.testing.daemon import DaemonProcess

UIDV = "1700000000"


def post(url: str, body: bytes, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/v1/transactions", data=body, method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_sent_event_reaches_dlog_in_the_daemon_log(start_daemon) -> None:
    daemon = start_daemon("push_notification dlog { }\n")
    result = daemon.cli("send", "MessageNew", "--user", "alice", "--mailbox", "INBOX", "--field", "uid=1",
                        "--field", f"uid_validity={UIDV}", "--field", "subject=Hello", "--url", daemon.url)  # fmt: skip
    assert result.stdout.startswith("accepted transaction ")
    log = daemon.wait_for_log("dlog: Called end_txn push_notification plugin hook.")
    assert f"dlog: Message data: Mailbox [INBOX], UID [1], UIDVALIDITY [{UIDV}]" in log
    assert "dlog: MessageNew: Subject [Hello]" in log


def test_replay_posts_every_recorded_transaction(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon("push_notification dlog { }\n")
    recorded = tmp_path / "recorded.jsonl"
    recorded.write_text(
        "\n".join(
            json.dumps({"user": {"username": "bob"}, "mailbox": name, "events": [{"name": "MailboxCreate"}]})
            for name in ("Work", "Play")
        )
        + "\n"
    )
    assert daemon.cli("replay", str(recorded), "--url", daemon.url).stdout.strip() == "accepted 2 transaction(s)"
    log = daemon.wait_for_log("Mailbox data: Mailbox [Play]")
    assert "dlog: Mailbox data: Mailbox [Work]" in log


def test_replay_names_the_bad_line_and_what_was_already_accepted(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon("push_notification dlog { }\n")
    recorded = tmp_path / "recorded.jsonl"
    good = json.dumps({"user": "bob", "mailbox": "Work", "events": [{"name": "MailboxCreate"}]})
    recorded.write_text(f"{good}\n{{not json\n")
    result = daemon.cli("replay", str(recorded), "--url", daemon.url, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "recorded.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes"
    )
    assert "Traceback" not in result.stderr
    daemon.wait_for_log("Mailbox data: Mailbox [Work]")


def test_the_ingress_refuses_malformed_input_with_a_clear_reason(start_daemon) -> None:
    daemon = start_daemon("push_notification dlog { }\n")
    assert post(daemon.url, b"{bad") == (
        400,
        {"error": "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
    )
    status, body = post(
        daemon.url, json.dumps({"user": "a", "mailbox": "INBOX", "events": [{"name": "Logout"}]}).encode()
    )
    assert status == 400 and "event 1: event 'Logout' is not supported" in body["error"]
    status, body = post(
        daemon.url, json.dumps({"user": "a", "mailbox": "INBOX", "events": [{"name": "MessageNew", "uid": 1}]}).encode()
    )
    assert (status, body) == (400, {"error": "event 1: MessageNew: missing required field(s) uid_validity"})
    # a good transaction after bad ones is still accepted: nothing is lost
    status, body = post(
        daemon.url, json.dumps({"user": "a", "mailbox": "X", "events": [{"name": "MailboxDelete"}]}).encode()
    )
    assert status == 202 and body["id"]
    daemon.wait_for_log("MailboxDelete: Mailbox was deleted")


def test_the_ingress_token_is_required_when_configured_and_never_logged(start_daemon) -> None:
    daemon = start_daemon("ingress_token = t0ps3cret\npush_notification dlog { }\n")
    body = json.dumps({"user": "a", "mailbox": "X", "events": [{"name": "MailboxCreate"}]}).encode()
    assert post(daemon.url, body)[0] == 401
    assert post(daemon.url, body, token="wrong")[0] == 401
    assert post(daemon.url, body, token="t0ps3cret")[0] == 202
    sent = daemon.cli("send", "MailboxCreate", "-u", "a", "-m", "Y", "--url", daemon.url, "--token", "t0ps3cret")
    assert sent.returncode == 0
    daemon.wait_for_log("Mailbox data: Mailbox [Y]")
    assert "t0ps3cret" not in daemon.log()


def test_metrics_need_the_ingress_token_when_one_is_configured(start_daemon) -> None:
    daemon = start_daemon("ingress_token = t0ps3cret\npush_notification dlog { }\n")

    def metrics(token: str | None) -> int:
        request = urllib.request.Request(f"{daemon.url}/metrics")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert metrics(None) == 401
    assert metrics("wrong") == 401
    assert metrics("t0ps3cret") == 200


def test_sigterm_finishes_in_flight_work_then_deinitialises_drivers(start_daemon) -> None:
    daemon = start_daemon("push_notification dlog { }\n")
    daemon.cli("send", "MailboxCreate", "-u", "a", "-m", "Last", "--url", daemon.url)
    assert daemon.stop(signal.SIGTERM) == 0
    log = daemon.log()
    assert log.index("Mailbox data: Mailbox [Last]") < log.index("Called deinit push_notification plugin hook.")
    assert "stopped" in log


def test_send_to_a_daemon_that_is_not_running_is_one_line(start_daemon) -> None:
    daemon = start_daemon("push_notification dlog { }\n")
    daemon.stop()
    result = daemon.cli("send", "MailboxCreate", "-u", "a", "--url", daemon.url, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot reach the daemon" in result.stderr


def test_the_daemon_can_listen_on_a_unix_socket(tmp_path: Path) -> None:
    socket_path = tmp_path / "pn.sock"
    config = tmp_path / "unix.conf"
    config.write_text(f"state_dir = {tmp_path / 'state'}\nlisten = unix:{socket_path}\npush_notification dlog {{ }}\n")

    async def post() -> int:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket_path))) as session:
            body = {"user": "a", "mailbox": "Sock", "events": [{"name": "MailboxCreate"}]}
            async with session.post("http://localhost/v1/transactions", json=body) as response:
                return response.status

    with DaemonProcess(config, listen=f"unix:{socket_path}") as daemon:
        assert asyncio.run(asyncio.wait_for(post(), 20)) == 202
    assert "dlog: Mailbox data: Mailbox [Sock]" in daemon.log()
