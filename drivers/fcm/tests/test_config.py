"""Start-up: every configuration mistake is one line naming the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from push_notification.cli import cli
from push_notification.config import parse_config
from push_notification.server.daemon import Daemon
from push_notification.testing.inprocess import startup_error
from push_notification_fcm import FcmDriver
from push_notification_fcm.testing import LoopbackFcm


def start_error(tmp_path: Path, settings: str) -> str:
    return startup_error(tmp_path, "fcm", settings)


@pytest.fixture
def accounts(tmp_path: Path) -> dict[str, Path]:
    good = LoopbackFcm().service_account(tmp_path / "good.json")
    info = json.loads(good.read_text())
    files = {
        "good": good,
        "noproject": {**info, "project_id": ""},
        "notjson": "{nope",
        "user": {"type": "authorized_user", "client_id": "x"},
        "nokey": {k: v for k, v in info.items() if k != "private_key"},
        "badkey": {**info, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
    }
    paths = {}
    for name, content in files.items():
        path = tmp_path / f"{name}.json"
        if not isinstance(content, Path):
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        paths[name] = path
    return paths


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ("", "setting 'service_account': is required; add 'service_account = ...' to the block"),
        ("service_account = /nonexistent/sa.json",
         "setting 'service_account': cannot read /nonexistent/sa.json: No such file or directory"),
        ("service_account = {notjson}",
         "setting 'service_account': {notjson} is not JSON (download the service account key as JSON)"),
        ("service_account = {user}",
         "setting 'service_account': {user} is not a service account key (its \"type\" must be \"service_account\")"),
        ("service_account = {nokey}",
         "setting 'service_account': {nokey} has no \"private_key\": download a new key from the Firebase console"),
        ("service_account = {badkey}",
         "setting 'service_account': {badkey}: \"private_key\" is not an RSA private key in PEM"),
        ("service_account = {noproject}",
         "setting 'project_id': is required: the service account names no project_id"),
        ("service_account = {good}\npush_type = loud", "setting 'push_type': use data or alert"),
        ("service_account = {good}\nurl = http://fcm.example.com",
         "setting 'url': use an https:// URL (http:// only on loopback)"),
    ],
)  # fmt: skip
def test_a_configuration_mistake_is_one_line_naming_the_setting(
    tmp_path: Path, accounts: dict[str, Path], settings: str, error: str
) -> None:
    assert start_error(tmp_path, settings.format(**accounts)).startswith(error.format(**accounts))


def test_project_id_may_come_from_the_setting(tmp_path: Path, accounts: dict[str, Path]) -> None:
    config = (f"listen = 127.0.0.1:0\nstate_dir = {tmp_path / 'state'}\npush_notification fcm {{\n"
              f"service_account = {accounts['noproject']}\nproject_id = other\n}}\n")  # fmt: skip
    daemon = Daemon(parse_config(config, str(tmp_path / "push-notification.conf")))
    [instance] = daemon.instances
    assert isinstance(instance.plugin, FcmDriver)
    assert instance.plugin.config.send_url == "https://fcm.googleapis.com/v1/projects/other/messages:send"


def test_the_driver_is_found_by_its_entry_point_and_listed() -> None:
    result = CliRunner().invoke(cli, ["drivers", "--json"])
    assert result.exit_code == 0, result.output
    assert "push-notification-fcm" in [row["distribution"] for row in json.loads(result.output)]
