"""The report of a sweep directory: key metrics against the axes, and the trade-offs between points.

A sweep (``agentsim sweep ... --out DIR``) is read with :func:`agentsim.report.data.load_sweep`. Its report draws
each key metric (TTFT and TPOT p99, output tokens/s, $/Mtok, SLO attainment) against one axis (the first numeric
one, or ``--x``) as small multiples: one panel per combination of the other axes, sharing both axes, with the
95 % confidence interval over the replications as a band and the scenario's SLO target as a dashed line. Then
throughput per GPU against tokens/s per user (1 / mean TPOT), and cost against SLO attainment, each with its
Pareto frontier computed *within each offered load* (axes that change the workload's rates or agents): a point
at a lower load is not a better configuration. Only frontier points are labelled. The page lists every point
with its means ± CI half-widths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentsim.report import plots
from agentsim.report.data import SweepData, load_sweep
from agentsim.report.errors import ReportError, require_report_deps
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


_SLO_OF_METRIC = {"ttft_s.p99": "ttft_p99_s", "tpot_s.p99": "tpot_p99_s"}


def _slo_target(sw: SweepData, metric: str) -> float | None:
    """The base scenario's SLO target for a metric (the first workload that sets one), to draw as a line."""
    key = _SLO_OF_METRIC.get(metric)
    base = sw.definition.get("base")
    if key is None or not isinstance(base, dict):
        return None
    for w in base.get("workload") or []:
        v = (w.get("slo") or {}).get(key) if isinstance(w, dict) else None
        if isinstance(v, int | float):
            return float(v)
    return None


def x_axis(sw: SweepData, x: str | None = None) -> str | None:
    """The axis the sweep's figures put on x: ``x`` (a full path or its short name), else the first numeric
    axis, else the first axis."""
    if x is not None:
        match = [a for a in sw.axes if a == x or _short_axis(a, sw.axes) == x]
        if not match:
            raise ReportError(f"--x {x!r} is not an axis of this sweep; axes: {', '.join(sw.axes) or 'none'}")
        return match[0]
    numeric = [a for a in sw.axes if sw.is_numeric(a)]
    return numeric[0] if numeric else (sw.axes[0] if sw.axes else None)


def _sweep_metric_figures(sw: SweepData, x: str | None = None) -> list[Figure]:
    """Each key metric against the x axis: small multiples, one panel per combination of the other axes (a
    panel holds one line, so confidence bands never overlap), the SLO target as a dashed line."""
    n = sw.table.num_rows
    xaxis = x_axis(sw, x)
    xticks: list[tuple[float, str]] | None = None
    if xaxis is None:
        xs = np.arange(n, dtype=float)
        xticks, xlabel = [(float(i), str(i)) for i in range(n)], "point"
    elif sw.is_numeric(xaxis):
        xs, xlabel = sw.values(xaxis), _short_axis(xaxis, sw.axes)
    else:  # a categorical axis: its values in order of appearance
        raw = [_axis_value(v) for v in sw.table.column(xaxis).to_pylist()]
        cats = list(dict.fromkeys(raw))
        xs = np.array([cats.index(v) for v in raw], dtype=float)
        xticks, xlabel = [(float(i), c) for i, c in enumerate(cats)], _short_axis(xaxis, sw.axes)
    others = [a for a in sw.axes if a != xaxis]
    cols = {a: sw.table.column(a).to_pylist() for a in others}
    keys = [tuple(_axis_value(cols[a][i]) for a in others) for i in range(n)]
    groups = list(dict.fromkeys(keys))
    figs = []
    for metric, title, ylabel, pct in _SWEEP_METRICS:
        y, ci = sw.values(metric), sw.values(f"{metric}.ci95")
        panels = []
        for key in groups:
            idx = np.array([i for i in range(n) if keys[i] == key], dtype=int)
            idx = idx[np.argsort(xs[idx], kind="stable")]
            name = ", ".join(f"{_short_axis(a, sw.axes)}={v}" for a, v in zip(others, key, strict=True)) or "all"
            half = np.where(np.isfinite(ci[idx]), ci[idx], np.nan)
            panels.append((name, [Line("", xs[idx], y[idx], color(0), lo=y[idx] - half, hi=y[idx] + half)]))
        target = _slo_target(sw, metric)
        png = plots.multiples_png(f"{title} vs {xlabel}: {sw.title}", xlabel, ylabel, panels, threshold=target,
                                  threshold_label="SLO target", xticks=xticks, percent_y=pct)  # fmt: skip
        figs.append(
            Figure(
                f"sweep_{metric.replace('.', '_')}",
                f"{title} vs {xlabel}",
                f"Mean of {metric} over each point's replications; shaded: the 95% Student-t confidence interval "
                "(none with one replication). One panel per combination of the other axes, sharing both axes"
                + ("; dashed: the scenario's SLO target" if target is not None else "")
                + (f". Panels: {'; '.join(name for name, _ in panels)}" if len(panels) > 1 else "")
                + ". `agentsim report DIR --x AXIS` puts another axis on x.",
                png,
            )
        )
    return figs


def _load_axes(sw: SweepData) -> list[str]:
    """The axes that change the offered load (arrival rates, agent counts, workload changes) rather than the
    cluster: points are compared within the same load only."""
    return [a for a in sw.axes if a.startswith("workload") or "arrivals" in a or a.endswith(("rate_per_s", "agents"))]


