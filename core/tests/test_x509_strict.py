"""What strict X.509 verification refuses in a CA certificate, read before the first request."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from push_notification.http.x509 import ca_problems

SIGN_CERTS = {"key_cert_sign": True, "crl_sign": True}
NO_USAGE = {"key_cert_sign": False, "crl_sign": False}


def ca_der(*, ca: bool | None = True, bc_critical: bool = True, usage: dict[str, bool] | None = SIGN_CERTS,
           skid: bool = True) -> bytes:  # fmt: skip
    """A self-signed CA certificate with the given extensions (``None``: left out)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Internal CA")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
    )  # fmt: skip
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=bc_critical)
    if usage is not None:
        flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "encipher_only", "decipher_only"), False)  # fmt: skip
        builder = builder.add_extension(x509.KeyUsage(**{**flags, **usage}), critical=True)
    if skid:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_a_ca_made_as_rfc_5280_says_has_no_problem() -> None:
    assert ca_problems(ca_der()) == []


@pytest.mark.parametrize(
    ("made", "problems"),
    [
        ({"usage": None}, ["no key usage extension"]),
        ({"usage": {**NO_USAGE, "digital_signature": True}}, ["a key usage without certificate signing"]),
        ({"bc_critical": False}, ["basic constraints not marked critical"]),
        ({"ca": None}, ["no basic constraints marking it as a CA"]),
        ({"ca": False}, ["no basic constraints marking it as a CA"]),
        ({"skid": False}, ["no subject key identifier"]),
        ({"usage": None, "skid": False}, ["no key usage extension", "no subject key identifier"]),
    ],
)
def test_each_thing_strict_verification_refuses_is_named(made: dict[str, object], problems: list[str]) -> None:
    assert ca_problems(ca_der(**made)) == problems  # type: ignore[arg-type]


def test_bytes_that_are_not_a_certificate_are_left_to_openssl() -> None:
    assert ca_problems(b"\x30\x82\xff") == []
