"""``push-notification new-driver NAME``: a complete, separately installable driver project.

The templates ship in ``push_notification/scaffold/templates/driver``; a path part ``__module__``
becomes the import name and a trailing ``.j2`` is dropped. The result passes its own tests
right after ``pip install -e .``, so an author starts from something green.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path

import click
import jinja2

from push_notification.errors import PushNotificationError

TEMPLATE_PACKAGE = "push_notification.scaffold"
TEMPLATE_DIR = ("templates", "driver")
#: Drivers the project ships itself; a community driver must not shadow them.
RESERVED = frozenset({"dlog", "ox", "lua", "webhook"})
NAME_RULE = (
    "a driver name is 2 to 32 characters: a lowercase letter, then lowercase letters, digits or"
    " underscores (e.g. 'matrix' or 'my_push'); it is what 'driver = NAME' says in the config"
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


@dataclass(frozen=True)
class DriverNames:
    """Every name derived from the driver name, as the templates use them."""

    name: str
    distribution: str
    module: str
    class_name: str
    core_version: str

    @classmethod
    def for_driver(cls, name: str) -> DriverNames:
        check_name(name)
        camel = "".join(part.capitalize() for part in name.split("_") if part)
        return cls(
            name=name,
            distribution="push-notification-" + name.replace("_", "-"),
            module="push_notification_" + name,
            class_name=f"{camel}Driver",
            core_version=_core_version(),
        )


def check_name(name: str) -> None:
    """Refuse a name that is not a valid driver name, stating the rule."""
    if not _NAME.match(name) or name.endswith("_") or "__" in name or keyword.iskeyword(name):
        raise PushNotificationError(f"invalid driver name {name!r}: {NAME_RULE}")
    if name in RESERVED:
        raise PushNotificationError(
            f"driver name {name!r} is taken by a driver shipped with push-notification"
            f" ({', '.join(sorted(RESERVED))}); choose another name"
        )


def _core_version() -> str:
    try:
        return metadata.version("push-notification")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def _walk(folder: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found.extend(_walk(entry, (*prefix, entry.name)))
        elif entry.name.endswith(".j2"):
            found.append(((*prefix, entry.name), entry))
    return found


def _target(parts: tuple[str, ...], names: DriverNames) -> Path:
    renamed = [names.module if p == "__module__" else p for p in parts]
    renamed[-1] = renamed[-1].removesuffix(".j2")
    if renamed[-1] == "gitignore":  # shipped without the dot, so packaging keeps it
        renamed[-1] = ".gitignore"
    return Path(*renamed)


def render_driver(name: str, directory: Path | None = None) -> Path:
    """Write the project for driver ``name`` into ``directory`` (default
    ``./push-notification-NAME``), which must not exist or be empty. Returns it."""
    names = DriverNames.for_driver(name)
    dest = directory if directory is not None else Path.cwd() / names.distribution
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise PushNotificationError(f"{dest} already exists and is not empty; choose another --dir")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    root = resources.files(TEMPLATE_PACKAGE).joinpath(*TEMPLATE_DIR)
    files = _walk(root)
    if not files:
        raise PushNotificationError(f"the driver templates are missing from {root}; reinstall push-notification")
    variables = vars(names)
    for parts, template in files:
        path = dest / _target(parts, names)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.from_string(template.read_text(encoding="utf-8")).render(variables), encoding="utf-8")
    return dest


@click.command("new-driver")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the project (default: ./push-notification-NAME).",
)
def new_driver(name: str, directory: Path | None) -> None:
    """Create a driver project NAME: package, entry point, tests, README and noxfile."""
    try:
        dest = render_driver(name, directory)
    except PushNotificationError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write the project: {exc}") from None
    names = DriverNames.for_driver(name)
    click.echo(f"Created {names.distribution} (driver '{name}') in {dest}")
    click.echo(f'Next: cd {dest} && pip install -e ".[test]" && pytest')


if __name__ == "__main__":
    new_driver()
