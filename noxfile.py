"""Every check the project runs: ``python3 -m nox`` (CI runs the same through .ci/run).

Packages are discovered by glob: ``core`` and every ``drivers/*`` with a pyproject.toml. Each
package is tested in its own virtualenv holding only the core and its declared dependencies,
then the cross-package and end-to-end tests in ``tests/`` run with everything installed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
DRIVERS = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("drivers/*/pyproject.toml"))
PACKAGES = ["core", *DRIVERS]
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.23", "hypothesis>=6"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "cross", "template"]


def _extras(package: str) -> str:
    """``package[test]`` when the package declares test extras, else the package itself."""
    pyproject = (ROOT / package / "pyproject.toml").read_text()
    return f"./{package}[test]" if "\ntest = [" in pyproject else f"./{package}"


def _install_dovecot(session: nox.Session, *scripts: str) -> None:
    """Real Dovecot for the tests that compare with it (idempotent; needs root for apt-get):
    2.3.19 from Debian, and with ``install-dovecot24`` a 2.4 chroot (about 30 s to build)."""
    for script in ("install-dovecot", *scripts):
        path = ROOT / "scripts" / script
        if path.exists() and (os.geteuid() == 0 or os.environ.get("CI") == "true"):
            session.run("bash", str(path), external=True)


@nox.session
@nox.parametrize("package", PACKAGES, ids=[p.removeprefix("drivers/") for p in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """One package's own tests, in a venv with only the core and what it declares."""
    _install_dovecot(session)
    session.install(*TEST_DEPS, "./core", _extras(package))
    session.run("pytest", "-q", "-p", "no:cacheprovider", f"{package}/tests", *session.posargs)


@nox.session
def cross(session: nox.Session) -> None:
    """Cross-package and end-to-end tests (real daemon, real Dovecot 2.3 and 2.4 when installable)."""
    _install_dovecot(session, "install-dovecot24")
    # pip: tests install drivers the way users do (uv venvs come without it)
    session.install(*TEST_DEPS, "pip", "./core", *(_extras(p) for p in DRIVERS))
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.install("./core")
    session.run("python", "scripts/gen-hooks-doc", "--check")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's source."""
    session.install("mypy", "./core", *(f"./{p}" for p in DRIVERS))
    sources = [
        str(p)
        for pkg in PACKAGES
        for p in (ROOT / pkg / "src").iterdir()
        if p.is_dir() and not p.name.endswith("egg-info")
    ]
    session.run("mypy", "--config-file", "mypy.ini", *sources)


@nox.session
def template(session: nox.Session) -> None:
    """A driver made by ``push-notification new-driver`` passes its own tests and lint right after install."""
    session.install("./core", "ruff", "mypy")
    # Outside .nox: ruff skips anything below a .nox directory.
    project = Path(tempfile.mkdtemp(prefix="pn-template-")) / "push-notification-example"
    session.run("push-notification", "new-driver", "example", "--dir", str(project))
    session.install("-e", f"{project}[test]")
    session.chdir(project)
    session.run("pytest", "-q", "-p", "no:cacheprovider")
    session.run("ruff", "check", "src", "tests")
    session.run("ruff", "format", "--check", "src", "tests")
    session.run("mypy", "--strict", "src")
