"""Let a reload (SIGHUP) see drivers installed since the daemon started.

Python reads ``.pth`` files once, at start-up: a driver installed with ``pip install -e``
puts its source directory (or an import hook) in one, so without a re-scan the reloaded
config's new driver would be ``not installed``. Import caches and ``importlib.metadata``'s
directory caches are refreshed too, for drivers installed the plain way.
"""

from __future__ import annotations

import importlib
import logging
import os
import site
import sys

log = logging.getLogger("push_notification.server.daemon")


def site_directories() -> list[str]:
    """The site-packages directories this interpreter reads ``.pth`` files from."""
    directories = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return directories


def _pth_files() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for directory in site_directories():
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        found.update((directory, name) for name in names if name.endswith(".pth"))
    return found


#: The ``.pth`` files Python processed at start-up (this module is imported then).
_SEEN = _pth_files()


def refresh_import_paths() -> list[str]:
    """Process ``.pth`` files added since start-up and clear the import caches; returns the
    directories newly put on ``sys.path``. Files seen before are not run again."""
    before = list(sys.path)
    known = set(sys.path)
    for directory, name in sorted(_pth_files() - _SEEN):
        _SEEN.add((directory, name))
        try:
            site.addpackage(directory, name, known)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a broken .pth file must not stop a reload
            log.warning("reload: cannot read %s: %s", os.path.join(directory, name), exc)
    importlib.invalidate_caches()
    added = [path for path in sys.path if path not in before]
    if added:
        log.info("reload: new import paths (editable installs): %s", ", ".join(added))
    return added
