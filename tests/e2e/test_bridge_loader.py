"""The installed loader runs the bridge's bytecode, or its source when the bytecode cannot load
(real Dovecot 2.3): a delivery hands over the same events either way, and only a bytecode file
that is there but unloadable (Dovecot rebuilt on another Lua since) is worth a warning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BridgedDovecot, recording_server, require_dovecot
from push_notification.dovecot.setup import BYTECODE_NAME, HTTP_BYTECODE_NAME, HTTP_SOURCE_NAME
from scenario_mails import PLAIN

require_dovecot()

FALLBACK = "running the source instead (rerun push-notification dovecot-config)"


def deliver_one(change: Callable[[Path], None]) -> tuple[list[dict[str, Any]], list[str]]:
    """One delivery after ``change`` (given the installed bytecode file's path): the MessageNew
    events handed over, and the bridge's log lines."""
    with BridgedDovecot(users=("alice@example.com",)) as dovecot:
        change(Path(dovecot.options.script_path).with_name(BYTECODE_NAME))
        assert dovecot.deliver(PLAIN)[0][0] == 250
        events = [e for t in dovecot.take_spool() for e in t["events"] if e["name"] == "MessageNew"]
        return events, dovecot.log_lines("push-notification-bridge")


def keep(path: Path) -> None:
    assert path.read_bytes().startswith(b"\x1bLua")


def remove(path: Path) -> None:
    path.unlink()


def another_lua(path: Path) -> None:
    path.write_bytes(b"\x1bLua\x53\x00 bytecode of Lua 5.3")


def without_uid_validity(event: dict[str, Any]) -> dict[str, Any]:
    """The event without what differs between two fresh Dovecots (each INBOX's UIDVALIDITY)."""
    return {k: v for k, v in event.items() if k != "uid_validity"}


def test_the_installed_bytecode_runs_without_a_word_in_the_log() -> None:
    events, log = deliver_one(keep)
    assert [(e["mailbox"], e["subject_utf8"]) for e in events] == [("INBOX", "Plain hello")]
    assert log == []


@pytest.mark.parametrize(("change", "warned"), [(remove, False), (another_lua, True)], ids=["removed", "another Lua"])
def test_without_loadable_bytecode_the_source_hands_over_the_same_event(
    change: Callable[[Path], None], warned: bool
) -> None:
    expected, _ = deliver_one(keep)
    events, log = deliver_one(change)
    assert [without_uid_validity(e) for e in events] == [without_uid_validity(e) for e in expected]
    assert bool(log) is warned
    assert all(FALLBACK in line for line in log)  # once per script load, nothing else


def test_the_http_transport_runs_from_its_source_when_its_bytecode_does_not_load() -> None:
    with recording_server() as ingress, BridgedDovecot("http", url=ingress.url, token="t") as dovecot:
        another_lua(Path(dovecot.options.script_path).with_name(HTTP_BYTECODE_NAME))
        assert dovecot.deliver(PLAIN)[0][0] == 250
        posted = [r.json()["events"][0]["name"] for r in ingress.requests]
        assert dovecot.take_spool() == []
        assert dovecot.log_errors() == []
    assert posted == ["MailboxCreate", "MessageNew"]


def test_without_the_http_transport_the_transaction_is_spooled_and_the_reason_logged() -> None:
    with recording_server() as ingress, BridgedDovecot("http", url=ingress.url, token="t") as dovecot:
        share = Path(dovecot.options.script_path).parent
        (share / HTTP_BYTECODE_NAME).unlink()
        (share / HTTP_SOURCE_NAME).unlink()
        assert dovecot.deliver(PLAIN)[0][0] == 250
        spooled = [t["events"][0]["name"] for t in dovecot.take_spool()]
        errors = dovecot.log_lines("push-notification-bridge")
    assert ingress.requests == []
    assert spooled == ["MailboxCreate", "MessageNew"]
    assert len(errors) == 1  # once per script load, then every transaction spools
    assert "cannot load the http transport" in errors[0] and "rerun push-notification dovecot-config" in errors[0]
