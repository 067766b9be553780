"""The report of a sweep directory: key metrics against the axes, and the trade-offs between points.

A sweep (``agentsim sweep ... --out DIR``) is read with :func:`agentsim.report.data.load_sweep`. Its report draws
each key metric (TTFT and TPOT p99, output tokens/s, $/Mtok, SLO attainment) against the first numeric axis, one
line per combination of the other axes, with the 95 % confidence interval over the replications as a band;
throughput per GPU against tokens/s per user (1 / mean TPOT) with the Pareto frontier; and cost against SLO
attainment, again with its frontier. The page lists every point with its means ± CI half-widths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentsim.report import plots
from agentsim.report.data import SweepData, load_sweep
from agentsim.report.errors import require_report_deps
from agentsim.report.figures import Figure
from agentsim.report.html import REPORT_FILE, fmt, render, write_page
from agentsim.report.plots import Line, color


def _short_axis(axis: str, axes: Sequence[str]) -> str:
    """``cluster.pools[0].replicas`` -> ``replicas``, unless another axis ends the same way."""
    short = axis.rsplit(".", 1)[-1]
    return short if sum(a.rsplit(".", 1)[-1] == short for a in axes) == 1 else axis


def _axis_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _point_labels(sw: SweepData) -> list[str]:
    cols = {a: sw.table.column(a).to_pylist() for a in sw.axes}
    return [
        ", ".join(f"{_short_axis(a, sw.axes)}={_axis_value(cols[a][i])}" for a in sw.axes) or f"point {i}"
        for i in range(sw.table.num_rows)
    ]


# metric, title, y label, percent axis
_SWEEP_METRICS: tuple[tuple[str, str, str, bool], ...] = (
    ("ttft_s.p99", "TTFT p99", "TTFT p99 (s)", False),
    ("tpot_s.p99", "TPOT p99", "TPOT p99 (s)", False),
    ("output_tokens_per_s", "Output throughput", "output tokens/s", False),
    ("usd_per_mtok_output", "Cost per output token", "$ / Mtok output", False),
    ("slo_attainment.calls", "SLO attainment (calls)", "calls meeting their SLO", True),
)


def _sweep_metric_figures(sw: SweepData) -> list[Figure]:
    n = sw.table.num_rows
    numeric = [a for a in sw.axes if sw.is_numeric(a)]
    xaxis = numeric[0] if numeric else (sw.axes[0] if sw.axes else None)
    xticks: list[tuple[float, str]] | None = None
    if xaxis is None:
        x = np.arange(n, dtype=float)
        xticks, xlabel = [(float(i), str(i)) for i in range(n)], "point"
    elif sw.is_numeric(xaxis):
        x, xlabel = sw.values(xaxis), xaxis
    else:  # no numeric axis: the first axis's values, in order of appearance, as categories
        raw = [_axis_value(v) for v in sw.table.column(xaxis).to_pylist()]
        cats = list(dict.fromkeys(raw))
        x = np.array([cats.index(v) for v in raw], dtype=float)
        xticks, xlabel = [(float(i), c) for i, c in enumerate(cats)], xaxis
    others = [a for a in sw.axes if a != xaxis]
    cols = {a: sw.table.column(a).to_pylist() for a in others}
    keys = [tuple(_axis_value(cols[a][i]) for a in others) for i in range(n)]
    groups = list(dict.fromkeys(keys))
    figs = []
    for metric, title, ylabel, pct in _SWEEP_METRICS:
        y, ci = sw.values(metric), sw.values(f"{metric}.ci95")
        lines = []
        for g, key in enumerate(groups):
            idx = np.array([i for i in range(n) if keys[i] == key], dtype=int)
            idx = idx[np.argsort(x[idx], kind="stable")]
            label = ", ".join(f"{_short_axis(a, sw.axes)}={v}" for a, v in zip(others, key, strict=True))
            half = np.where(np.isfinite(ci[idx]), ci[idx], np.nan)
            lines.append(Line(label, x[idx], y[idx], color(g), lo=y[idx] - half, hi=y[idx] + half))
        png = plots.lines_png(f"{title} vs {xlabel}: {sw.title}", xlabel, ylabel, lines, xticks=xticks, percent_y=pct)
        figs.append(
            Figure(
                f"sweep_{metric.replace('.', '_')}",
                f"{title} vs {_short_axis(xlabel, sw.axes) if xaxis else xlabel}",
                f"Mean of {metric} over each point's replications; shaded: the 95% Student-t confidence interval "
                "(none with one replication). One line per combination of the other axes.",
                png,
            )
        )
    return figs


def _sweep_pareto_figure(sw: SweepData, labels: Sequence[str]) -> Figure:
    per_user = 1.0 / sw.values("tpot_s.mean")
    tput = sw.values("output_tokens_per_s")
    have_gpus = {"gpu_hours", "window_s"} <= set(sw.table.column_names)
    if have_gpus:
        gpus = sw.values("gpu_hours") * 3600.0 / sw.values("window_s")
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(gpus > 0, tput / gpus, np.nan)
        ylabel, how = "output tokens/s per GPU", "output tokens/s divided by the GPUs (gpu_hours × 3600 / window_s)"
    else:
        y, ylabel, how = tput, "output tokens/s (total)", "output tokens/s (no GPU count in the table)"
    front = plots.pareto_mask(per_user, y)
    pts = [plots.Point(lb, float(a), float(b), color(0)) for lb, a, b in zip(labels, per_user, y, strict=True)]
    png = plots.scatter_png(
        f"Throughput vs interactivity: {sw.title}",
        "output tokens/s per user (1 / mean TPOT)",
        ylabel,
        pts,
        frontier=front,
    )
    return Figure(
        "sweep_pareto",
        "Throughput per GPU vs tokens/s per user",
        f"Each point: {how}, against the speed a user sees, 1 / mean TPOT. The dashed line joins the Pareto frontier: "
        "points no other point beats on both.",
        png,
    )


def _sweep_cost_slo_figure(sw: SweepData, labels: Sequence[str]) -> Figure:
    slo, cost = sw.values("slo_attainment.calls"), sw.values("usd_per_mtok_output")
    front = plots.pareto_mask(slo, cost, max_x=True, max_y=False)
    pts = [plots.Point(lb, float(a), float(b), color(1)) for lb, a, b in zip(labels, slo, cost, strict=True)]
    png = plots.scatter_png(
        f"Cost vs SLO attainment: {sw.title}",
        "calls meeting their SLO",
        "$ / Mtok output",
        pts,
        frontier=front,
        percent_x=True,
    )
    return Figure(
        "sweep_cost_slo",
        "Cost vs SLO attainment",
        "Each point: $ per million output tokens against the fraction of calls meeting their SLO (means over the "
        "replications). Dashed: the cheapest points for their attainment (Pareto frontier).",
        png,
    )


def sweep_figures(sw: SweepData) -> list[Figure]:
    """Every figure of a sweep report."""
    labels = _point_labels(sw)
    return [*_sweep_metric_figures(sw), _sweep_pareto_figure(sw, labels), _sweep_cost_slo_figure(sw, labels)]


def render_sweep_html(sw: SweepData, figs: Sequence[Figure]) -> str:
    """The self-contained HTML report of a sweep."""
    header = ["point", "replications"] + [title for _, title, _, _ in _SWEEP_METRICS]
    reps = sw.values("replications")
    rows = []
    for i, lb in enumerate(_point_labels(sw)):
        cells = [lb, fmt(None if np.isnan(reps[i]) else int(reps[i]))]
        for metric, _, _, _ in _SWEEP_METRICS:
            m, c = sw.values(metric)[i], sw.values(f"{metric}.ci95")[i]
            cells.append("–" if np.isnan(m) else fmt(float(m)) + ("" if np.isnan(c) else f" ± {fmt(float(c), 2)}"))
        rows.append(cells)
    d = sw.definition
    meta = (
        f"{sw.table.num_rows} points; axes: {', '.join(sw.axes) or 'none'}"
        + (" (zipped)" if d.get("zip") else "")
        + (f"; {d['replications']} replications per point" if "replications" in d else "")
        + (f"; agentsim {d['agentsim_version']}" if "agentsim_version" in d else "")
    )
    return render(
        "sweep.html.j2",
        title=sw.title,
        meta=meta,
        path=str(sw.path.resolve()),
        header=header,
        rows=rows,
        figures=figs,
    )


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` and one PNG per figure for a sweep directory into ``out`` (default: the sweep
    directory); return the HTML path. Raises :class:`ReportError`."""
    require_report_deps()
    sw = load_sweep(sweep_dir)
    figs = sweep_figures(sw)
    return write_page(Path(out) if out is not None else sw.path, REPORT_FILE, render_sweep_html(sw, figs), figs)
