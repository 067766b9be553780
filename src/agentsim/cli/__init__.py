"""The ``agentsim`` command line: a thin shell over :mod:`agentsim.api`.

This module only builds the typer ``app`` and registers every command on it, in one place and in the order
``agentsim --help`` lists them; the commands live in one module per group: :mod:`~agentsim.cli.run` (run,
validate, schema, example, catalog), :mod:`~agentsim.cli.results` (report, compare),
:mod:`~agentsim.cli.planning` (sweep), :mod:`~agentsim.cli.plan` (plan), :mod:`~agentsim.cli.bench`
(calibrate, fidelity) and :mod:`~agentsim.cli.trace` (the ``agentsim trace ...`` sub-app);
:mod:`~agentsim.cli.common` holds what they share and :mod:`~agentsim.cli.console` the consoles and the one way
to fail.

Exit codes: 0 success; 2 bad input (a scenario, an override, a trace or measurement file, an option, an output
that exists or cannot be written), with the file, line or row, the field path and the reason on stderr and no
traceback; 1 a run that failed for another reason (an error agentsim did not expect is reported in one line,
and with its traceback under the global ``--debug``); 3 a plan in which nothing meets the SLOs; 130
interrupted.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from agentsim.cli import bench, plan, planning, results, run
from agentsim.cli.console import fail
from agentsim.cli.examples import epilog
from agentsim.cli.trace import trace_app

DEBUG = "agentsim.debug"
"""The ``click`` context meta key set by ``--debug``."""


def _input_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean bad input (exit 2) when a command lets one through; imported only when needed."""
    import yaml

    from agentsim.catalog import CatalogFileError
    from agentsim.errors import ScenarioError
    from agentsim.files import OutputExistsError
    from agentsim.planning.calibrate.measurements import CalibrationError
    from agentsim.planning.plan.emit import EmitError
    from agentsim.report.errors import ReportError
    from agentsim.traces.schema import TraceError
    from agentsim.yamlio import TextFileError

    return (ScenarioError, CatalogFileError, CalibrationError, EmitError, ReportError, TraceError, TextFileError,
            OutputExistsError, yaml.YAMLError, UnicodeDecodeError)  # fmt: skip


class _Guarded(TyperGroup):
    """The command group that turns any error a command lets through into one ``error:`` line: exit 2 for bad
    input, 1 otherwise, 130 on Ctrl-C; never a traceback unless ``--debug``."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # click's own exits, usage errors: as they are
            raise
        except KeyboardInterrupt:
            if ctx.meta.get(DEBUG):
                raise
            fail("interrupted", 130)
        except BrokenPipeError:
            # The reader went away (`agentsim catalog | head`): stop quietly, as Unix tools do, and point stdout
            # at /dev/null so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        except Exception as e:
            if ctx.meta.get(DEBUG):
                raise
            if isinstance(e, _input_errors()):
                fail(str(e))
            if isinstance(e, OSError) and e.filename is not None:
                fail(f"{e.filename}: {e.strerror or e}", 1)
            fail(f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)", 1)


app = typer.Typer(
    cls=_Guarded,
    name="agentsim",
    help="Simulate agentic LLM workloads on modeled serving clusters: latency, tokens, $ per token and per task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # help paragraphs reflow; examples stay code blocks (cli/examples.py)
    epilog=epilog("agentsim"),
)


def _version(value: bool) -> None:
    if value:
        from agentsim._version import __version__

        typer.echo(f"agentsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an unexpected error"),
) -> None:
    """Simulate agentic LLM workloads on modeled serving clusters: latency, tokens, $ per token and per task."""
    if debug:
        ctx.meta[DEBUG] = True

app.command("run", epilog=epilog("run"))(run.run)
app.command("validate", epilog=epilog("validate"))(run.validate)
app.command("schema", epilog=epilog("schema"))(run.schema)
app.command("example", epilog=epilog("example"))(run.example)
app.command("catalog", epilog=epilog("catalog"))(run.catalog)
app.command("report", epilog=epilog("report"))(results.report)
app.command("compare", epilog=epilog("compare"))(results.compare)
app.command("sweep", epilog=epilog("sweep"))(planning.sweep_cmd)
app.command("plan", epilog=epilog("plan"))(plan.plan_cmd)
app.add_typer(trace_app, name="trace")
app.command("calibrate", epilog=epilog("calibrate"))(bench.calibrate_cmd)
app.command("fidelity", epilog=epilog("fidelity"))(bench.fidelity_cmd)


def main() -> None:
    """Entry point of the ``agentsim`` console script."""
    app()
