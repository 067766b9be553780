"""The ``agentsim`` command line: a thin shell over :mod:`agentsim.api`.

This module only builds the typer ``app`` and registers every command on it, in one place and in the order
``agentsim --help`` lists them; the commands live in one module per group: :mod:`~agentsim.cli.run` (run,
validate, schema, example, catalog), :mod:`~agentsim.cli.results` (report, compare),
:mod:`~agentsim.cli.planning` (sweep), :mod:`~agentsim.cli.plan` (plan), :mod:`~agentsim.cli.bench`
(calibrate, fidelity) and :mod:`~agentsim.cli.trace` (the ``agentsim trace ...`` sub-app);
:mod:`~agentsim.cli.common` holds what they share and :mod:`~agentsim.cli.console` the consoles and the one way
to fail.

Exit codes: 0 success; 2 bad input (the scenario, an override, an existing output directory), with the field
path and the reason on stderr and no traceback; 1 a run that failed for another reason; 3 a plan in which
nothing meets the SLOs.
"""

from __future__ import annotations

import typer

from agentsim.cli import bench, plan, planning, results, run
from agentsim.cli.trace import trace_app

app = typer.Typer(
    name="agentsim",
    help="Simulate agentic LLM workloads on modeled serving clusters: latency, tokens, $ per token and per task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from agentsim._version import __version__

        typer.echo(f"agentsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """Simulate agentic LLM workloads on modeled serving clusters: latency, tokens, $ per token and per task."""

app.command("run")(run.run)
app.command("validate")(run.validate)
app.command("schema")(run.schema)
app.command("example")(run.example)
app.command("catalog")(run.catalog)
app.command("report")(results.report)
app.command("compare")(results.compare)
app.command("sweep")(planning.sweep_cmd)
app.command("plan")(plan.plan_cmd)
app.add_typer(trace_app, name="trace")
app.command("calibrate")(bench.calibrate_cmd)
app.command("fidelity")(bench.fidelity_cmd)


def main() -> None:
    """Entry point of the ``agentsim`` console script."""
    app()
