"""End-to-end tests against a real Dovecot 2.3 (Debian packages).

Dovecot is installed by ``scripts/install-dovecot`` when missing (root + apt-get). Under
``CI=true`` a missing Dovecot fails the run; elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from push_notification.dovecot.harness import DovecotUnavailable, dovecot_binary

REPO = Path(__file__).resolve().parents[2]
_reason: list[str | None] = []


def _dovecot_missing() -> str | None:
    """Why Dovecot cannot be used here, or None once it is installed."""
    if _reason:
        return _reason[0]
    try:
        dovecot_binary()
        reason = None
    except DovecotUnavailable:
        result = subprocess.run(
            [str(REPO / "scripts" / "install-dovecot")], capture_output=True, text=True, check=False
        )
        try:
            dovecot_binary()
            reason = None
        except DovecotUnavailable as exc:
            reason = (result.stderr.strip() or str(exc)).splitlines()[-1]
    _reason.append(reason)
    return reason


@pytest.fixture(autouse=True)
def require_dovecot() -> Iterator[None]:
    """Every test here needs Dovecot: fail under CI, skip elsewhere, with the reason."""
    reason = _dovecot_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Dovecot is unavailable: {reason}")
        pytest.skip(f"Dovecot is unavailable: {reason}")
    yield
