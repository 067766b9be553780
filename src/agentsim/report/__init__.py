"""Reports: a run directory in, PNG figures and one self-contained ``report.html`` out; and run comparison.

``write_report(run_dir)`` reads a run (:func:`agentsim.store.read_run`) and writes next to ``report.html`` one
PNG per figure; the HTML embeds the same PNGs as base64 ``data:`` URIs and carries its CSS inline, with no
JavaScript and no network access, so the file can be mailed or archived on its own. ``write_compare(run_dirs,
out)`` does the same for several runs side by side (overlaid CDFs), and :func:`compare_table` is the terminal
view of the same numbers. ``write_sweep_report(sweep_dir)`` reports a sweep directory (``sweep.parquet``): each
key metric against the first numeric axis with 95 % CI bands, throughput per GPU against tokens/s per user with
the Pareto frontier, and cost against SLO attainment.

What the figures show (formulas in ``docs/METRICS.md``):

- **Latency CDFs** (TTFT, TPOT, call end-to-end, task duration) over the *measurement window*, i.e. calls issued
  and tasks started at or after ``warmup_s``, as in ``summary.json``. Calls or tasks unfinished at the horizon are
  counted in the denominator beyond the right edge (the curve tops out at the finished fraction), which is how
  SLO attainment counts them; TPOT has no value for them and uses finished calls only. SLO lines come from the
  scenario in ``manifest.json``: per-call/per-task limits (``ttft_s``, ``tpot_s``, ``task_s``) as dashed
  verticals, percentile targets (``ttft_p99_s``, ``tpot_p99_s``, ``task_p95_s``) as a dashed vertical with a
  dotted horizontal at the quantile: the target holds when the curve crosses the dot's height left of it.
- **Time series per pool** from ``replicas.parquet``, the whole run with the warm-up shaded: output and computed
  prompt tokens/s from the cumulative counters, differenced between consecutive samples (a rate per interval);
  running batch and waiting queue per replica (pool mean, band = min..max over replicas); KV use as a fraction of
  capacity (pool total, band = replicas' range). KV use includes the prefix cache's evictable entries, so it
  sits near 100 % whenever prefix caching is on and the cache has filled: that is not memory pressure.
- **Token volume** per pool: cached prompt, computed prompt and output tokens of the completed window calls (the
  summary's ``prompt_tokens``, ``cached_tokens``, ``output_tokens``); log scale, as cache hits dwarf the rest.
- **Cost and energy per pool** from ``pools.parquet``: the whole run (warm-up included), dollars split into the
  busy share charged to calls and the idle remainder, energy into busy and idle.
- **Efficiency** from ``summary.json``: $/Mtok output and processed, $/task (window cost over the tasks finished
  in the window, and the mean busy share a task used), energy in kWh and J per output token. A split of dollars
  into compute and energy is *not* in the data: a rental price per GPU-hour includes power, and a TCO price folds
  the all-in kW into the same hourly rate; the report shows energy separately, in kWh.

matplotlib is needed for figures only (:func:`require_matplotlib`); the comparison table is plain rich.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError
from rich.table import Table

from agentsim import spec, store
from agentsim.analysis.metrics import call_latencies, col
from agentsim.report import plots
from agentsim.report.plots import BarPanel, CdfSeries, Line, Panel, Threshold, color, percent, seconds, si

__all__ = [
    "INSTALL_HINT",
    "CompareRow",
    "Figure",
    "MissingMatplotlibError",
    "ReportError",
    "RunData",
    "SweepData",
    "compare_figures",
    "compare_rows",
    "compare_table",
    "is_sweep_dir",
    "load_run",
    "load_sweep",
    "render_sweep_html",
    "require_matplotlib",
    "run_figures",
    "sweep_figures",
    "write_compare",
    "write_report",
    "write_sweep_report",
]

INSTALL_HINT = "pip install 'agentsim[report]'"
REPORT_FILE = "report.html"
COMPARE_FILE = "compare.html"


class ReportError(Exception):
    """A report cannot be made: not a run directory, or a missing dependency."""


class MissingMatplotlibError(ReportError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`MissingMatplotlibError`, naming the extra to install, unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise MissingMatplotlibError(f"reports need matplotlib, which is not installed: {INSTALL_HINT}") from e


# --------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Workload:
    """A workload's label (as in the tables) and its SLO fields (``None`` when unset)."""

    label: str
    slo: dict[str, float | None]


