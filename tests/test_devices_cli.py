"""``push-notification devices``: the admin's way to register, list and remove devices."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from push_notification.testing.daemon import CLI


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    assert not check or result.returncode == 0, result.stderr
    return result


def test_add_list_remove_and_a_vapid_key(tmp_path: Path) -> None:
    key = tmp_path / "vapid.pem"
    public = run("devices", "vapid-key", str(key)).stdout.strip()
    assert len(public) == 87 and oct(key.stat().st_mode & 0o777) == "0o600"
    refused = run("devices", "vapid-key", str(key), check=False)
    assert refused.returncode == 1 and "exists" in refused.stderr and "Traceback" not in refused.stderr
    config = tmp_path / "pn.conf"
    config.write_text(f"state_dir = {tmp_path}\npush_notification webpush {{\n  vapid_key = {key}\n"
                      "  vapid_subject = mailto:admin@example.com\n}\n")  # fmt: skip
    subscription = {"endpoint": "https://push.example.net/sub/SECRETPATH",
                    "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                             "auth": "tBHItJI5svbpez7KI4CCXg"}}  # fmt: skip
    (tmp_path / "sub.json").write_text(json.dumps(subscription))
    device_id = run("devices", "add", "-c", str(config), "-u", "jane", "--subscription", f"@{tmp_path / 'sub.json'}",
                    "--label", "laptop").stdout.strip()  # fmt: skip
    again = run("devices", "add", "-c", str(config), "-u", "jane", "--subscription", json.dumps(subscription))
    assert again.stdout.strip() == device_id
    listed = run("devices", "list", "-c", str(config), "--json").stdout
    assert json.loads(listed)["id"] == device_id and "SECRETPATH" not in listed and "tBHItJI5" not in listed
    bad = run("devices", "add", "-c", str(config), "-u", "jane", "--subscription", "{oops", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not valid JSON" in bad.stderr
    run("devices", "remove", "-c", str(config), device_id)
    assert run("devices", "list", "-c", str(config)).stdout == ""
    gone = run("devices", "remove", "-c", str(config), device_id, check=False)
    assert gone.returncode == 1 and "no device" in gone.stderr
