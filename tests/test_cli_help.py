"""Help a new user can act on (issue 18): every command's ``--help`` ends with examples, each of which parses
against that very command (options and arguments exist, values convert), and no help text leaks the
docstrings' reStructuredText markup."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from agentsim.cli import app
from agentsim.cli.examples import EXAMPLES

RST = ("``", ":func:", ":mod:", ":class:", ":data:", ":meth:")
runner = CliRunner()


def commands() -> dict[str, Any]:
    """Every command by its path (``run``, ``trace import``), from the app itself (typer's click objects)."""
    root: Any = typer.main.get_command(app)
    out: dict[str, Any] = {}
    for name, cmd in root.commands.items():
        if hasattr(cmd, "commands"):
            out.update({f"{name} {sub}": c for sub, c in cmd.commands.items()})
        else:
            out[name] = cmd
    return out


def test_every_command_has_examples_and_every_example_a_command() -> None:
    assert set(EXAMPLES) - {"agentsim"} == set(commands())


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_help_shows_examples_without_markup(path: str) -> None:
    args = [] if path == "agentsim" else path.split()
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Examples" in text
    assert EXAMPLES[path][0].split("  #")[0].strip()[:60] in " ".join(text.split())
    leaked = [m for m in RST if m in text]
    assert not leaked, f"{path} --help shows {leaked}"


@pytest.mark.parametrize("path", sorted(set(EXAMPLES) - {"agentsim"}))
def test_each_example_parses_against_its_command(path: str) -> None:
    cmd = commands()[path]
    for line in EXAMPLES[path]:
        words = shlex.split(line, comments=True)
        words = words[: words.index(">")] if ">" in words else words
        assert words[: 1 + len(path.split())] == ["agentsim", *path.split()], line
        args = words[1 + len(path.split()) :]
        try:
            cmd.make_context(path, args, resilient_parsing=False)  # parses and converts; runs nothing
        except typer.Exit:
            pass
        except typer.TyperException as e:  # a usage error: unknown option, missing argument, bad value
            pytest.fail(f"{line!r}: {e.format_message()}")