@dataclass(frozen=True)
class RunData:
    """One run directory, read back."""

    path: Path
    label: str
    calls: pa.Table
    tasks: pa.Table
    replicas: pa.Table
    pools: pa.Table | None
    summary: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def scenario(self) -> dict[str, Any]:
        """The resolved scenario as stored in the manifest (raw JSON)."""
        s = self.manifest.get("scenario")
        return s if isinstance(s, dict) else {}

    @property
    def warmup_s(self) -> float:
        return float(self.scenario.get("warmup_s", 0.0))

    @property
    def horizon_s(self) -> float:
        h = self.scenario.get("horizon_s")
        if h is not None:
            return float(h)
        t = col(self.replicas, "t_s")
        return float(t.max()) if t.size else 0.0

    @property
    def title(self) -> str:
        """``"<scenario name> (seed N)"``."""
        return f"{self.scenario.get('name', self.path.name)} (seed {self.manifest.get('seed', '?')})"

    def workloads(self) -> list[Workload]:
        """The scenario's workloads, labelled like the tables (:attr:`agentsim.spec.WorkloadSpec.label`)."""
        try:
            sc = spec.Scenario.model_validate(self.scenario)
        except ValidationError:
            sc = None  # written by another version: read the raw fields
        if sc is not None:
            return [Workload(w.label, w.slo.model_dump()) for w in sc.workload]
        out = []
        for w in self.scenario.get("workload", []):
            prof = w.get("profile")
            if w.get("name"):
                label = w["name"]
            elif w.get("kind") == "trace":
                label = PurePath(str(w.get("path", "trace"))).stem
            else:
                label = prof if isinstance(prof, str) else (prof or {}).get("kind", "workload")
            slo = {k: (float(v) if isinstance(v, int | float) else None) for k, v in (w.get("slo") or {}).items()}
            out.append(Workload(str(label), slo))
        return out


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read a run directory; :class:`ReportError` if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"{p}: no such run directory")
    missing = [
        f
        for f in ("summary.json", "manifest.json", "calls.parquet", "tasks.parquet", "replicas.parquet")
        if not (p / f).is_file()
    ]
    if missing:
        raise ReportError(f"{p}: not a run directory (missing {', '.join(missing)})")
    try:
        r = store.read_run(p)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ReportError(f"{p}: cannot read the run: {e}") from e
    return RunData(
        path=p,
        label=label or p.resolve().name,
        calls=r["calls"],
        tasks=r["tasks"],
        replicas=r["replicas"],
        pools=r.get("pools"),
        summary=r["summary"],
        manifest=r["manifest"],
    )


def _strings(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_pylist(), dtype=object)


@dataclass(frozen=True)
class _Latency:
    values: np.ndarray
    censored: int


def _latencies(run: RunData, metric: str) -> dict[str, _Latency]:
    """Window values of ``metric`` (``ttft``, ``tpot``, ``call_e2e``, ``task``) by workload label."""
    w0 = run.warmup_s
    out: dict[str, _Latency] = {}
    if metric == "task":
        t = run.tasks.filter(pa.array(col(run.tasks, "start_s") >= w0))
        dur = col(t, "done_s") - col(t, "start_s")
        wl = _strings(t, "workload")
        for w in dict.fromkeys(wl.tolist()):
            d = dur[wl == w]
            out[str(w)] = _Latency(d[~np.isnan(d)], int(np.isnan(d).sum()))
        return out
    c = run.calls.filter(pa.array(col(run.calls, "issue_s") >= w0))
    lat = call_latencies(c)[f"{metric}_s"]
    wl = _strings(c, "workload")
    for w in dict.fromkeys(wl.tolist()):
        d = lat[wl == w]
        # TPOT is undefined for unfinished calls and single-token outputs alike: finished values only.
        out[str(w)] = _Latency(d[~np.isnan(d)], 0 if metric == "tpot" else int(np.isnan(d).sum()))
    return out


def _pooled(by: dict[str, _Latency]) -> _Latency:
    if not by:
        return _Latency(np.empty(0), 0)
    return _Latency(np.concatenate([v.values for v in by.values()]), sum(v.censored for v in by.values()))


