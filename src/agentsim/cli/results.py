"""``agentsim report`` and ``agentsim compare``: HTML reports and figures of finished runs and sweeps.

Figures need the optional extra ``agentsim[report]`` (matplotlib); :mod:`agentsim.report` is imported inside
the commands, so the other commands never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentsim.cli.common import _report_or_fail
from agentsim.cli.console import fail as _fail
from agentsim.cli.console import out_console


def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="a run directory (`agentsim run`), a sweep directory (`agentsim sweep --out`) or a saved plan "
            "(`agentsim plan --out plan.json`)"
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="where to write report.html and the PNGs (default: RUN_DIR)")
    ] = None,
    x: Annotated[
        str | None, typer.Option("--x", help="sweep reports: the axis on x (default: the first numeric)")
    ] = None,
) -> None:
    """Write a self-contained report.html (figures embedded) and one PNG per figure (needs matplotlib and Jinja2).

    A sweep directory (written by `agentsim sweep --out`, holding sweep.parquet) gets a sweep report instead, and a
    saved plan (`agentsim plan --out plan.json`) a plan report with its Pareto frontiers (plan.html beside it)."""
    sweep = (run_dir / "sweep.parquet").is_file()
    if x is not None and not sweep:
        _fail(f"--x is for sweep reports: {run_dir} is not a sweep directory (agentsim sweep --out)")
    if run_dir.suffix.lower() == ".json" and run_dir.is_file():
        from agentsim import report as rep

        try:
            page = rep.write_plan_report(run_dir, out)
        except rep.ReportError as e:
            _fail(str(e))
        out_console.print(f"report: {page}", highlight=False, soft_wrap=True)
        return
    if sweep:
        from agentsim import report as rep

        try:
            page = rep.write_sweep_report(run_dir, out, x)
        except rep.ReportError as e:
            _fail(str(e))
        out_console.print(f"report: {page}", highlight=False, soft_wrap=True)
        return
    _report_or_fail(run_dir, out)


def compare(
    runs: Annotated[list[Path], typer.Argument(help="two or more run directories; the first is the baseline")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="also write compare.html with overlaid CDFs into this directory")
    ] = None,
) -> None:
    """Compare runs: summary metrics side by side with differences against the first (and an HTML report)."""
    from agentsim import report as rep

    if len(runs) < 2:
        _fail("compare needs at least two run directories")
    try:
        if out is not None:
            rep.require_report_deps()
        loaded = rep.load_runs(runs)
    except rep.ReportError as e:
        _fail(str(e))
    # Not a terminal (a pipe, a file): no width to fit, so do not squeeze the table into rich's default 80 columns.
    (out_console if out_console.is_terminal else Console(width=400)).print(rep.compare_table(loaded))
    if out is not None:
        try:
            page = rep.write_compare(loaded, out)
        except rep.ReportError as e:
            _fail(str(e))
        out_console.print(f"report: {page}", highlight=False, soft_wrap=True)
