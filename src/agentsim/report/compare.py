"""Run comparison: summary metrics of several runs side by side, with differences against the first run.

:func:`compare_rows` is the data: one :class:`CompareRow` per metric, with a verdict where the metric has a
direction (more tokens/s better, more dollars worse) *and* the difference is significant, beyond what another
seed could give (batch means over each run's window, :mod:`agentsim.report.significance`). :func:`compare_table`
is its terminal view (rich, no matplotlib needed) and :func:`write_compare` its HTML view, ``compare.html`` with
overlaid latency CDFs, total output throughput over time and efficiency bars, one colour per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from agentsim.report import plots
from agentsim.report.data import RunData, load_runs, pool_series
from agentsim.report.errors import ReportError, require_report_deps
from agentsim.report.figures import Figure, cdf_figures, efficiency_figure
from agentsim.report.html import render, write_page
from agentsim.report.plots import Line, Panel, color, si
from agentsim.report.run import run_meta
from agentsim.report.significance import batch_values, significant

COMPARE_FILE = "compare.html"


@dataclass(frozen=True)
class _Metric:
    label: str
    keys: tuple[str, ...]
    better: int  # +1 higher is better, -1 lower is better, 0 neither


_COMPARE: tuple[_Metric, ...] = (
    _Metric("calls completed", ("calls_completed",), 1),
    _Metric("calls unfinished", ("calls_unfinished",), 0),
    _Metric("tasks completed", ("tasks_completed",), 1),
    _Metric("tasks unfinished", ("tasks_unfinished",), 0),
    _Metric("calls rejected (context window)", ("calls_rejected",), -1),
    _Metric("tasks failed", ("tasks_failed",), -1),
    _Metric("output tokens/s", ("output_tokens_per_s",), 1),
    _Metric("processed tokens/s", ("processed_tokens_per_s",), 1),
    _Metric("cache hit rate", ("cache_hit_rate",), 1),
    _Metric("TTFT p50 (s)", ("ttft_s", "p50"), -1),
    _Metric("TTFT p99 (s)", ("ttft_s", "p99"), -1),
    _Metric("TPOT p50 (s)", ("tpot_s", "p50"), -1),
    _Metric("TPOT p99 (s)", ("tpot_s", "p99"), -1),
    _Metric("call e2e p50 (s)", ("call_e2e_s", "p50"), -1),
    _Metric("call e2e p99 (s)", ("call_e2e_s", "p99"), -1),
    _Metric("task p50 (s)", ("task_s", "p50"), -1),
    _Metric("task p90 (s)", ("task_s", "p90"), -1),
    _Metric("calls per task (mean)", ("calls_per_task", "mean"), 0),
    _Metric("tasks per hour", ("tasks_per_hour",), 1),
    _Metric("SLO attainment calls", ("slo_attainment", "calls"), 1),
    _Metric("SLO attainment tasks", ("slo_attainment", "tasks"), 1),
    _Metric("busy fraction", ("busy_fraction",), 0),
    _Metric("GPU-hours", ("gpu_hours",), 0),
    _Metric("$ total (window)", ("usd_total",), -1),
    _Metric("$ per hour", ("usd_per_hour",), -1),
    _Metric("$ / Mtok output", ("usd_per_mtok_output",), -1),
    _Metric("$ / Mtok processed", ("usd_per_mtok_processed",), -1),
    _Metric("$ / task", ("usd_per_task",), -1),
    _Metric("task busy-share $ (mean)", ("task_usd", "mean"), -1),
    _Metric("energy kWh", ("energy_kwh",), -1),
    _Metric("J / output token", ("joules_per_output_token",), -1),
    _Metric("output tokens / MWh", ("tokens_per_mwh",), 1),
)


@dataclass(frozen=True)
class CompareRow:
    """One metric across runs: ``values[i]`` of run ``i``; ``diffs[i]``/``pcts[i]`` against run 0 (``None``
    for run 0, a missing value, or a % change from 0); ``verdicts[i]``: +1 better, -1 worse, 0 neither or not
    significant; ``significant[i]``: the batch-means test's answer (None: untested, run 0 or no batches)."""

    label: str
    values: list[float | None]
    diffs: list[float | None]
    pcts: list[float | None]
    verdicts: list[int]
    significant: list[bool | None]


def _get(s: dict[str, Any], keys: Sequence[str]) -> float | None:
    v: Any = s
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def compare_rows(
    summaries: Sequence[dict[str, Any]], batches: Sequence[dict[str, np.ndarray]] | None = None
) -> list[CompareRow]:
    """Summary metrics side by side, with differences against the first summary.

    ``batches[i]``: run ``i``'s per-batch values by metric label (:func:`~agentsim.report.significance.
    batch_values`). A difference gets a verdict only when the metric has a direction and its batch values differ
    significantly from run 0's; without ``batches`` (or for a metric not batched) there is no verdict at all:
    a difference that cannot be told from noise is not called better or worse."""
    rows = []
    for m in _COMPARE:
        vals = [_get(s, m.keys) for s in summaries]
        base = vals[0]
        diffs: list[float | None] = [None]
        pcts: list[float | None] = [None]
        verdicts = [0]
        sig: list[bool | None] = [None]
        for i, v in enumerate(vals[1:], start=1):
            d = v - base if v is not None and base is not None else None
            if d is not None and abs(d) <= 1e-12 * abs(base or 0.0):
                d = 0.0  # rounding noise (a busy fraction of 1 - 6e-16), not a difference
            diffs.append(d)
            pcts.append(d / abs(base) * 100 if d is not None and base else None)
            a = batches[0].get(m.label) if batches else None
            b = batches[i].get(m.label) if batches else None
            s = significant(a, b) if a is not None and b is not None else None
            sig.append(s)
            verdicts.append(int(np.sign(d)) * m.better if d and s else 0)
        rows.append(CompareRow(m.label, vals, diffs, pcts, verdicts, sig))
    return rows