@dataclass(frozen=True)
class _PoolSeries:
    """A pool's samples: times ``t`` (n) and one (n, replicas) matrix per column."""

    t: np.ndarray
    m: dict[str, np.ndarray]

    def rate(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Pool total of a cumulative counter per second, per interval (interval end times, rates)."""
        tot = np.nansum(self.m[name], axis=1)
        dt = np.diff(self.t)
        ok = dt > 0
        return self.t[1:][ok], (np.diff(tot)[ok] / dt[ok])

    def per_replica(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, min and max over replicas of a level."""
        v = self.m[name]
        return np.nanmean(v, axis=1), np.nanmin(v, axis=1), np.nanmax(v, axis=1)


_REPLICA_COLUMNS = ("running", "waiting", "kv_used_tokens", "kv_capacity_tokens", "output_tokens", "prefill_tokens")


def _pool_series(run: RunData) -> dict[str, _PoolSeries]:
    r = run.replicas
    if r.num_rows == 0:
        return {}
    t = col(r, "t_s")
    pool = _strings(r, "pool")
    rep = col(r, "replica").astype(np.int64)
    order = list(run.pools.column("pool").to_pylist()) if run.pools is not None else []
    order += [p for p in dict.fromkeys(pool.tolist()) if p not in order]
    out: dict[str, _PoolSeries] = {}
    for p in order:
        m = pool == p
        if not m.any():
            continue
        ts = np.unique(t[m])
        reps = np.unique(rep[m])
        ti = np.searchsorted(ts, t[m])
        ri = np.searchsorted(reps, rep[m])
        mats: dict[str, np.ndarray] = {}
        for name in _REPLICA_COLUMNS:
            a = np.full((ts.size, reps.size), np.nan)
            a[ti, ri] = col(r, name)[m]
            mats[name] = a
        out[str(p)] = _PoolSeries(ts, mats)
    return out


# ------------------------------------------------------------------------------------------------ figures


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


def _cdf_figures(runs: Sequence[RunData], prefix: str = "") -> list[Figure]:
    figs = []
    for metric, (title, xlabel, _) in _CDF_SPECS.items():
        series: list[CdfSeries] = []
        if len(runs) == 1:
            run = runs[0]
            by = _latencies(run, metric)
            wls = run.workloads()
            labels = [w.label for w in wls] + [w for w in by if w not in {x.label for x in wls}]
            colors = {w: color(i) for i, w in enumerate(labels)}
            for w in labels:
                if w in by:
                    series.append(CdfSeries(w, by[w].values, by[w].censored, colors[w]))
            if len(by) > 1:
                allv = _pooled(by)
                series.append(CdfSeries("all workloads", allv.values, allv.censored, "#222222", ":"))
            ths = _thresholds(wls, metric, colors)
            sub = run.title
        else:
            for i, run in enumerate(runs):
                allv = _pooled(_latencies(run, metric))
                series.append(CdfSeries(run.label, allv.values, allv.censored, color(i)))
            wls = list(
                {(w.label, tuple(sorted(w.slo.items(), key=str))): w for r in runs for w in r.workloads()}.values()
            )
            ths = _thresholds(wls, metric, None)
            sub = f"{len(runs)} runs, all workloads pooled"
        png = plots.cdf_png(f"{title}: {sub}", xlabel, series, ths)
        figs.append(Figure(f"{prefix}{metric}_cdf", title, _CDF_CAPTION[metric] + _CDF_NOTE, png))
    return figs


def _timeseries_figures(run: RunData) -> list[Figure]:
    ps = _pool_series(run)
    w0, h = run.warmup_s, run.horizon_s
    colors = {p: color(i) for i, p in enumerate(ps)}
    figs: list[Figure] = []

    out_lines, pre_lines = [], []
    for p, s in ps.items():
        t, y = s.rate("output_tokens")
        out_lines.append(Line(p, t, y, colors[p], step=True))
        t, y = s.rate("prefill_tokens")
        pre_lines.append(Line(p, t, y, colors[p], step=True))
    png = plots.timeseries_png(
        f"Throughput per pool: {run.title}",
        [Panel("output tokens/s", out_lines), Panel("computed prompt\ntokens/s", pre_lines)],
        w0,
        h,
    )
    figs.append(
        Figure(
            "throughput",
            "Throughput over time",
            "Pool totals per sampling interval, from the replicas' cumulative counters: output tokens "
            "generated, and prompt tokens computed (prefill, not served from the prefix cache, recomputes "
            "included). Shaded: warm-up, excluded from the summary.",
            png,
        )
    )

    for name, col_name, title, ylabel, caption in (
        (
            "batch",
            "running",
            "Running batch size",
            "calls in batch\nper replica",
            "Calls admitted to a replica's batch (prefilling or decoding) at each sample: pool mean per replica, band "
            "= min..max over the pool's replicas.",
        ),
        (
            "queue",
            "waiting",
            "Waiting queue length",
            "calls waiting\nper replica",
            "Calls queued at a replica, not yet admitted, at each sample: pool mean per replica, band = min..max over "
            "the pool's replicas.",
        ),
    ):
        lines = []
        for p, s in ps.items():
            mean, lo, hi = s.per_replica(col_name)
            lines.append(Line(p, s.t, mean, colors[p], lo=lo if s.m[col_name].shape[1] > 1 else None, hi=hi))
        png = plots.timeseries_png(f"{title}: {run.title}", [Panel(ylabel, lines)], w0, h)
        figs.append(Figure(name, f"{title} over time", caption, png))

    lines = []
    for p, s in ps.items():
        used, cap = s.m["kv_used_tokens"], s.m["kv_capacity_tokens"]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.nansum(used, axis=1) / np.nansum(cap, axis=1)
            per = used / cap
        multi = used.shape[1] > 1
        lines.append(
            Line(
                p,
                s.t,
                frac,
                colors[p],
                lo=np.nanmin(per, axis=1) if multi else None,
                hi=np.nanmax(per, axis=1) if multi else None,
            )
        )
    png = plots.timeseries_png(
        f"KV cache use: {run.title}", [Panel("KV tokens held\n/ capacity", lines, percent=True, ymax=1.05)], w0, h
    )
    figs.append(
        Figure(
            "kv",
            "KV cache use over time",
            "KV tokens held over KV capacity: pool total, band = min..max over replicas. Includes the "
            "prefix cache's unreferenced, evictable entries, so with prefix caching on it climbs to ~100 % "
            "once the cache has filled; that alone is not memory pressure (preemptions are, see calls).",
            png,
        )
    )
    return figs


def _token_figure(run: RunData) -> Figure:
    c = run.calls.filter(pa.array((col(run.calls, "issue_s") >= run.warmup_s) & ~np.isnan(col(run.calls, "done_s"))))
    pool = _strings(c, "pool")
    prompt, cached, output = col(c, "prompt_tokens"), col(c, "cached_tokens"), col(c, "output_tokens")
    order = list(run.pools.column("pool").to_pylist()) if run.pools is not None else []
    cats = [str(p) for p in dict.fromkeys(order + pool.tolist()) if p is not None and (pool == p).any()]
    groups = [pool == p for p in cats]
    if len(cats) != 1:
        cats.append("all pools")
        groups.append(np.ones(pool.size, dtype=bool))
    kinds = (
        ("cached prompt", cached, "#9ecae1"),
        ("computed prompt", prompt - cached, "#3182bd"),
        ("output", output, "#e6550d"),
    )
    totals = [float((prompt[g] + output[g]).sum()) for g in groups]
    series = []
    for label, v, c_ in kinds:
        series.append((label, c_, [float(v[g].sum()) for g in groups]))

    def shares(i: int) -> str:
        t = totals[i]
        return " · ".join(
            f"{label.split()[0]} {percent((vals[i] or 0) / t) if t else '–'}" for label, _, vals in series
        )

    cats_labelled = [f"{cat}\n{shares(i)}" for i, cat in enumerate(cats)]
    panel = BarPanel("", "tokens (log scale)", cats_labelled, series, fmt=lambda v: si(v), log=True)
    png = plots.bars_png(f"Token volume, completed window calls: {run.title}", [panel])
    return Figure(
        "tokens",
        "Token volume",
        "Tokens of the calls issued in the window that completed (the summary's prompt, cached and output "
        "token sums), per pool, with each kind's share of all their tokens under the group. Log "
        "scale: prefix-cache hits usually dwarf the rest.",
        png,
    )


def _pool_cost_figure(run: RunData) -> Figure:
    if run.pools is None or run.pools.num_rows == 0:
        png = plots.bars_png(f"Cost and energy per pool: {run.title}", [BarPanel("no pools.parquet", "", [], [])])
        return Figure("pool_cost", "Cost and energy per pool", "pools.parquet is missing from the run.", png)
    p = run.pools
    idle_usd, idle_j = col(p, "idle_usd"), col(p, "idle_energy_j")
    usd_tot, j_tot = col(p, "provisioned_usd"), idle_j + col(p, "busy_energy_j")
    cats = [
        f"{name}\nidle: {percent(iu / tu) if tu else '–'} of $, {percent(ij / tj) if tj else '–'} of kWh"
        for name, iu, tu, ij, tj in zip(p.column("pool").to_pylist(), idle_usd, usd_tot, idle_j, j_tot, strict=True)
    ]

    def vals(name: str, scale: float = 1.0) -> list[float | None]:
        return [float(x) * scale for x in col(p, name)]

    usd = BarPanel(
        "dollars (provisioned)",
        "$",
        cats,
        [("charged to calls (busy)", "#3182bd", vals("calls_usd")), ("idle", "#bdbdbd", vals("idle_usd"))],
        fmt=lambda v: f"${v:,.4g}",
        stacked=True,
    )
    kwh = BarPanel(
        "energy",
        "kWh",
        cats,
        [("busy", "#e6550d", vals("busy_energy_j", 1 / 3.6e6)), ("idle", "#bdbdbd", vals("idle_energy_j", 1 / 3.6e6))],
        fmt=lambda v: f"{v:,.4g} kWh",
        stacked=True,
    )
    png = plots.bars_png(f"Cost and energy per pool, whole run 0–{run.horizon_s:g} s: {run.title}", [usd, kwh])
    return Figure(
        "pool_cost",
        "Cost and energy per pool",
        "From pools.parquet, over the whole run including the warm-up: provisioned dollars split into the "
        "busy share charged to calls and the idle remainder; energy of busy and idle GPUs (PUE included).",
        png,
    )


_EFFICIENCY_CAPTION = (
    "From summary.json (measurement window). $/Mtok: window cost (provisioned, idle included) per million output "
    "tokens, and per million processed tokens (output + computed prompt). $/task: window cost over the tasks that "
    "finished in the window, and the mean busy share a completed task used. Energy: kWh over the window and joules "
    "per output token. A split of dollars into compute and energy is not in the data: a rental $/GPU-hour includes "
    "power and a TCO price folds the all-in kW into the same hourly rate, so energy is shown on its own, in kWh."
)


def _efficiency_figure(runs: Sequence[RunData], name: str) -> Figure:
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


def run_figures(run: RunData) -> list[Figure]:
    """Every figure of a one-run report, in report order (needs matplotlib)."""
    require_matplotlib()
    return [
        *_cdf_figures([run]),
        *_timeseries_figures(run),
        _token_figure(run),
        _pool_cost_figure(run),
        _efficiency_figure([run], "efficiency"),
    ]


def compare_figures(runs: Sequence[RunData]) -> list[Figure]:
    """Figures of a comparison: overlaid CDFs, total output tokens/s over time, efficiency (needs matplotlib)."""
    require_matplotlib()
    figs = _cdf_figures(runs, "compare_")
    lines = []
    for i, run in enumerate(runs):
        tot: tuple[np.ndarray, np.ndarray] | None = None
        ps = _pool_series(run)
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
    figs.append(_efficiency_figure(runs, "compare_efficiency"))
    return figs


# ------------------------------------------------------------------------------------------- summary rows


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else si(x, digits=digits)
    return str(x)


_DISTS = (
    ("ttft_s", "TTFT (s)"),
    ("tpot_s", "TPOT (s)"),
    ("call_e2e_s", "call end-to-end (s)"),
    ("task_s", "task duration (s)"),
    ("calls_per_task", "calls per task"),
    ("task_usd", "task busy-share cost ($)"),
)


def _scalar_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    slo = s.get("slo_attainment") or {}
    return [
        ("calls completed / unfinished", f"{_fmt(s.get('calls_completed'))} / {_fmt(s.get('calls_unfinished'))}"),
        ("tasks completed / unfinished", f"{_fmt(s.get('tasks_completed'))} / {_fmt(s.get('tasks_unfinished'))}"),
        ("prompt tokens (cache hit rate)", f"{_fmt(s.get('prompt_tokens'))} ({_fmt(s.get('cache_hit_rate'), 3)})"),
        ("output tokens", _fmt(s.get("output_tokens"))),
        ("output tokens/s", _fmt(s.get("output_tokens_per_s"))),
        ("processed tokens/s", _fmt(s.get("processed_tokens_per_s"))),
        ("SLO attainment calls / tasks", f"{_fmt(slo.get('calls'), 3)} / {_fmt(slo.get('tasks'), 3)}"),
        ("busy fraction", _fmt(s.get("busy_fraction"), 3)),
        ("GPU-hours", _fmt(s.get("gpu_hours"))),
        ("$ total (window)", _fmt(s.get("usd_total"))),
        ("$ per hour", _fmt(s.get("usd_per_hour"))),
        ("$ / Mtok output", _fmt(s.get("usd_per_mtok_output"))),
        ("$ / Mtok processed", _fmt(s.get("usd_per_mtok_processed"))),
        (
            "tasks finished in window (per hour)",
            f"{_fmt(s.get('tasks_finished_in_window'))} ({_fmt(s.get('tasks_per_hour'))})",
        ),
        ("$ / task (window cost / tasks finished)", _fmt(s.get("usd_per_task"))),
        ("energy kWh", _fmt(s.get("energy_kwh"))),
        ("J / output token", _fmt(s.get("joules_per_output_token"))),
        ("output tokens / MWh", _fmt(s.get("tokens_per_mwh"))),
    ]


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
    for run 0, a missing value, or a % change from 0); ``verdicts[i]``: +1 better, -1 worse, 0 neither."""

    label: str
    values: list[float | None]
    diffs: list[float | None]
    pcts: list[float | None]
    verdicts: list[int]


def _get(s: dict[str, Any], keys: Sequence[str]) -> float | None:
    v: Any = s
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def compare_rows(summaries: Sequence[dict[str, Any]]) -> list[CompareRow]:
    """Summary metrics side by side, with differences against the first summary."""
    rows = []
    for m in _COMPARE:
        vals = [_get(s, m.keys) for s in summaries]
        base = vals[0]
        diffs: list[float | None] = [None]
        pcts: list[float | None] = [None]
        verdicts = [0]
        for v in vals[1:]:
            d = v - base if v is not None and base is not None else None
            if d is not None and abs(d) <= 1e-12 * abs(base or 0.0):
                d = 0.0  # rounding noise (a busy fraction of 1 - 6e-16), not a difference
            diffs.append(d)
            pcts.append(d / abs(base) * 100 if d is not None and base else None)
            verdicts.append(int(np.sign(d)) * m.better if d else 0)
        rows.append(CompareRow(m.label, vals, diffs, pcts, verdicts))
    return rows


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
    style = {1: "green", -1: "red", 0: ""}
    for row in compare_rows([r.summary for r in runs]):
        cells = [row.label]
        for i in range(len(runs)):
            cells.append(_num(row.values[i]))
            if i:
                st = style[row.verdicts[i]]
                d, p = _signed(row.diffs[i]), _signed(row.pcts[i], pct=True)
                cells += [f"[{st}]{d}[/]" if st else d, f"[{st}]{p}[/]" if st else p]
        t.add_row(*cells)
    return t


# ----------------------------------------------------------------------------------------------------- HTML


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1b1b1b; background: #fafafa; line-height: 1.45; }
main { max-width: 1000px; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .6rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
p.meta { color: #555; margin: 0 0 1rem; font-size: .9rem; }
table { border-collapse: collapse; font-size: .88rem; margin: .4rem 0 1rem; background: #fff; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
td.l { text-align: left; } td.better { color: #17692a; } td.worse { color: #b3261e; }
nav ul { columns: 2; font-size: .9rem; padding-left: 1.2rem; }
figure { margin: 1.2rem 0; background: #fff; border: 1px solid #e2e2e2; padding: .5rem; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: .85rem; color: #444; margin-top: .4rem; }
.note { font-size: .85rem; color: #444; }
code { font-size: .85em; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body><main>",
            *body,
            "</main></body>",
            "</html>",
            "",
        ]
    )


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    classes: Sequence[Sequence[str]] | None = None,
    text_columns: int = 1,
) -> str:
    """An HTML table; the first ``text_columns`` columns are left-aligned text, the rest right-aligned numbers."""
    if classes is None:
        classes = [["l"] * text_columns + [""] * (len(r) - text_columns) for r in rows]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>", "<tbody>"]
    for i, r in enumerate(rows):
        cls = classes[i]
        out.append(
            "<tr>"
            + "".join(
                f'<td class="{c}">{_e(v)}</td>' if c else f"<td>{_e(v)}</td>" for v, c in zip(r, cls, strict=True)
            )
            + "</tr>"
        )
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _figures_html(figs: Sequence[Figure]) -> list[str]:
    w, h = plots.PNG_SIZE_PX
    out = ["<h2>Figures</h2>", "<nav><ul>"]
    out += [f'<li><a href="#fig-{_e(f.name)}">{_e(f.title)}</a></li>' for f in figs]
    out.append("</ul></nav>")
    for f in figs:
        data = base64.b64encode(f.png).decode("ascii")
        out.append(
            f'<figure id="fig-{_e(f.name)}"><img src="data:image/png;base64,{data}" alt="{_e(f.title)}" '
            f'width="{w}" height="{h}"><figcaption><b>{_e(f.title)}</b> ({_e(f.name)}.png). {_e(f.caption)}'
            "</figcaption></figure>"
        )
    return out


def _meta(run: RunData) -> str:
    sc = run.scenario
    pools = ", ".join(
        f"{p.get('name')}: {p.get('replicas')} × {p.get('deployment', {}).get('model')} on "
        f"{p.get('deployment', {}).get('tp', 1) * p.get('deployment', {}).get('pp', 1)}× "
        f"{p.get('deployment', {}).get('hardware')}"
        for p in sc.get("cluster", {}).get("pools", [])
    )
    wall = run.manifest.get("wall_s")
    return (
        f"horizon {run.horizon_s:g} s, warm-up {run.warmup_s:g} s (window {run.horizon_s - run.warmup_s:g} s); "
        f"pools: {pools or '?'}; router {sc.get('cluster', {}).get('router', {}).get('kind', '?')}; "
        f"agentsim {run.manifest.get('agentsim_version', '?')}"
        + (f"; simulated in {wall:.2f} s wall" if isinstance(wall, int | float) else "")
    )


def _slo_html(run: RunData) -> list[str]:
    by = (run.summary.get("slo_attainment") or {}).get("by_workload") or {}
    rows = []
    for w in run.workloads():
        targets = ", ".join(f"{k} {seconds(v)}" for k, v in w.slo.items() if v is not None)
        if not targets:
            continue
        e = by.get(w.label, {})
        met = e.get("targets_met") or {}
        rows.append(
            [
                w.label,
                targets,
                _fmt(e.get("calls"), 3),
                _fmt(e.get("tasks"), 3),
                ", ".join(f"{k}: {_fmt(v)}" for k, v in met.items()) or "–",
            ]
        )
    if not rows:
        return ['<p class="note">No workload has an SLO.</p>']
    return [
        _table(["workload", "targets", "calls meeting", "tasks meeting", "percentile targets met"], rows, None, 2),
        '<p class="note">Fractions count unfinished calls and tasks as misses; percentile targets use finished '
        "values only (docs/METRICS.md).</p>",
    ]


def _pools_html(run: RunData) -> list[str]:
    if run.pools is None:
        return []
    p = run.pools.to_pylist()
    rows = [
        [
            str(r["pool"]),
            _fmt(r["replicas"]),
            _fmt(r["gpus"]),
            _fmt(r["usd_per_gpu_hour"]),
            _fmt(r["provisioned_usd"]),
            _fmt(r["calls_usd"]),
            _fmt(r["idle_usd"]),
            _fmt(r["busy_s"] / (r["busy_s"] + r["idle_s"]) if r["busy_s"] + r["idle_s"] else None, 3),
            _fmt((r["busy_energy_j"] + r["idle_energy_j"]) / 3.6e6),
        ]
        for r in p
    ]
    return [
        f"<h2>Pools (whole run, 0–{run.horizon_s:g} s)</h2>",
        _table(["pool", "replicas", "GPUs", "$/GPU-h", "provisioned $", "calls $", "idle $", "busy", "kWh"], rows),
    ]


def render_run_html(run: RunData, figs: Sequence[Figure]) -> str:
    """The self-contained HTML report of one run."""
    s = run.summary
    body = [
        f"<h1>{_e(run.title)}</h1>",
        f'<p class="meta">{_e(_meta(run))}<br>run directory: <code>{_e(run.path.resolve())}</code></p>',
        f"<h2>Summary (window {run.warmup_s:g}–{run.horizon_s:g} s)</h2>",
        _table(
            ["distribution", "n", "mean", "p50", "p90", "p99"],
            [
                [label, *(_fmt((s.get(k) or {}).get(q)) for q in ("n", "mean", "p50", "p90", "p99"))]
                for k, label in _DISTS
            ],
        ),
        _table(["metric", "value"], _scalar_rows(s)),
        "<h2>SLOs</h2>",
        *_slo_html(run),
        *_pools_html(run),
        *_figures_html(figs),
    ]
    return _page(f"agentsim report: {run.title}", body)


def render_compare_html(runs: Sequence[RunData], figs: Sequence[Figure]) -> str:
    """The self-contained HTML comparison of several runs."""
    rows = compare_rows([r.summary for r in runs])
    header = ["metric"]
    for i, r in enumerate(runs):
        header += [r.label] + (["Δ", "Δ %"] if i else [])
    cls_of = {1: "better", -1: "worse", 0: ""}
    cells, classes = [], []
    for row in rows:
        c, k = [row.label], [""]
        for i in range(len(runs)):
            c.append(_num(row.values[i]))
            k.append("")
            if i:
                c += [_signed(row.diffs[i]), _signed(row.pcts[i], pct=True)]
                k += [cls_of[row.verdicts[i]]] * 2
        cells.append(c)
        classes.append(k)
    runs_list = "".join(
        f"<li><b>{_e(r.label)}</b>: {_e(r.title)}; {_e(_meta(r))}; <code>{_e(r.path.resolve())}</code></li>"
        for r in runs
    )
    body = [
        f"<h1>agentsim comparison: {len(runs)} runs</h1>",
        f'<ul class="meta">{runs_list}</ul>',
        f"<h2>Summary metrics against {_e(runs[0].label)}</h2>",
        _table(header, cells, classes),
        '<p class="note">Each run\'s own measurement window. Green: better, red: worse than the first run (for '
        "metrics with a direction).</p>",
        *_figures_html(figs),
    ]
    return _page(f"agentsim comparison: {', '.join(r.label for r in runs)}", body)


# --------------------------------------------------------------------------------------------------- write


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(out: Path, name: str, page: str, figs: Sequence[Figure]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for f in figs:
        _write_atomic(out / f"{f.name}.png", f.png)
    target = out / name
    _write_atomic(target, page.encode("utf-8"))
    return target


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` and one PNG per figure into ``out`` (default: the run directory); return the HTML
    path. Raises :class:`ReportError` (:class:`MissingMatplotlibError` without matplotlib)."""
    require_matplotlib()
    run = load_run(run_dir)
    figs = run_figures(run)
    return _write(Path(out) if out is not None else run.path, REPORT_FILE, render_run_html(run, figs), figs)


