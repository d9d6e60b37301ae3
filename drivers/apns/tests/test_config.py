"""Start-up: certificate authentication works, and every configuration mistake is one line
naming the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import NO_STORM, TOPIC, instance_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from push_notification.cli import cli
from push_notification.testing.inprocess import running_daemon, startup_error
from push_notification_apns.auth import TOKEN_LIFETIME, ProviderToken
from push_notification_apns.testing import LoopbackApns


async def test_certificate_authentication_needs_no_provider_token(tmp_path: Path) -> None:
    async with LoopbackApns(tmp_path, topic=TOPIC) as apns:
        certificate = apns.client_certificate(tmp_path / "apns-cert.pem")
        config = instance_config(apns, None, f"{NO_STORM}\n  certificate_file = {certificate}")
        async with running_daemon(tmp_path, config) as running:
            device = apns.device()
            await running.register("apns", token=device.token)
            await running.send()
            [push] = await apns.wait_for(1)
    assert push.claims is None and "authorization" not in push.headers and apns.rejected == []


def start_error(tmp_path: Path, settings: str) -> str:
    return startup_error(tmp_path, "apns", settings)


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    paths = {"p8": tmp_path / "AuthKey.p8", "rsa": tmp_path / "rsa.pem", "garbage": tmp_path / "garbage.p8"}
    paths["p8"].write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    paths["rsa"].write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    paths["garbage"].write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    return paths


IDS = "key_id = ABC123DEFG\n team_id = TEAM123456"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ("key_file = {p8}\n" + IDS,
         "setting 'topic': is required; add 'topic = ...' to the block"),
        ("topic = t\n" + IDS,
         "setting 'key_file': is required (with key_id and team_id), or certificate_file for certificate authentication"),
        ("topic = t\nkey_file = /nonexistent/AuthKey.p8\n" + IDS,
         "setting 'key_file': cannot read /nonexistent/AuthKey.p8: No such file or directory"),
        ("topic = t\nkey_file = {garbage}\n" + IDS,
         "setting 'key_file': {garbage} is not an unencrypted PEM private key (use the AuthKey_KEYID.p8 file Apple gave you)"),
        ("topic = t\nkey_file = {rsa}\n" + IDS,
         "setting 'key_file': {rsa} is not a P-256 key (RSA); APNs needs the P-256 (ES256) .p8 key from Apple"),
        ("topic = t\nkey_file = {p8}\nteam_id = TEAM123456",
         "setting 'key_id': is required; add 'key_id = ...' to the block"),
        ("topic = t\nkey_file = {p8}\nkey_id = short\nteam_id = TEAM123456",
         "setting 'key_id': must be Apple's 10-character id (Certificates, Identifiers & Profiles)"),
        ("topic = t\nkey_file = {p8}\ncertificate_file = {rsa}\n" + IDS,
         "setting 'key_file': set key_file, key_id and team_id (token authentication) or certificate_file, not both"),
        ("topic = t\ncertificate_file = {garbage}",
         "setting 'certificate_file': cannot load the certificate and key from {garbage}: [SSL] PEM lib"),
        ("topic = t\npush_type = loud\nkey_file = {p8}\n" + IDS,
         "setting 'push_type': use background or alert"),
        ("topic = t\nenvironment = staging\nkey_file = {p8}\n" + IDS,
         "setting 'environment': use production or sandbox"),
        ("topic = t\nproduction_url = http://127.0.0.1:1\nkey_file = {p8}\n" + IDS,
         "setting 'production_url': APNs is HTTP/2 over TLS: use an https:// URL"),
    ],
)  # fmt: skip
def test_a_configuration_mistake_is_one_line_naming_the_setting(
    tmp_path: Path, keys: dict[str, Path], settings: str, error: str
) -> None:
    assert start_error(tmp_path, settings.format(**keys)).startswith(error.format(**keys))


def test_the_driver_is_found_by_its_entry_point_and_listed() -> None:
    result = CliRunner().invoke(cli, ["drivers", "--json"])
    assert result.exit_code == 0, result.output
    assert "push-notification-apns" in [row["distribution"] for row in json.loads(result.output)]


def test_check_config_starts_the_instance_without_the_daemon(tmp_path: Path, keys: dict[str, Path]) -> None:
    good, bad = tmp_path / "good.conf", tmp_path / "bad.conf"
    block = f"key_file = {keys['p8']}\n" + IDS
    good.write_text(f"state_dir = {tmp_path / 'state'}\npush_notification apns {{\ntopic = t\n{block}\n}}\n")
    bad.write_text(f"state_dir = {tmp_path / 'state'}\npush_notification apns {{\n{block}\n}}\n")
    assert CliRunner().invoke(cli, ["check-config", "-c", str(good)]).exit_code == 0
    result = CliRunner().invoke(cli, ["check-config", "-c", str(bad)])
    assert result.exit_code == 1 and result.output.strip().endswith(
        "setting 'topic': is required; add 'topic = ...' to the block"
    )
    assert len(result.output.strip().splitlines()) == 1


def test_the_provider_token_is_kept_50_minutes_then_renewed() -> None:
    token = ProviderToken(ec.generate_private_key(ec.SECP256R1()), "ABC123DEFG", "TEAM123456")
    first = token.authorization(now=1_000_000)
    assert token.authorization(now=1_000_000 + TOKEN_LIFETIME - 1) == first
    renewed = token.authorization(now=1_000_000 + TOKEN_LIFETIME)
    assert renewed != first and token.issued == 2
    token.expired(first)  # an old token refused: the current one stays
    assert token.authorization(now=1_000_000 + TOKEN_LIFETIME + 1) == renewed
    token.expired(renewed)
    assert token.authorization(now=1_000_000 + TOKEN_LIFETIME + 2) not in (first, renewed)
