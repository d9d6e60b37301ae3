"""What strict X.509 verification refuses in a CA certificate, read from its DER bytes.

Python 3.13 verifies with OpenSSL's ``X509_STRICT`` flag by default (and our HTTP clients set it
on every Python, so a CA works alike on Debian 12 and 13). OpenSSL then refuses a CA certificate
that is not made as RFC 5280 says, e.g. one made by ``openssl req -x509`` with the stock
openssl.cnf, which lacks key usage; but it says so only when a request fails
(``CA cert does not include key usage extension``). Reading the configured CA at start-up
turns that into one line naming the file and the fix. The standard library parses no
extensions, so this reads the few it needs from the DER encoding (which OpenSSL has already
accepted as well formed).
"""

from __future__ import annotations

from collections.abc import Iterator

_SEQUENCE = 0x30
_BOOLEAN = 0x01
_OID = 0x06
_OCTET_STRING = 0x04
_EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate

_BASIC_CONSTRAINTS = bytes([0x55, 0x1D, 0x13])  # 2.5.29.19
_KEY_USAGE = bytes([0x55, 0x1D, 0x0F])  # 2.5.29.15
_SUBJECT_KEY_IDENTIFIER = bytes([0x55, 0x1D, 0x0E])  # 2.5.29.14
_KEY_CERT_SIGN = 0x04  # bit 5 of the KeyUsage BIT STRING's first byte

#: The openssl.cnf extension lines that make a CA certificate strict verification accepts.
CA_EXTENSIONS_FIX = (
    "'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign' "
    "and 'subjectKeyIdentifier = hash'"
)


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the content of the DER element that begins at ``pos``."""
    tag, length, pos = der[pos], der[pos + 1], pos + 2
    if length & 0x80:
        size = length & 0x7F
        length, pos = int.from_bytes(der[pos : pos + size], "big"), pos + size
    if pos + length > len(der):
        raise ValueError("truncated DER element")
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, content, pos = _element(der, pos)
        yield tag, content, pos


def _extensions(der: bytes) -> dict[bytes, tuple[bool, bytes]]:
    """Extension OID bytes -> (critical, value) of a DER certificate."""
    _, cert_start, cert_end = _element(der, 0)
    _, tbs_start, tbs_end = next(_children(der, cert_start, cert_end))
    found: dict[bytes, tuple[bool, bytes]] = {}
    for tag, start, _end in _children(der, tbs_start, tbs_end):
        if tag != _EXTENSIONS:
            continue
        _, list_start, list_end = _element(der, start)
        for _, ext_start, ext_end in _children(der, list_start, list_end):
            oid, critical, value = b"", False, b""
            for field_tag, field_start, field_end in _children(der, ext_start, ext_end):
                if field_tag == _OID:
                    oid = der[field_start:field_end]
                elif field_tag == _BOOLEAN:
                    critical = der[field_start:field_end] != b"\x00"
                elif field_tag == _OCTET_STRING:
                    value = der[field_start:field_end]
            found[oid] = (critical, value)
    return found


def _is_ca(basic_constraints: bytes) -> bool:
    _, start, end = _element(basic_constraints, 0)
    for tag, field_start, field_end in _children(basic_constraints, start, end):
        if tag == _BOOLEAN:
            return basic_constraints[field_start:field_end] != b"\x00"
    return False


def _signs_certificates(key_usage: bytes) -> bool:
    _, start, end = _element(key_usage, 0)  # BIT STRING: unused-bits byte, then the bits
    return end - start > 1 and bool(key_usage[start + 1] & _KEY_CERT_SIGN)


def ca_problems(der: bytes) -> list[str]:
    """What strict verification refuses in this CA certificate (empty when it is well made).

    The rules are OpenSSL's for a CA under ``X509_STRICT``: basic constraints marked CA and
    critical, key usage that includes certificate signing, a subject key identifier.
    """
    try:
        extensions = _extensions(der)
        problems = []
        basic = extensions.get(_BASIC_CONSTRAINTS)
        if basic is None or not _is_ca(basic[1]):
            problems.append("no basic constraints marking it as a CA")
        elif not basic[0]:
            problems.append("basic constraints not marked critical")
        usage = extensions.get(_KEY_USAGE)
        if usage is None:
            problems.append("no key usage extension")
        elif not _signs_certificates(usage[1]):
            problems.append("a key usage without certificate signing")
        if _SUBJECT_KEY_IDENTIFIER not in extensions:
            problems.append("no subject key identifier")
    except (IndexError, ValueError, StopIteration):
        return []  # not DER we can read: leave the verdict to OpenSSL at the first request
    return problems
