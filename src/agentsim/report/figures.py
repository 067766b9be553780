"""Figures, and the two kinds a run report and a comparison share: latency CDFs and cost/energy efficiency.

A :class:`Figure` is a drawn PNG with the title and caption the page shows under it; its ``name`` is the PNG's
file stem and the page's anchor. With one run, each figure has a line (or bar) per workload; with several, one
per run, the first being the baseline.

- **Latency CDFs** (TTFT, TPOT, call end-to-end, task duration) over the *measurement window*, i.e. calls issued
  and tasks started at or after ``warmup_s``, as in ``summary.json``. Calls or tasks unfinished at the horizon are
  counted in the denominator beyond the right edge (the curve tops out at the finished fraction), which is how
  SLO attainment counts them; TPOT has no value for them and uses finished calls only. SLO lines come from the
  scenario in ``manifest.json``: per-call/per-task limits (``ttft_s``, ``tpot_s``, ``task_s``) as dashed
  verticals, percentile targets (``ttft_p99_s``, ``tpot_p99_s``, ``task_p95_s``) as a dashed vertical with a
  dotted horizontal at the quantile: the target holds when the curve crosses the dot's height left of it.
- **Efficiency** from ``summary.json``: $/Mtok output and processed, $/task (window cost over the tasks finished
  in the window, and the mean busy share a task used), energy in kWh and J per output token. A split of dollars
  into compute and energy is *not* in the data: a rental price per GPU-hour includes power, and a TCO price folds
  the all-in kW into the same hourly rate; the report shows energy separately, in kWh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentsim.report import plots
from agentsim.report.data import RunData, Workload, latencies, pooled
from agentsim.report.plots import BarPanel, CdfSeries, Threshold, color, seconds


@dataclass(frozen=True)
class Figure:
    """A rendered figure: ``name`` is the PNG's file stem and the HTML anchor."""

    name: str
    title: str
    caption: str
    png: bytes


_CDF_SPECS: dict[str, tuple[str, str, tuple[tuple[str, float | None, str], ...]]] = {
    # metric: (title, x label, SLO fields (field, quantile or None for a per-item limit, short label))
    "ttft": ("Time to first token", "TTFT (log scale)", (("ttft_s", None, "TTFT ≤"), ("ttft_p99_s", 0.99, "p99 ≤"))),
    "tpot": ("Time per output token", "TPOT (log scale)", (("tpot_s", None, "TPOT ≤"), ("tpot_p99_s", 0.99, "p99 ≤"))),
    "call_e2e": ("Call end-to-end latency", "issue to last token (log scale)", ()),
    "task": (
        "Task duration",
        "task start to last call done (log scale)",
        (("task_s", None, "task ≤"), ("task_p95_s", 0.95, "task p95 ≤")),
    ),
}

_CDF_CAPTION = {
    "ttft": "Per call, from sending to the first output token (queueing included).",
    "tpot": "Per finished call with at least two output tokens: (last - first token time) / (tokens - 1).",
    "call_e2e": "Per call, from sending to its last output token.",
    "task": "Per task, from its start to its last call's end, tool time included.",
}

_CDF_NOTE = (
    " Window: calls issued (tasks started) at or after the warm-up. Unfinished work counts in the denominator, beyond"
    " the right edge, as in SLO attainment. Dashed verticals: SLO limits; a dot marks a percentile target, met when"
    " the curve reaches the dot's height left of it."
)


_GREYS = ("#000000", "#666666", "#999999")


def _thresholds(workloads: Sequence[Workload], metric: str, colors: dict[str, str] | None) -> list[Threshold]:
    out: list[Threshold] = []
    seen: set[tuple[str, float]] = set()
    for w in workloads:
        for fld, q, short in _CDF_SPECS[metric][2]:
            x = w.slo.get(fld)
            if x is None or (fld, x) in seen:
                continue
            seen.add((fld, x))
            # One run: the workload's colour. Several runs: runs own the colours, SLOs are drawn in greys.
            c = colors.get(w.label, "#000000") if colors is not None else _GREYS[len(out) % len(_GREYS)]
            who = f"{w.label}: " if len(workloads) > 1 or colors is None else ""
            out.append(Threshold(f"SLO {who}{short} {seconds(x)}", x, q, c))
    return out


