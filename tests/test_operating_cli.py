"""Every command as an admin types it: the config option anywhere, hints that name the right
file, URLs in either form, the Dovecot and daemon sides printed together (issue 14)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from push_notification.cli import cli
from push_notification.config import cli_options
from push_notification.config.ingress_address import ingress_url
from push_notification.queue import MemoryQueue
from push_notification.queue.sqlite_store import open_store, pending_summary, queue_status
from push_notification.testing import make_event, make_transaction


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pn.conf"
    path.write_text(f"state_dir = {tmp_path / 'state'}\npush_notification dlog {{ }}\n")
    return path


@pytest.fixture
def queue_file(config: Path) -> Path:
    """The config's queue file holding, for instance ox, one pending, one retrying and one dead."""
    path = config.parent / "state" / "queue.sqlite"
    path.parent.mkdir()
    conn = open_store(path)
    now = time.time()
    rows = [
        ("ox", 1, "t1", "alice", now - 120, "{}", "pending", 0, 0, None, None),
        ("ox", 2, "t2", "bob", now - 60, "{}", "pending", 2, now + 30, "503", None),
        ("ox", 3, "t3", "carol", now - 30, "{}", "dead", 5, 0, "400", now),
        ("dlog", 1, "t1", "alice", now - 120, "{}", "pending", 0, 0, None, None),
    ]
    conn.executemany(
        "INSERT INTO delivery (instance, seq, txn_id, username, accepted_at, body, state, attempts, next_at,"
        " last_error, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.close()
    return path


@pytest.mark.parametrize("command", [["list"], ["status"], ["retry", "--user", "nobody"], ["purge", "--all"]])
def test_queue_takes_the_config_before_or_after_the_subcommand(config, queue_file, command):
    before = run("queue", "-c", str(config), *command)
    after = run("queue", *command, "-c", str(config))
    assert before[0] == after[0] == 0, (before, after)
    assert f"queue file: {queue_file} (queue_path of {config})" in before[2]
    assert f"queue file: {queue_file} (queue_path of {config})" in after[2]


def test_the_top_level_takes_the_config_too(config, queue_file):
    assert run("-c", str(config), "queue", "status")[0] == 0
    code, out, err = run("-c", str(config), "check-config")
    assert code == 0, err
    assert f"state_dir = {config.parent / 'state'}" in out


def test_metadata_takes_the_config_before_or_after_the_subcommand(config):
    assert run("metadata", "-c", str(config), "set", "-u", "alice", "/private/k", "v")[0] == 0
    assert run("metadata", "get", "-u", "alice", "/private/k", "-c", str(config))[1] == "v\n"
    assert run("metadata", "-c", str(config), "get", "-u", "alice", "/private/k")[1] == "v\n"


def test_queue_status_counts_pending_retrying_dead_and_the_oldest_age(config, queue_file):
    code, out, err = run("queue", "status", "-c", str(config), "--json")
    assert code == 0, err
    rows = {row["instance"]: row for row in map(json.loads, out.splitlines())}
    ox = rows["ox"]
    assert (ox["pending"], ox["retrying"], ox["dead"]) == (1, 1, 1)
    assert ox["next_attempt"] is not None
    assert 110 <= ox["oldest_age_seconds"] <= 200
    assert (rows["dlog"]["pending"], rows["dlog"]["retrying"], rows["dlog"]["dead"]) == (1, 0, 0)
    code, out, _ = run("queue", "-c", str(config), "status")
    assert out.splitlines()[0].split() == ["INSTANCE", "PENDING", "RETRYING", "NEXT", "ATTEMPT", "DEAD", "OLDEST"]
    assert out.splitlines()[2].split()[:3] == ["ox", "1", "1"]


def test_pending_counts_transactions_and_deliveries_apart(queue_file):
    conn = open_store(queue_file, create=False)
    try:
        # t1 is owed to two instances: one transaction, two deliveries; the dead one not at all.
        assert pending_summary(conn) == (2, 3)
        assert [row.instance for row in queue_status(conn)] == ["dlog", "ox"]
    finally:
        conn.close()


def test_metadata_help_lists_whole_summaries():
    code, out, _ = run("metadata", "--help")
    assert code == 0
    assert "(e.g." not in out and "e.g." not in out
    assert "set    Set KEY to VALUE." in out


@pytest.mark.skipif(os.geteuid() != 0, reason="the system config is root's default")
def test_root_without_c_uses_the_system_config_when_present(tmp_path, config, monkeypatch):
    monkeypatch.setattr(cli_options, "SYSTEM_CONFIG", str(config))
    monkeypatch.delenv(cli_options.CONFIG_ENV, raising=False)
    code, out, err = run("check-config")
    assert code == 0, err
    assert f"state_dir = {tmp_path / 'state'}" in out
    monkeypatch.setattr(cli_options, "SYSTEM_CONFIG", str(tmp_path / "absent.conf"))
    assert cli_options.chosen_config() is None  # the built-in default
    assert cli_options.chosen_config("other.conf") == "other.conf"


@pytest.mark.parametrize(
    "block, says, not_said",
    [
        # a near miss is named first, before any pip hint
        ("push_notification mine {\n  driver = dlgo\n}\n", "driver 'dlgo' is not installed; did you mean 'dlog'?",
         "pip install"),
        # no driver line: the block's name stood in for it, its settings say which driver was meant
        ("push_notification myox {\n  ox_url = http://127.0.0.1:9/notify\n}\n", "add `driver = ox`",
         "pip install push-notification-myox"),
    ],
)  # fmt: skip
def test_a_driver_name_that_is_not_installed_names_the_driver_meant(tmp_path, block, says, not_said):
    conf = tmp_path / "c.conf"
    conf.write_text(block)
    code, _, err = run("check-config", "-c", str(conf))
    assert code != 0
    assert says in err
    assert not_said not in err


@pytest.mark.parametrize(
    "given, full",
    [
        ("http://127.0.0.1:8425", "http://127.0.0.1:8425/v1/transactions"),
        ("http://127.0.0.1:8425/", "http://127.0.0.1:8425/v1/transactions"),
        ("http://127.0.0.1:8425/v1/transactions", "http://127.0.0.1:8425/v1/transactions"),
        ("https://[::1]:8425", "https://[::1]:8425/v1/transactions"),
    ],
)
def test_ingress_urls_are_accepted_as_base_or_full(given, full):
    assert ingress_url(given) == (full, None)


def test_an_ingress_url_with_another_path_is_a_warning_and_a_scheme_less_one_an_error():
    url, warning = ingress_url("http://127.0.0.1:8425/push")
    assert url == "http://127.0.0.1:8425/push/v1/transactions" and warning and "404" in warning
    for bad in ("127.0.0.1:8425", "localhost:8425"):
        with pytest.raises(ValueError, match="has no scheme; write http://"):
            ingress_url(bad)
    code, _, err = run("send", "MessageNew", "-u", "alice", "--url", "127.0.0.1:8425")
    assert code == 2 and "has no scheme; write http://127.0.0.1:8425" in err
    assert "is serve running" not in err


def test_dovecot_config_completes_a_base_url_for_the_bridge(tmp_path):
    code, out, err = run(
        "dovecot-config", "--no-install", "--version", "2.3", "--transport", "http", "--url", "http://127.0.0.1:8425"
    )
    assert code == 0, err
    assert "push_notification_bridge_url = http://127.0.0.1:8425/v1/transactions" in out
    assert "#      listen = 127.0.0.1:8425" in out


def test_dovecot_config_uses_the_mail_users_primary_group_and_warns_about_unknown_users():
    code, out, err = run("dovecot-config", "--no-install", "--version", "2.3", "--mail-user", "nobody")
    assert code == 0
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    assert f"install -d -o nobody -g {group} -m 2770 /var/spool/push-notification" in out
    assert "does not exist" not in err
    code, out, err = run("dovecot-config", "--no-install", "--version", "2.3", "--mail-user", "no-such-mail-user")
    assert code == 0
    assert "warning: user 'no-such-mail-user' does not exist on this host" in err


def test_dovecot_config_prints_the_daemon_side():
    code, out, _ = run("dovecot-config", "--no-install", "--version", "2.4", "--mail-user", "mail")
    assert code == 0
    assert "#      spool_dir = /var/spool/push-notification" in out
    assert "SupplementaryGroups=mail" in out
    assert "ReadWritePaths=/var/spool/push-notification" in out
    assert "/etc/push-notification/push-notification.conf" in out


@pytest.mark.parametrize(
    "version, line", [("2.3", "mail_attribute_dict = file:%h/dovecot-attributes"), ("2.4", "mail_attribute {")]
)
def test_dovecot_config_prints_the_metadata_lines_when_asked(version, line):
    code, out, _ = run("dovecot-config", "--no-install", "--version", version, "--metadata")
    assert code == 0
    assert f"\n{line}\n" in out and "  imap_metadata = yes" in out
    code, out, _ = run("dovecot-config", "--no-install", "--version", version)
    assert f"\n{line}\n" not in out


def test_a_daemon_off_loopback_is_told_to_set_an_ingress_token():
    code, out, _ = run(
        "dovecot-config", "--no-install", "--version", "2.3", "--transport", "http", "--url", "http://10.0.0.5:8425"
    )
    assert code == 0
    assert "#      listen = 10.0.0.5:8425" in out
    assert "#      ingress_token = <a secret; Dovecot gets it with --token> (required off loopback)" in out


async def test_the_memory_queue_counts_transactions_apart_from_deliveries():
    queue = MemoryQueue()
    queue.attach(["ox", "dlog", "webhook"])
    await queue.put(make_transaction(make_event("MessageNew", uid=1)))
    assert (queue.pending_transactions(), queue.depth()) == (1, 3)
