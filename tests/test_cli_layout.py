"""The command line is split into one module per command group; no command may get lost in the split.

The expected set is written out here, not read from the app, so a command dropped from the registration in
``agentsim/cli/__init__.py`` fails this test rather than silently disappearing from ``agentsim --help``.
"""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.testing import CliRunner

from agentsim.cli import app

# command -> the module that defines it
COMMANDS = {
    "run": "agentsim.cli.run",
    "validate": "agentsim.cli.run",
    "schema": "agentsim.cli.run",
    "example": "agentsim.cli.run",
    "catalog": "agentsim.cli.run",
    "report": "agentsim.cli.results",
    "compare": "agentsim.cli.results",
    "sweep": "agentsim.cli.planning",
    "plan": "agentsim.cli.plan",
    "calibrate": "agentsim.cli.bench",
    "fidelity": "agentsim.cli.bench",
}
GROUPS = {"trace"}


def test_every_command_is_registered_from_its_group_module() -> None:
    registered = {c.name: c.callback for c in app.registered_commands}
    assert set(registered) == set(COMMANDS)
    assert {name: f.__module__ for name, f in registered.items() if f is not None} == COMMANDS
    assert {g.name for g in app.registered_groups} == GROUPS


def test_the_built_click_group_has_every_command() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == set(COMMANDS) | GROUPS


def test_help_lists_every_command() -> None:
    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    listed = {line.strip("│ ").split(" ")[0] for line in r.output.splitlines()}
    assert set(COMMANDS) | GROUPS <= listed


def test_python_dash_m_agentsim_help_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentsim", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "fidelity" in done.stdout