def _load_groups(sw: SweepData) -> tuple[list[str], list[tuple[str, ...]]]:
    loads = _load_axes(sw)
    cols = {a: sw.table.column(a).to_pylist() for a in loads}
    keys = [tuple(_axis_value(cols[a][i]) for a in loads) for i in range(sw.table.num_rows)]
    return loads, keys


def _per_load_frontier(
    sw: SweepData, x: np.ndarray, y: np.ndarray, *, max_x: bool, max_y: bool
) -> tuple[np.ndarray, list[str], list[tuple[str, ...]]]:
    """The Pareto frontier computed within each offered load (a mask), the load axes and each point's load."""
    loads, keys = _load_groups(sw)
    front = np.zeros(x.size, dtype=bool)
    for key in dict.fromkeys(keys):
        idx = np.array([i for i, k in enumerate(keys) if k == key], dtype=int)
        front[idx] = plots.pareto_mask(x[idx], y[idx], max_x=max_x, max_y=max_y)
    return front, loads, keys


def _config_labels(sw: SweepData) -> list[str]:
    """Point labels without the load axes (the colour says the load)."""
    loads = set(_load_axes(sw))
    axes = [a for a in sw.axes if a not in loads]
    cols = {a: sw.table.column(a).to_pylist() for a in axes}
    return [", ".join(f"{_short_axis(a, sw.axes)}={_axis_value(cols[a][i])}" for a in axes) or f"point {i}"
            for i in range(sw.table.num_rows)]  # fmt: skip


def _points(
    sw: SweepData, x: np.ndarray, y: np.ndarray, front: np.ndarray, keys: list[tuple[str, ...]]
) -> list[plots.Point]:
    labels = _config_labels(sw)
    order = list(dict.fromkeys(keys))
    # Only frontier points are labelled: the others stay as unlabelled dots, so labels do not pile up.
    return [plots.Point(labels[i] if front[i] else "", float(x[i]), float(y[i]), color(order.index(keys[i])))
            for i in range(x.size)]  # fmt: skip


def _group_ids(keys: list[tuple[str, ...]]) -> list[int]:
    order = list(dict.fromkeys(keys))
    return [order.index(k) for k in keys]


def _load_legend(sw: SweepData, loads: list[str], keys: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    if not loads:
        return []
    return [(", ".join(f"{_short_axis(a, sw.axes)}={v}" for a, v in zip(loads, key, strict=True)), color(i))
            for i, key in enumerate(dict.fromkeys(keys))]  # fmt: skip


def _load_note(loads: list[str], keys: list[tuple[str, ...]]) -> str:
    if not loads:
        return "All points share one offered load."
    names = ", ".join(_short_axis(a, loads) for a in loads)
    return (f"Points are coloured by offered load ({names}: {len(set(keys))} loads) and the frontier is drawn "
            "within each load: a lower load is not a better configuration.")  # fmt: skip


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
    front, loads, keys = _per_load_frontier(sw, per_user, y, max_x=True, max_y=True)
    png = plots.scatter_png(
        f"Throughput vs interactivity: {sw.title}",
        "output tokens/s per user (1 / mean TPOT)",
        ylabel,
        _points(sw, per_user, y, front, keys),
        frontier=front,
        groups=_group_ids(keys),
        legend=_load_legend(sw, loads, keys),
    )
    return Figure(
        "sweep_pareto",
        "Throughput per GPU vs tokens/s per user",
        f"Each point: {how}, against the speed a user sees, 1 / mean TPOT. Ringed and labelled: the Pareto "
        f"frontier (points no other point beats on both). {_load_note(loads, keys)}",
        png,
    )


def _sweep_cost_slo_figure(sw: SweepData, labels: Sequence[str]) -> Figure:
    slo, cost = sw.values("slo_attainment.calls"), sw.values("usd_per_mtok_output")
    front, loads, keys = _per_load_frontier(sw, slo, cost, max_x=True, max_y=False)
    png = plots.scatter_png(
        f"Cost vs SLO attainment: {sw.title}",
        "calls meeting their SLO",
        "$ / Mtok output",
        _points(sw, slo, cost, front, keys),
        frontier=front,
        groups=_group_ids(keys),
        legend=_load_legend(sw, loads, keys),
        percent_x=True,
    )
    return Figure(
        "sweep_cost_slo",
        "Cost vs SLO attainment",
        "Each point: $ per million output tokens against the fraction of calls meeting their SLO (means over the "
        f"replications). Labelled: the cheapest points for their attainment (Pareto frontier). "
        f"{_load_note(loads, keys)}",
        png,
    )


def sweep_figures(sw: SweepData, x: str | None = None) -> list[Figure]:
    """Every figure of a sweep report (``x``: the axis on x, see :func:`x_axis`)."""
    labels = _point_labels(sw)
    return [*_sweep_metric_figures(sw, x), _sweep_pareto_figure(sw, labels), _sweep_cost_slo_figure(sw, labels)]


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


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None, x: str | None = None) -> Path:
    """Write ``report.html`` and one PNG per figure for a sweep directory into ``out`` (default: the sweep
    directory); return the HTML path. Raises :class:`ReportError`."""
    require_report_deps()
    sw = load_sweep(sweep_dir)
    figs = sweep_figures(sw, x)
    return write_page(Path(out) if out is not None else sw.path, REPORT_FILE, render_sweep_html(sw, figs), figs)
