"""A stock Debian 13 to run the README's commands in: the trixie chroot of scripts/install-dovecot24,
which has Debian's own python3 and python3-venv and nothing else of ours.

The README's set-up command runs in a copy of the checkout inside the chroot, in a private
mount namespace (``unshare --mount``) that lends the chroot what it needs from the host: its
DNS resolver, the package index pip is configured with here (index URLs, find-links, CA bundle,
constraints, as files or ``file:`` paths, mounted read-only at the same paths), and an empty
state directory for the daemon. The namespace dies with the command, and its mounts with it;
the chroot's network is the host's, so the daemon answers on the host's loopback.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from push_notification.testing.dovecot24 import DEFAULT_CHROOT

#: What a user's shell on a fresh Debian has; pip's settings and proxies are added.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".nox", ".venv*", "__pycache__", "*.egg-info", "build", "dist", ".*_cache"
)  # fmt: skip


def stock_debian_missing(chroot: Path = DEFAULT_CHROOT) -> str | None:
    """Why the README cannot be tried on the Debian 13 chroot here, or ``None``."""
    if not (chroot / "usr/bin/python3").exists() or not (chroot / "usr/share/doc/python3-venv").exists():
        return f"no python3 and python3-venv in the Debian 13 chroot {chroot}: run scripts/install-dovecot24 as root"
    if os.geteuid() != 0:
        return "chroot and mounts need root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


def readme_commands(readme: Path) -> list[str]:
    """The ``sh`` blocks of the README's "Set up" section, in order."""
    section = readme.read_text().split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def pip_settings() -> tuple[dict[str, str], list[Path]]:
    """pip's effective settings here as ``PIP_*`` variables, and the local paths they name
    (for a local index, the directory that holds it: its pages link to files beside it).

    ``pip config list`` gives the files' settings (global, user, site) then the ``PIP_*``
    variables, each later source overriding an earlier one, as pip itself reads them.
    """
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    env: dict[str, str] = {}
    for line in listing.splitlines():
        match = re.fullmatch(r"[^.]*\.([\w-]+)='(.*)'", line)
        if match:
            env["PIP_" + match[1].upper().replace("-", "_")] = match[2]
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    paths = []
    for name, value in env.items():
        for word in value.split():
            path = Path(unquote(urlparse(word).path)) if word.startswith("file:") else Path(word)
            if name.endswith("INDEX_URL"):
                path = path.parent  # a local index (…/simple) links to its files beside it
            if path.is_absolute() and path.exists() and path != Path("/"):
                paths.append(path)
    return env, sorted(set(paths))


class StockDebianRun:
    """A shell command run as root in a copy of the checkout inside the chroot, as a process group.

    ``directory`` is the copy as the chroot sees it, ``host_directory`` as the host does.
    """

    def __init__(self, checkout: Path, chroot: Path = DEFAULT_CHROOT) -> None:
        self.chroot = chroot
        self._scratch = Path(tempfile.mkdtemp(prefix="pn-readme-", dir=chroot / "tmp"))
        self.host_directory = self._scratch / "push-notification"
        self.directory = "/" + str(self.host_directory.relative_to(chroot))
        shutil.copytree(checkout, self.host_directory, ignore=COPY_IGNORE, symlinks=True)
        self.log_path = self._scratch / "output.log"
        pip_env, self._lent = pip_settings()
        proxies = {k: v for k, v in os.environ.items() if k.lower() in {"http_proxy", "https_proxy", "no_proxy"}}
        self.env = {**BASE_ENV, **proxies, **pip_env}
        self._made: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def _mount_point(self, host: Path) -> Path:
        """``host``'s path inside the chroot, made (and remembered for removal) if missing."""
        target = self.chroot / host.relative_to("/")
        missing = [p for p in (target, *target.parents) if not p.exists() and p.is_relative_to(self.chroot)]
        if host.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        self._made.extend(missing)
        return target

    def start(self, command: str) -> StockDebianRun:
        """Start ``command`` (a POSIX shell line) in the copy, with the host's lent files mounted."""
        mounts = [f"mount --bind /etc/resolv.conf {shlex.quote(str(self._mount_point(Path('/etc/resolv.conf'))))}"]
        state = self._mount_point(Path("/var/lib/push-notification"))
        mounts.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(state))}")
        for path in self._lent:
            mounts.append(f"mount --bind -o ro {shlex.quote(str(path))} {shlex.quote(str(self._mount_point(path)))}")
        inner = f"cd {shlex.quote(self.directory)} && {command}"
        script = " && ".join([*mounts, f"exec chroot {shlex.quote(str(self.chroot))} /bin/sh -c {shlex.quote(inner)}"])
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )  # fmt: skip
        return self

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``command`` to its end in the copy (plain chroot: nothing lent)."""
        inner = f"cd {shlex.quote(self.directory)} && {command}"
        argv = ["chroot", str(self.chroot), "/bin/sh", "-c", inner]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout, check=False)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the whole group (the daemon finishes its work; the shell that started it
        goes at once), SIGKILL to what is left after 30 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _group_running(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def remove(self) -> None:
        """Stop, then remove the copy and every mount point made for it (the mounts died with
        the namespace, so nothing of the host lies below them)."""
        self.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)
        for path in sorted(self._made, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):  # still in use by another run
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)


def _group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies wait only to be reaped)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[2] == str(pgid) and fields[0] != "Z":
                return True
    return False
