"""Secrets configured anywhere never appear in any output: check-config, the daemon's log
(text and JSON) while deliveries fail, and the errors of a config that does not load."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from push_notification.testing.daemon import CLI
from push_notification.testing.net import free_port

SIGNING_KEY = base64.b64encode(b"SigningKeyBytes-0123456789abcdef").decode()
#: Every configured secret, as written and as a client would send it decoded.
SECRETS = {
    "ingress token": "IngressTok3n",
    "OX password": "Pa/s#s?w0rd",
    "OX password (encoded)": "Pa%2Fs%23s%3Fw0rd",
    "webhook path secret": "T0Secret7Path",
    "webhook query secret": "QuerySecret99",
    "X-Auth header": "HeaderSecret1",
    "Authorization header": "AuthSecret2",
    "signing secret": SIGNING_KEY,
}


def config(ox_password: str, log_format: str = "text") -> str:
    port = free_port()  # nothing listens there: every delivery fails and is logged
    return f"""\
log_format = {log_format}
queue = memory
ingress_token = IngressTok3n
plugin {{
  push_notification_driver = ox:url=http://login:{ox_password}@127.0.0.1:{port}/notify
}}
push_notification hook {{
  driver = webhook
  url = http://127.0.0.1:{port}/hook/T0Secret7Path?token=QuerySecret99
  secret = whsec_{SIGNING_KEY}
  http_client_request_max_attempts = 1
  headers {{
    X-Auth = HeaderSecret1
    Authorization = Bearer AuthSecret2
  }}
}}
"""


def assert_no_secret(output: str, where: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in output, f"{name} shown in {where}"


def run_cli(*args: str) -> str:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_in_check_config_or_the_log_of_failing_deliveries(start_daemon, log_format: str) -> None:
    text = config("Pa%2Fs%23s%3Fw0rd", log_format)
    daemon = start_daemon(text)
    checked = daemon.cli("check-config", "-c", str(daemon.config)).stdout
    assert "push_notification hook {" in checked and "X-Auth = ***" in checked
    assert_no_secret(checked, "check-config")
    body = {
        "user": "alice",
        "mailbox": "INBOX",
        "events": [{"name": "MessageNew", "uid": 1, "uid_validity": 1}],
        "metadata": {"/private/vendor/vendor.dovecot/http-notify": "user=11@3"},  # OX notifies this user
    }
    request = urllib.request.Request(f"{daemon.url}/v1/transactions", data=json.dumps(body).encode(), method="POST")
    request.add_header("Authorization", "Bearer IngressTok3n")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
    daemon.wait_for_log("push_notification hook", timeout=30)
    daemon.wait_for_log("push_notification ox", timeout=30)
    daemon.stop()
    assert "Traceback" not in daemon.log()
    assert_no_secret(daemon.log(), f"the {log_format} log")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # The OX URL does not parse: its error must still mask the password.
        (config("Pa/s#s?w0rd"), ""),
        # A line without '='.
        (config("Pa%2Fs%23s%3Fw0rd") + "ingress_token IngressTok3n\n", ""),
        # A signing secret that is not valid.
        (config("Pa%2Fs%23s%3Fw0rd").replace(f"whsec_{SIGNING_KEY}", "whsec_Inval!dSecret"), "Inval!dSecret"),
    ],
)
def test_no_secret_in_the_errors_of_a_config_that_does_not_load(tmp_path: Path, text: str, secret: str) -> None:
    path = tmp_path / "pn.conf"
    path.write_text(f"state_dir = {tmp_path / 'state'}\n{text}")
    listen = f"127.0.0.1:{free_port()}"
    for command in (["check-config", "-c", str(path)], ["serve", "-c", str(path), "--listen", listen]):
        output = run_cli(*command)
        assert output.strip() and "Traceback" not in output, output
        assert_no_secret(output, command[0])
        assert not secret or secret not in output