def load_runs(run_dirs: Sequence[str | Path]) -> list[RunData]:
    """Read several run directories, labelled by directory name (made unique with ``#i`` when names repeat)."""
    paths = [Path(p) for p in run_dirs]
    names = [p.resolve().name for p in paths]
    labels = [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]
    return [load_run(p, label) for p, label in zip(paths, labels, strict=True)]


def write_compare(runs: Sequence[str | Path] | Sequence[RunData], out: str | Path) -> Path:
    """Write ``compare.html`` and its PNGs (``compare_*.png``) into ``out``; return the HTML path. ``runs``: run
    directories (or runs already read with :func:`load_runs`), the first being the baseline."""
    require_matplotlib()
    loaded = [r for r in runs if isinstance(r, RunData)]
    paths = [r for r in runs if not isinstance(r, RunData)]
    if paths:
        if loaded:
            raise ReportError("pass run directories or loaded runs, not both")
        loaded = load_runs(paths)
    figs = compare_figures(loaded)
    return _write(Path(out), COMPARE_FILE, render_compare_html(loaded, figs), figs)


# --------------------------------------------------------------------------------------------------- sweeps
# A sweep directory (``agentsim sweep ... --out DIR``) holds ``sweep.parquet``, one row per point (the axes by dotted
# path, each summary metric's mean over the replications and its ``<name>.ci95`` half-width) and ``sweep.json``.