def cdf_figures(runs: Sequence[RunData], prefix: str = "") -> list[Figure]:
    """The four latency CDFs: per workload for one run, all workloads pooled per run for several."""
    figs = []
    for metric, (title, xlabel, _) in _CDF_SPECS.items():
        series: list[CdfSeries] = []
        if len(runs) == 1:
            run = runs[0]
            by = latencies(run, metric)
            wls = run.workloads()
            labels = [w.label for w in wls] + [w for w in by if w not in {x.label for x in wls}]
            colors = {w: color(i) for i, w in enumerate(labels)}
            for w in labels:
                if w in by:
                    series.append(CdfSeries(w, by[w].values, by[w].censored, colors[w]))
            if len(by) > 1:
                allv = pooled(by)
                series.append(CdfSeries("all workloads", allv.values, allv.censored, "#222222", ":"))
            ths = _thresholds(wls, metric, colors)
            sub = run.title
        else:
            for i, run in enumerate(runs):
                allv = pooled(latencies(run, metric))
                series.append(CdfSeries(run.label, allv.values, allv.censored, color(i)))
            wls = list(
                {(w.label, tuple(sorted(w.slo.items(), key=str))): w for r in runs for w in r.workloads()}.values()
            )
            ths = _thresholds(wls, metric, None)
            sub = f"{len(runs)} runs, all workloads pooled"
        png = plots.cdf_png(f"{title}: {sub}", xlabel, series, ths)
        figs.append(Figure(f"{prefix}{metric}_cdf", title, _CDF_CAPTION[metric] + _CDF_NOTE, png))
    return figs


_EFFICIENCY_CAPTION = (
    "From summary.json (measurement window). $/Mtok: window cost (provisioned, idle included) per million output "
    "tokens, and per million processed tokens (output + computed prompt). $/task: window cost over the tasks that "
    "finished in the window, and the mean busy share a completed task used. Energy: kWh over the window and joules "
    "per output token. A split of dollars into compute and energy is not in the data: a rental $/GPU-hour includes "
    "power and a TCO price folds the all-in kW into the same hourly rate, so energy is shown on its own, in kWh."
)


def efficiency_figure(runs: Sequence[RunData], name: str) -> Figure:
    """Cost per token and per task, energy and energy per token, one bar per run."""

    def g(s: dict[str, Any], *keys: str) -> float | None:
        v: Any = s
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return float(v) if isinstance(v, int | float) else None

    Getter = Callable[[dict[str, Any]], float | None]

    def series(getters: Sequence[Getter]) -> list[tuple[str, str, Sequence[float | None]]]:
        return [(r.label, color(i), [f(r.summary) for f in getters]) for i, r in enumerate(runs)]

    panels = [
        BarPanel(
            "$ per million tokens",
            "$/Mtok",
            ["output", "processed"],
            series([lambda s: g(s, "usd_per_mtok_output"), lambda s: g(s, "usd_per_mtok_processed")]),
            fmt=lambda v: f"${v:.3g}",
        ),
        BarPanel(
            "$ per task",
            "$/task",
            ["window $ /\nfinished", "busy share\n(mean)"],
            series([lambda s: g(s, "usd_per_task"), lambda s: g(s, "task_usd", "mean")]),
            fmt=lambda v: f"${v:.3g}",
        ),
        BarPanel("energy (window)", "kWh", ["kWh"], series([lambda s: g(s, "energy_kwh")]), fmt=lambda v: f"{v:.3g}"),
        BarPanel(
            "energy per token",
            "J / output token",
            ["J/token"],
            series([lambda s: g(s, "joules_per_output_token")]),
            fmt=lambda v: f"{v:.3g}",
        ),
    ]
    sub = runs[0].title if len(runs) == 1 else f"{len(runs)} runs"
    png = plots.bars_png(f"Cost and energy efficiency: {sub}", panels)
    return Figure(name, "Cost and energy efficiency", _EFFICIENCY_CAPTION, png)
