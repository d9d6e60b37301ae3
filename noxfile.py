"""Every check the project runs: the README's test command (CI runs the same through .ci/run).

Packages are discovered by glob: ``core`` and every ``drivers/*`` with a pyproject.toml. Each
package is tested in its own virtualenv holding only the core and its declared dependencies, on
the oldest and the newest Python we support (Debian 12's 3.11 and Debian 13's 3.13); then the
cross-package and end-to-end tests in ``tests/`` run with everything installed, on one of them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
DRIVERS = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("drivers/*/pyproject.toml"))
PACKAGES = ["core", *DRIVERS]
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.23", "hypothesis>=6"]
#: The oldest and the newest Python we support; the cross/e2e session runs on the newest.
PYTHONS = ["3.11", "3.13"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "cross", "template"]


def _runs(command: str) -> bool:
    try:
        return subprocess.run([command, "-c", ""], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in path.parent.parent.name.split("."))


def _reach_pyenv_pythons() -> None:
    """pyenv's shims run only the versions pyenv has selected, so ``python3.13`` fails although
    pyenv has 3.13 installed. Each such version is linked into a directory put first on PATH, for
    nox and uv to find. A version found nowhere is left to nox, which downloads it with uv."""
    links = ROOT / ".nox" / "pythons"
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for version in PYTHONS:
        name = f"python{version}"
        installed = sorted(pyenv_root.glob(f"versions/{version}.*/bin/{name}"), key=_version_key)
        if not installed or _runs(name):
            continue
        links.mkdir(parents=True, exist_ok=True)
        (links / name).unlink(missing_ok=True)
        (links / name).symlink_to(installed[-1])
        if not os.environ["PATH"].startswith(f"{links}{os.pathsep}"):
            os.environ["PATH"] = f"{links}{os.pathsep}{os.environ['PATH']}"


_reach_pyenv_pythons()


def _extras(package: str) -> str:
    """``package[test]`` when the package declares test extras, else the package itself."""
    pyproject = (ROOT / package / "pyproject.toml").read_text()
    return f"./{package}[test]" if "\ntest = [" in pyproject else f"./{package}"


def _install_dovecot(session: nox.Session, *scripts: str) -> None:
    """Real Dovecot and Redis for the tests that use them (idempotent; needs root for apt-get):
    Dovecot 2.3.19 and redis-server from Debian, and with ``install-dovecot24`` a 2.4 chroot
    (about 30 s to build)."""
    for script in ("install-dovecot", "install-redis", *scripts):
        path = ROOT / "scripts" / script
        if path.exists() and (os.geteuid() == 0 or os.environ.get("CI") == "true"):
            session.run("bash", str(path), external=True)


@nox.session(python=PYTHONS)
@nox.parametrize("package", PACKAGES, ids=[p.removeprefix("drivers/") for p in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """One package's own tests, in a venv with only the core and what it declares."""
    _install_dovecot(session)
    session.install(*TEST_DEPS, "./core", _extras(package))
    session.run("pytest", "-q", "-p", "no:cacheprovider", f"{package}/tests", *session.posargs)


@nox.session(python=PYTHONS[-1])
def cross(session: nox.Session) -> None:
    """Cross-package and end-to-end tests (real daemon, real Dovecot 2.3 and 2.4 when installable)."""
    _install_dovecot(session, "install-dovecot24")
    # pip: tests install drivers the way users do (uv venvs come without it);
    # core[redis]: the scale-out tests run daemons on queue = redis
    session.install(*TEST_DEPS, "pip", "./core[redis]", *(_extras(p) for p in DRIVERS))
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
    # core[testing]: the kit's pytest plugin and TLS maker are typed against pytest and cryptography;
    # core[redis]: the Redis queue is typed against the redis client
    session.install("mypy", "./core[testing,redis]", *(f"./{p}" for p in DRIVERS))
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
    # A config warning (e.g. "Unknown config option: asyncio_mode") fails the session.
    session.run("pytest", "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestConfigWarning")
    session.run("ruff", "check", "src", "tests")
    session.run("ruff", "format", "--check", "src", "tests")
    session.run("mypy", "--strict", "src")
