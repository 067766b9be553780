"""The report of one run: its figures over time and per pool, its summary tables, and ``report.html``.

Besides the latency CDFs and the efficiency bars (:mod:`agentsim.report.figures`), a run report draws:

- **Time series per pool** from ``replicas.parquet``, the whole run with the warm-up shaded: output and computed
  prompt tokens/s from the cumulative counters, differenced between consecutive samples (a rate per interval);
  running batch and waiting queue per replica (pool mean, band = min..max over replicas); KV use as a fraction of
  capacity (pool total, band = replicas' range). KV use includes the prefix cache's evictable entries, so it
  sits near 100 % whenever prefix caching is on and the cache has filled: that is not memory pressure.
- **Token volume** per pool: cached prompt, computed prompt and output tokens of the completed window calls (the
  summary's ``prompt_tokens``, ``cached_tokens``, ``output_tokens``); log scale, as cache hits dwarf the rest.
- **Cost and energy per pool** from ``pools.parquet``: the whole run (warm-up included), dollars split into the
  busy share charged to calls and the idle remainder, energy into busy and idle.

The page adds the summary's warnings, its distributions and scalar metrics (formulas in ``docs/METRICS.md``), SLO
attainment per workload, the pools' cost over the whole run, and how sure each pool's step times are (the
summary's ``accuracy``: the default model's error on public measurements of its class).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from agentsim.analysis.accuracy import REGIME_BOUNDS, REGIME_MIN_ROWS, figures_of, has_figures, mape_text
from agentsim.analysis.metrics import optional_rows
from agentsim.analysis.rows import col
from agentsim.report import plots
from agentsim.report.data import PoolSeries, RunData, load_run, pool_series, strings
from agentsim.report.errors import require_report_deps
from agentsim.report.figures import Figure, cdf_figures
from agentsim.report.html import REPORT_FILE, fmt, render, write_page
from agentsim.report.plots import BarPanel, CdfSeries, Line, Panel, color, percent, seconds, si

# ------------------------------------------------------------------------------------------------ figures


def _timeseries_figures(run: RunData) -> list[Figure]:
    ps = pool_series(run)
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

    figs.append(_kv_figure(run, ps, colors))
    churn = _churn_figure(run, ps, colors)
    if churn is not None:
        figs.append(churn)
    return figs


def _kv_figure(run: RunData, ps: dict[str, PoolSeries], colors: dict[str, str]) -> Figure:
    """KV held by running calls apart from the prefix cache (which fills whatever the load): the first is the
    memory pressure, the second what caching keeps."""
    active_lines: list[Line] = []
    cached_lines: list[Line] = []
    split = all("kv_cached_tokens" in s.m for s in ps.values())
    for p, s in ps.items():
        used, cap = s.m["kv_used_tokens"], s.m["kv_capacity_tokens"]
        cached = s.m["kv_cached_tokens"] if split else np.zeros_like(used)
        multi = used.shape[1] > 1
        with np.errstate(invalid="ignore", divide="ignore"):
            for lines, held in ((active_lines, used - cached), (cached_lines, cached)):
                per = held / cap
                lines.append(Line(p, s.t, np.nansum(held, axis=1) / np.nansum(cap, axis=1), colors[p],
                                  lo=np.nanmin(per, axis=1) if multi else None,
                                  hi=np.nanmax(per, axis=1) if multi else None))  # fmt: skip
    panels = [Panel("KV of running calls\n/ capacity", active_lines, percent=True, ymax=1.05)]
    if split:
        panels.append(Panel("prefix cache\n/ capacity", cached_lines, percent=True, ymax=1.05))
    png = plots.timeseries_png(f"KV cache use: {run.title}", panels, run.warmup_s, run.horizon_s)
    return Figure(
        "kv",
        "KV cache use over time",
        "Top: KV tokens held privately by running calls (and by calls whose KV is in transfer) over the KV "
        "capacity, the memory pressure; bottom: the prefix cache (shared prefixes, referenced or evictable), "
        "which fills once traffic has run a while whatever the load. Pool total, band = min..max over replicas.",
        png,
    )


def _churn_figure(run: RunData, ps: dict[str, PoolSeries], colors: dict[str, str]) -> Figure | None:
    """Preemptions and evictions per second over time (runs that recorded them)."""
    if not all("preemptions" in s.m and "evicted_tokens" in s.m for s in ps.values()):
        return None
    pre, ev = [], []
    for p, s in ps.items():
        t, y = s.rate("preemptions")
        pre.append(Line(p, t, y, colors[p], step=True))
        t, y = s.rate("evicted_tokens")
        ev.append(Line(p, t, y, colors[p], step=True))
    png = plots.timeseries_png(f"Preemptions and evictions: {run.title}",
                               [Panel("preemptions/s", pre), Panel("evicted prefix-cache\ntokens/s", ev)],
                               run.warmup_s, run.horizon_s)  # fmt: skip
    return Figure(
        "churn",
        "Preemptions and evictions over time",
        "Pool totals per sampling interval: running calls preempted (their KV dropped; they recompute), and "
        "prefix-cache tokens evicted to make room. Either rising means the KV cache is too small for the load.",
        png,
    )


def _ttft_split_figure(run: RunData) -> Figure | None:
    """TTFT as queueing (issue to first admission) plus prefill (admission to first token), as CDFs."""
    c = run.calls
    if "admitted_s" not in c.column_names:
        return None
    w = col(c, "issue_s") >= run.warmup_s
    issue, adm, first = col(c, "issue_s")[w], col(c, "admitted_s")[w], col(c, "first_token_s")[w]
    ok = ~np.isnan(first) & ~np.isnan(adm)
    series = [
        CdfSeries("queueing (issue to admission)", (adm - issue)[ok], 0, color(0)),
        CdfSeries("prefill (admission to first token)", (first - adm)[ok], 0, color(1)),
        CdfSeries("TTFT", (first - issue)[ok], 0, "#222222", ":"),
    ]
    png = plots.cdf_png(f"TTFT, split: {run.title}", "seconds", series)
    return Figure(
        "ttft_split",
        "TTFT: queueing and prefill",
        "For the window's calls that got a first token: the wait before the call first entered a replica's batch "
        "(queueing, the server's front end included when the engine sets frontend_s) and the time from there to its "
        "first token (its prefill chunks, interleaved with the batch's "
        "other work). Queueing dominating means too few replicas or a full batch; prefill dominating means long "
        "prompts or a small token budget per step.",
        png,
    )


def _token_figure(run: RunData) -> Figure:
    c = run.calls.filter(pa.array((col(run.calls, "issue_s") >= run.warmup_s) & ~np.isnan(col(run.calls, "done_s"))))
    pool = strings(c, "pool")
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


def run_figures(run: RunData) -> list[Figure]:
    """Every figure of a one-run report, in report order (needs matplotlib). No chart of single bars: the pool
    cost figure needs two pools (one pool's figures are in the page's tables), the efficiency bars are for
    comparisons of several runs."""
    require_report_deps()
    figs = [*cdf_figures([run])]
    split = _ttft_split_figure(run)
    if split is not None:
        figs.append(split)
    figs += [*_timeseries_figures(run), _token_figure(run)]
    if run.pools is not None and run.pools.num_rows > 1:
        figs.append(_pool_cost_figure(run))
    return figs


# ---------------------------------------------------------------------------------------------------- page


_DISTS = (
    ("ttft_s", "TTFT (s)"),
    ("tpot_s", "TPOT (s)"),
    ("call_e2e_s", "call end-to-end (s)"),
    ("task_s", "task duration (s)"),
    ("calls_per_task", "calls per task"),
    ("task_usd", "task busy-share cost ($)"),
)


def _scalar_rows(s: dict[str, Any]) -> list[list[str]]:
    slo = s.get("slo_attainment") or {}
    return [
        ["calls completed / unfinished", f"{fmt(s.get('calls_completed'))} / {fmt(s.get('calls_unfinished'))}"],
        ["tasks completed / unfinished", f"{fmt(s.get('tasks_completed'))} / {fmt(s.get('tasks_unfinished'))}"],
        ["prompt tokens (cache hit rate)", f"{fmt(s.get('prompt_tokens'))} ({fmt(s.get('cache_hit_rate'), 3)})"],
        ["output tokens", fmt(s.get("output_tokens"))],
        ["output tokens/s", fmt(s.get("output_tokens_per_s"))],
        ["processed tokens/s", fmt(s.get("processed_tokens_per_s"))],
        ["SLO attainment calls / tasks", f"{fmt(slo.get('calls'), 3)} / {fmt(slo.get('tasks'), 3)}"],
        ["busy fraction", fmt(s.get("busy_fraction"), 3)],
        ["GPU-hours", fmt(s.get("gpu_hours"))],
        ["$ total (window)", fmt(s.get("usd_total"))],
        ["$ per hour", fmt(s.get("usd_per_hour"))],
        ["$ / Mtok output", fmt(s.get("usd_per_mtok_output"))],
        ["$ / Mtok processed", fmt(s.get("usd_per_mtok_processed"))],
        [
            "tasks finished in window (per hour)",
            f"{fmt(s.get('tasks_finished_in_window'))} ({fmt(s.get('tasks_per_hour'))})",
        ],
        ["$ / task (window cost / tasks finished)", fmt(s.get("usd_per_task"))],
        ["energy kWh", fmt(s.get("energy_kwh"))],
        ["J / output token", fmt(s.get("joules_per_output_token"))],
        ["output tokens / MWh", fmt(s.get("tokens_per_mwh"))],
    ] + [[name, value] for name, value in optional_rows(s, fmt)]


def run_meta(run: RunData) -> str:
    """One line on how the run was made: horizon and window, pools, router, version, wall time."""
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


def _slo_rows(run: RunData) -> list[list[str]]:
    """One row per workload with an SLO: its targets and how often they were met."""
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
                fmt(e.get("calls"), 3),
                fmt(e.get("tasks"), 3),
                ", ".join(f"{k}: {fmt(v)}" for k, v in met.items()) or "–",
            ]
        )
    return rows


def _pool_rows(run: RunData) -> list[list[str]] | None:
    """One row per pool from ``pools.parquet`` (``None`` without it)."""
    if run.pools is None:
        return None
    return [
        [
            str(r["pool"]),
            fmt(r["replicas"]),
            fmt(r["gpus"]),
            fmt(r["usd_per_gpu_hour"]),
            fmt(r["provisioned_usd"]),
            fmt(r["calls_usd"]),
            fmt(r["idle_usd"]),
            fmt(r["busy_s"] / (r["busy_s"] + r["idle_s"]) if r["busy_s"] + r["idle_s"] else None, 3),
            fmt((r["busy_energy_j"] + r["idle_energy_j"]) / 3.6e6),
        ]
        for r in run.pools.to_pylist()
    ]


def _accuracy_rows(s: dict[str, Any]) -> list[list[str]]:
    """One row per pool of the summary's ``accuracy`` (:mod:`agentsim.analysis.accuracy`): the figures that speak
    for it (its regime's where they apply, :func:`~agentsim.analysis.accuracy.figures_of`) and which way its
    throughput leaned."""
    rows = []
    for pool, e in (s.get("accuracy") or {}).items():
        if not has_figures(e):  # own inputs, or no class
            rows.append([pool, str(e.get("basis")), str(e.get("label") or "–"), "–", "–", "–", "–", "–",
                         str(e.get("note") or "")])  # fmt: skip
            continue
        figures = figures_of(e)
        mape, n = figures.mape_pct, figures.n

        def pct(k: str, mape: dict[str, Any] = mape, n: dict[str, Any] = n) -> str:
            return mape_text(mape.get(k), "–") + ("" if mape.get(k) is None else f" ({n.get(k, 0)})")

        rows_cell = f"{figures.label}{'' if e.get('in_rows') else ' *'}"
        bias = figures.bias_pct.get("output_tok_s")
        rows.append([pool, str(e.get("basis")), str(e.get("label") or "–"), rows_cell, pct("output_tok_s"),
                     "–" if bias is None else f"{bias:+.1f}%", pct("tpot_s"), pct("ttft_s"),
                     str(e.get("note") or "")])  # fmt: skip
    return rows


def render_run_html(run: RunData, figs: Sequence[Figure]) -> str:
    """The self-contained HTML report of one run."""
    s = run.summary
    return render(
        "run.html.j2",
        title=run.title,
        meta=run_meta(run),
        path=str(run.path.resolve()),
        window=f"{run.warmup_s:g}–{run.horizon_s:g} s",
        horizon=f"{run.horizon_s:g}",
        distributions=[
            [label, *(fmt((s.get(k) or {}).get(q)) for q in ("n", "mean", "p50", "p90", "p99"))] for k, label in _DISTS
        ],
        metrics=_scalar_rows(s),
        slos=_slo_rows(run),
        pools=_pool_rows(run),
        warnings=s.get("warnings") or [],
        accuracy=_accuracy_rows(s),
        regime_bounds=REGIME_BOUNDS,
        regime_min_rows=REGIME_MIN_ROWS,
        accuracy_classes=[["l", "l", "l", "", "", "", "", "", "l"]] * len(s.get("accuracy") or {}),  # text left
        figures=figs,
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` and one PNG per figure into ``out`` (default: the run directory); return the HTML
    path. Raises :class:`ReportError` (:class:`MissingDependencyError` without matplotlib or Jinja2)."""
    require_report_deps()
    run = load_run(run_dir)
    figs = run_figures(run)
    return write_page(Path(out) if out is not None else run.path, REPORT_FILE, render_run_html(run, figs), figs)