SWEEP_FILE = "sweep.parquet"


@dataclass(frozen=True)
class SweepData:
    """One sweep directory, read back: its table, its definition (``{}`` without ``sweep.json``) and axis names."""

    path: Path
    table: pa.Table
    definition: dict[str, Any]
    axes: list[str]

    @property
    def title(self) -> str:
        base = self.definition.get("base")
        name = base.get("name") if isinstance(base, dict) else None
        return f"sweep of {name or self.path.resolve().name}"

    def values(self, name: str) -> np.ndarray:
        """A metric column as float (NaN for nulls or when the column is absent)."""
        if name not in self.table.column_names:
            return np.full(self.table.num_rows, np.nan)
        return col(self.table, name)

    def is_numeric(self, axis: str) -> bool:
        t = self.table.schema.field(axis).type
        return (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_boolean(t)


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep directory (holds ``sweep.parquet``)."""
    return (Path(path) / SWEEP_FILE).is_file()


def load_sweep(path: str | Path) -> SweepData:
    """Read a sweep directory; :class:`ReportError` if it is not one."""
    p = Path(path)
    if not is_sweep_dir(p):
        raise ReportError(f"{p}: not a sweep directory (missing {SWEEP_FILE})")
    try:
        table = pq.read_table(p / SWEEP_FILE)
        definition = json.loads((p / "sweep.json").read_text()) if (p / "sweep.json").is_file() else {}
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ReportError(f"{p}: cannot read the sweep: {e}") from e
    names = table.column_names
    declared = definition.get("axes") if isinstance(definition, dict) else None
    if isinstance(declared, dict):
        axes = [a for a in declared if a in names]
    else:  # the columns between ``point`` and ``replications``
        lo = names.index("point") + 1 if "point" in names else 0
        hi = names.index("replications") if "replications" in names else lo
        axes = names[lo:hi]
    return SweepData(p, table, definition if isinstance(definition, dict) else {}, axes)


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
    labels = _point_labels(sw)
    header = ["point", "replications"] + [title for _, title, _, _ in _SWEEP_METRICS]
    reps = sw.values("replications")
    rows = []
    for i, lb in enumerate(labels):
        cells = [lb, _fmt(None if np.isnan(reps[i]) else int(reps[i]))]
        for metric, _, _, _ in _SWEEP_METRICS:
            m, c = sw.values(metric)[i], sw.values(f"{metric}.ci95")[i]
            cells.append("–" if np.isnan(m) else _fmt(float(m)) + ("" if np.isnan(c) else f" ± {_fmt(float(c), 2)}"))
        rows.append(cells)
    d = sw.definition
    meta = (
        f"{sw.table.num_rows} points; axes: {', '.join(sw.axes) or 'none'}"
        + (" (zipped)" if d.get("zip") else "")
        + (f"; {d['replications']} replications per point" if "replications" in d else "")
        + (f"; agentsim {d['agentsim_version']}" if "agentsim_version" in d else "")
    )
    body = [
        f"<h1>{_e(sw.title)}</h1>",
        f'<p class="meta">{_e(meta)}<br>sweep directory: <code>{_e(sw.path.resolve())}</code></p>',
        "<h2>Points</h2>",
        _table(header, rows),
        '<p class="note">Means over each point\'s replications ± the half-width of the 95% confidence interval.</p>',
        *_figures_html(figs),
    ]
    return _page(f"agentsim report: {sw.title}", body)


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` and one PNG per figure for a sweep directory into ``out`` (default: the sweep
    directory); return the HTML path. Raises :class:`ReportError`."""
    require_matplotlib()
    sw = load_sweep(sweep_dir)
    figs = sweep_figures(sw)
    return _write(Path(out) if out is not None else sw.path, REPORT_FILE, render_sweep_html(sw, figs), figs)
