"""Reports: a run directory in, PNG figures and one self-contained ``report.html`` out; and run comparison.

``write_report(run_dir)`` reads a run (:func:`agentsim.store.read_run`) and writes next to ``report.html`` one
PNG per figure; the HTML embeds the same PNGs as base64 ``data:`` URIs and carries its CSS inline, with no
JavaScript and no network access, so the file can be mailed or archived on its own. ``write_compare(run_dirs,
out)`` does the same for several runs side by side (overlaid CDFs), and :func:`compare_table` is the terminal
view of the same numbers. ``write_sweep_report(sweep_dir)`` reports a sweep directory (``sweep.parquet``): each
key metric against the first numeric axis with 95 % CI bands, throughput per GPU against tokens/s per user with
the Pareto frontier, and cost against SLO attainment.

One module per concept: :mod:`~agentsim.report.data` reads runs and sweeps, :mod:`~agentsim.report.figures` holds
the figures a run and a comparison share, :mod:`~agentsim.report.run`, :mod:`~agentsim.report.compare` and
:mod:`~agentsim.report.sweep` make the three reports, :mod:`~agentsim.report.html` renders the Jinja2 templates in
``templates/`` and writes the files, :mod:`~agentsim.report.plots` draws with matplotlib. What each figure shows
is in the docstrings of ``figures``, ``run`` and ``sweep`` (formulas in ``docs/METRICS.md``).

matplotlib (figures) and Jinja2 (pages) come with the extra ``agentsim[report]`` and are imported only when used
(:func:`require_report_deps` checks both); the comparison table is plain rich.
"""

from __future__ import annotations

from agentsim.report.compare import (
    COMPARE_FILE,
    CompareRow,
    compare_figures,
    compare_rows,
    compare_table,
    render_compare_html,
    write_compare,
)
from agentsim.report.data import RunData, SweepData, is_sweep_dir, load_run, load_runs, load_sweep
from agentsim.report.errors import INSTALL_HINT, MissingDependencyError, ReportError, require_report_deps
from agentsim.report.figures import Figure
from agentsim.report.html import REPORT_FILE
from agentsim.report.plan import load_plan, plan_figures, write_plan_report
from agentsim.report.run import render_run_html, run_figures, write_report
from agentsim.report.sweep import render_sweep_html, sweep_figures, write_sweep_report

# The names of the time when matplotlib was the only optional dependency.
MissingMatplotlibError = MissingDependencyError
require_matplotlib = require_report_deps

__all__ = [
    "COMPARE_FILE",
    "INSTALL_HINT",
    "REPORT_FILE",
    "CompareRow",
    "Figure",
    "MissingDependencyError",
    "MissingMatplotlibError",
    "ReportError",
    "RunData",
    "SweepData",
    "compare_figures",
    "compare_rows",
    "compare_table",
    "is_sweep_dir",
    "load_plan",
    "load_run",
    "load_runs",
    "load_sweep",
    "plan_figures",
    "render_compare_html",
    "render_run_html",
    "render_sweep_html",
    "require_matplotlib",
    "require_report_deps",
    "run_figures",
    "sweep_figures",
    "write_compare",
    "write_plan_report",
    "write_report",
    "write_sweep_report",
]