def _rows(runs: Sequence[RunData]) -> list[CompareRow]:
    return compare_rows([r.summary for r in runs], [batch_values(r) for r in runs])


NOTE = (
    "Green: better, red: worse than the first run, only where the difference is significant (Welch's t-test at "
    "5% on batch means: each window cut into 10 stretches); '~' marks a difference within the noise of the runs."
)


def _num(x: float | None) -> str:
    """A compact cell: ``7,273``, ``0.02873``, ``502.8M``."""
    if x is None:
        return "–"
    if abs(x) >= 1e4:
        return si(x, digits=4)
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.4g}"


def _signed(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "0%" if pct else "0"
    if pct:
        return f"{x:+,.0f}%" if abs(x) >= 1000 else f"{x:+.1f}%"
    s = _num(x)
    return s if s.startswith("-") else "+" + s


def compare_table(runs: Sequence[RunData]) -> Table:
    """A rich table: each summary metric per run, with Δ and Δ% against the first run (green better, red worse)."""
    t = Table(title=f"comparison against {runs[0].label}", header_style="bold")
    t.add_column("metric", no_wrap=True)
    for i, r in enumerate(runs):
        t.add_column(r.label, justify="right")
        if i:
            t.add_column("Δ", justify="right")
            t.add_column("Δ %", justify="right")
    t.caption = NOTE
    style = {1: "green", -1: "red", 0: ""}
    for row in _rows(runs):
        cells = [row.label]
        for i in range(len(runs)):
            cells.append(_num(row.values[i]))
            if i:
                st = style[row.verdicts[i]]
                d, p = _signed(row.diffs[i]), _signed(row.pcts[i], pct=True) + _noise(row, i)
                cells += [f"[{st}]{d}[/]" if st else d, f"[{st}]{p}[/]" if st else p]
        t.add_row(*cells)
    return t


def _noise(row: CompareRow, i: int) -> str:
    """`` ~`` after a difference the batch-means test found within the noise."""
    return " ~" if row.significant[i] is False and row.diffs[i] else ""


def compare_figures(runs: Sequence[RunData]) -> list[Figure]:
    """Figures of a comparison: overlaid CDFs, total output tokens/s over time, efficiency (needs matplotlib)."""
    require_report_deps()
    figs = cdf_figures(runs, "compare_")
    lines = []
    for i, run in enumerate(runs):
        tot: tuple[np.ndarray, np.ndarray] | None = None
        ps = pool_series(run)
        # Pools share one sampling grid within a run: sum their rates.
        for s in ps.values():
            t, y = s.rate("output_tokens")
            tot = (t, y) if tot is None else (t, tot[1] + y) if tot[0].shape == t.shape else tot
        if tot is not None:
            lines.append(Line(run.label, tot[0], tot[1], color(i), step=True))
    w0 = max(r.warmup_s for r in runs)
    png = plots.timeseries_png(
        f"Output tokens/s, all pools: {len(runs)} runs",
        [Panel("output tokens/s", lines)],
        w0,
        max(r.horizon_s for r in runs),
    )
    figs.append(
        Figure(
            "compare_throughput",
            "Output throughput over time",
            "All pools of each run, per sampling interval. Shaded: the longest warm-up of the runs.",
            png,
        )
    )
    figs.append(efficiency_figure(runs, "compare_efficiency"))
    return figs


def render_compare_html(runs: Sequence[RunData], figs: Sequence[Figure]) -> str:
    """The self-contained HTML comparison of several runs."""
    header = ["metric"]
    for i, r in enumerate(runs):
        header += [r.label] + (["Δ", "Δ %"] if i else [])
    cls_of = {1: "better", -1: "worse", 0: ""}
    cells, classes = [], []
    for row in _rows(runs):
        c, k = [row.label], [""]
        for i in range(len(runs)):
            c.append(_num(row.values[i]))
            k.append("")
            if i:
                c += [_signed(row.diffs[i]), _signed(row.pcts[i], pct=True) + _noise(row, i)]
                k += [cls_of[row.verdicts[i]]] * 2
        cells.append(c)
        classes.append(k)
    return render(
        "compare.html.j2",
        runs=[{"label": r.label, "title": r.title, "meta": run_meta(r), "path": str(r.path.resolve())} for r in runs],
        header=header,
        rows=cells,
        classes=classes,
        figures=figs,
        note=NOTE,
    )


def write_compare(runs: Sequence[str | Path] | Sequence[RunData], out: str | Path) -> Path:
    """Write ``compare.html`` and its PNGs (``compare_*.png``) into ``out``; return the HTML path. ``runs``: run
    directories (or runs already read with :func:`load_runs`), the first being the baseline."""
    require_report_deps()
    loaded = [r for r in runs if isinstance(r, RunData)]
    paths = [r for r in runs if not isinstance(r, RunData)]
    if paths:
        if loaded:
            raise ReportError("pass run directories or loaded runs, not both")
        loaded = load_runs(paths)
    figs = compare_figures(loaded)
    return write_page(Path(out), COMPARE_FILE, render_compare_html(loaded, figs), figs)
