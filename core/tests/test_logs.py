"""Logs an admin can act on: one line per record that nobody can forge, one line per retry
with its attempt and time, one line per delivery, the delivery's fields in JSON."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sqlite3
import sys
import time

import pytest
from push_notification.config import parse_config
from push_notification.errors import PermanentError, RetryableError
from push_notification.http import connect_failure
from push_notification.log_fields import delivery_fields
from push_notification.queue import MemoryQueue
from push_notification.queue.retry import RetryPolicy
from push_notification.queue.sqlite import SqliteQueue
from push_notification.server.daemon import make_queue
from push_notification.server.logs import JsonFormatter, TextFormatter, escape_controls, setup_logging
from push_notification.testing import make_event, make_transaction

from .queue_helpers import Running, recorder, wait_for

FAST = RetryPolicy(min_delay=0.02, max_delay=0.05, deadline=5.0)
HOSTILE = ["evil\nINFO push_notification: forged", "a\rb", "esc\x1b[31m", "nul\x00", "del\x7f", "ls\u2028", "\ud800"]


def formatted(formatter: logging.Formatter, message: str, *args: object, **extra: object) -> str:
    record = logging.LogRecord("push_notification.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return formatter.format(record)


@pytest.mark.parametrize("value", HOSTILE)
def test_no_logged_value_can_split_or_forge_a_text_line(value):
    line = formatted(TextFormatter(), "user %s, spool file %s", value, value + ".json")
    assert "\n" not in line and "\r" not in line
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", line)
    line.encode("utf-8")  # writable: no lone surrogate left


def test_escapes_are_readable():
    assert escape_controls("evil\nuser\t\x1b\u2028") == "evil\\nuser\\t\\x1b\\u2028"


def test_a_traceback_keeps_its_lines():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed for %s", ("a\nb",), sys.exc_info())
    text = TextFormatter().format(record)
    assert text.splitlines()[0].endswith("failed for a\\nb")
    assert "Traceback" in text.splitlines()[1]


@pytest.mark.parametrize("value", HOSTILE)
def test_json_lines_are_one_valid_line_with_the_value_intact(value):
    line = formatted(JsonFormatter(), "user %s", value, user=value, instance="ox", attempt=2)
    assert "\n" not in line and "\u2028" not in line
    data = json.loads(line)
    assert data["user"] == value and data["message"] == f"user {value}"
    assert (data["instance"], data["attempt"]) == ("ox", 2)


def test_delivery_fields_name_instance_user_mailbox_transaction_events_and_outcome():
    txn = make_transaction(make_event("MessageNew", uid=1), make_event("MessageNew", uid=2), user="alice")
    fields = delivery_fields("ox", txn, "delivered", driver="ox", latency=0.25)
    assert fields == {
        "instance": "ox",
        "user": "alice",
        "mailbox": "INBOX",
        "txn_id": txn.id,
        "event": "MessageNew",
        "outcome": "delivered",
        "driver": "ox",
        "latency": 0.25,
    }


def records(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("push_notification") and r.levelno >= level]


async def test_each_retry_is_one_line_with_its_attempt_and_time(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ox = recorder("ox", lambda t, n: RetryableError("503 Service Unavailable") if n < 3 else None)
    txn = make_transaction(make_event("MessageNew", uid=1), user="alice")
    async with Running(SqliteQueue(tmp_path / "q.db", policy=FAST), ox) as dispatcher:
        await dispatcher.queue.put(txn)
        await wait_for(lambda: ox.plugin.delivered)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert all(r.levelno == logging.WARNING for r in warnings)
    first = warnings[0].getMessage()
    assert re.search(r"attempt 1 failed: RetryableError: 503 Service Unavailable; attempt 2 at \d\d:\d\d:\d\d", first)
    assert "alice" in first and "INBOX" in first and txn.id in first
    assert (warnings[1].attempt, warnings[1].outcome, warnings[1].instance) == (2, "retry", "ox")
    assert warnings[1].next_attempt >= time.time() - 5
    after = [r.getMessage() for r in records(caplog, logging.INFO) if "delivered after 3 attempts" in r.getMessage()]
    assert len(after) == 1


async def test_each_delivery_is_one_info_line_with_its_latency_unless_switched_off(caplog):
    caplog.set_level(logging.INFO)
    ox = recorder("ox")
    txn = make_transaction(make_event("MessageNew", uid=1), user="alice")
    async with Running(MemoryQueue(), ox) as dispatcher:
        await dispatcher.queue.put(txn)
        assert await dispatcher.drain(5)
    (line,) = [r for r in records(caplog, logging.INFO) if r.name == "push_notification.dispatch"]
    assert re.fullmatch(
        rf"push_notification ox: delivered transaction {txn.id} \(user alice, mailbox INBOX\) in \d+\.\d{{3}}s",
        line.getMessage(),
    )
    assert line.outcome == "delivered" and line.latency >= 0 and line.driver == "recorder"
    caplog.clear()
    quiet = Running(MemoryQueue(), recorder("ox"))
    quiet.dispatcher.log_deliveries = False
    async with quiet as dispatcher:
        await dispatcher.queue.put(make_transaction(make_event("MessageNew", uid=2)))
        assert await dispatcher.drain(5)
    assert records(caplog, logging.INFO) == []
    assert parse_config("log_deliveries = no\npush_notification dlog { }\n").log_deliveries is False


async def test_memory_mode_drops_a_failure_with_one_error_line(caplog):
    ox = recorder("ox", lambda t, n: RetryableError("503"))
    async with Running(MemoryQueue(), ox) as dispatcher:
        await dispatcher.queue.put(make_transaction(make_event("MessageNew", uid=1)))
        assert await dispatcher.drain(5)
    (line,) = records(caplog, logging.WARNING)
    assert line.levelno == logging.ERROR and "dropped (queue = memory does not retry)" in line.getMessage()


async def test_the_dead_letter_hint_names_the_config_file(tmp_path, caplog):
    conf = tmp_path / "pn.conf"
    conf.write_text(f"state_dir = {tmp_path}\npush_notification dlog {{ }}\n")
    config = parse_config(conf.read_text(), str(conf))
    queue = make_queue(config)
    ox = recorder("ox", lambda t, n: PermanentError("400 Bad Request"))
    async with Running(queue, ox) as dispatcher:
        await dispatcher.queue.put(make_transaction(make_event("MessageNew", uid=1)))
        await wait_for(lambda: dispatcher.queue.dead_letters("ox") == 1)
    (line,) = records(caplog, logging.WARNING)
    assert f"see push-notification queue -c {conf} list --instance ox" in line.getMessage()


async def test_a_dead_letter_sent_back_by_queue_retry_says_when_it_is_delivered(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "q.db"
    fixed = {"now": False}
    ox = recorder("ox", lambda t, n: None if fixed["now"] else PermanentError("400 Bad Request"))
    async with Running(SqliteQueue(path, policy=FAST), ox) as dispatcher:
        await dispatcher.queue.put(make_transaction(make_event("MessageNew", uid=1), user="alice"))
        await wait_for(lambda: dispatcher.queue.dead_letters("ox") == 1)
        fixed["now"] = True
        conn = sqlite3.connect(path)
        conn.execute("UPDATE delivery SET state = 'requeued', attempts = 0, next_at = 0")
        conn.commit()
        conn.close()
        await wait_for(lambda: ox.plugin.delivered)
    messages = [r.getMessage() for r in records(caplog, logging.INFO)]
    assert any("1 dead letter(s) sent back by queue retry; delivering" in m for m in messages)
    assert any("delivered after push-notification queue retry" in m for m in messages)


def test_a_name_that_does_not_resolve_reads_cannot_resolve():
    error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert connect_failure("push.example.invalid", 443, error).startswith(
        "cannot resolve push.example.invalid: Name or service not known"
    )
    refused = ConnectionRefusedError(111, "Connection refused")
    assert connect_failure("127.0.0.1", 9, refused) == "connect(127.0.0.1:9) failed: Connection refused"


def test_setup_logging_writes_escaped_lines(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("info", "text")
        logging.getLogger("push_notification.server.spool").error("spool: moved %s", "x\nERROR forged")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert stream.getvalue().count("\n") == 1 and "x\\nERROR forged" in stream.getvalue()
