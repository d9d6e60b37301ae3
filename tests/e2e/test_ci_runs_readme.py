"""CI runs exactly the README's test command, so what CI proves is what a new user types."""

from __future__ import annotations

from e2e_support import REPO
from stock_debian import readme_commands


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_script = (REPO / ".ci/run").read_text().splitlines()
    ci_commands = [line for line in ci_script if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_commands == [readme_commands(REPO / "README.md")[-1]]
