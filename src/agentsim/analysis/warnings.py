"""Warnings: what a reader of a run's summary must know before trusting a number in it.

A summary always has numbers; some of them are weak. Each rule below looks at the run and, when it applies,
adds ``{"code", "message"}`` to ``summary["warnings"]`` (the CLI prints them; ``agentsim run --strict`` exits 3
when there is any):

* ``censored``: more than :data:`CENSORED_SHARE` of the window's tasks (or calls) were still running at the
  horizon: their duration statistics are Kaplan-Meier estimates, and the percentiles it cannot reach are lower
  bounds (named in ``lower_bounds``). A longer ``horizon_s`` removes it.
* ``small_sample``: a percentile taken from fewer items than it needs to be more than an interpolation between
  the largest few (``p99`` from fewer than 100 items, ``p90`` from fewer than 10).
* ``overload``: the queue grew through the window: the waiting calls' trend over the window rose by more than
  :data:`GROWTH` times the running calls (and by at least :data:`MIN_GROWTH` calls). Latencies then depend on
  how long the run lasted, not on the cluster: they are not steady-state figures. (The continuous-batching load
  is reported beside it: a batch limit can saturate a replica well below a load of 1.)
* ``context_window``: calls were rejected because prompt + output passed the model's context window (or, as a
  note, agents compacted their context to fit it).
* ``no_traffic``: no call completed in the window: every rate and cost per token is undefined.
* ``noise_floor``: a percentile target's verdict (``slo_attainment.by_workload.*.targets_met``) is within the
  noise: the run's percentile lies inside its own 95% interval (batch means, :mod:`agentsim.analysis.batches`)
  of the target, so another seed could give the other answer. A longer horizon (or the planner, which
  replicates until decisions separate) settles it.
* ``kv_capacity``: a pool's KV cache (one attention rank's under data-parallel attention) holds fewer tokens than
  one context of its model (:func:`kv_short_of_window`, added by the run from its resolved pools): vLLM refuses to
  start such a server unless its ``--max-model-len`` is cut to what fits, SGLang caps requests, TensorRT-LLM cuts
  ``max_seq_len``; a call longer than the cache cannot run anywhere, so the deployment is marginal even where this
  workload's calls fit.
* ``model_accuracy``: a pool on the default roofline whose class of deployment missed the goal on public data (on
  throughput or TPOT, and TTFT when a TTFT target rests on it), never measured one of them, or has no public
  measurement (:func:`agentsim.analysis.accuracy.accuracy_warnings`,
  added by the run from its resolved pools).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow.compute as pc

from agentsim import spec
from agentsim.analysis import batches, order
from agentsim.analysis.rows import col
from agentsim.analysis.slo import target_samples, target_values
from agentsim.analysis.tables import Table

if TYPE_CHECKING:
    from agentsim.resolve import ResolvedPool

CENSORED_SHARE = 0.10
GROWTH = 0.25
MIN_GROWTH = 10.0
NEEDS = {"p99": 100, "p90": 10}


def collect(
    summary: dict[str, Any], scenario: spec.Scenario, calls: Table, tasks: Table, replicas: Table
) -> list[dict[str, str]]:
    """The warnings of one run (module docstring), from its summary and tables."""
    out: list[dict[str, str]] = []
    horizon = scenario.horizon_s

    def add(code: str, message: str) -> None:
        out.append({"code": code, "message": message})

    for key, what in (("task_s", "tasks"), ("call_e2e_s", "calls")):
        d = summary.get(key) or {}
        n, c = int(d.get("n") or 0), int(d.get("censored") or 0)
        if n + c and c / (n + c) > CENSORED_SHARE:
            bounds = ", ".join(d.get("lower_bounds") or []) or "none"
            add("censored", f"{c / (n + c):.0%} of the window's {what} ({c} of {n + c}) were unfinished at the "
                f"horizon ({horizon:g} s): {key} uses Kaplan-Meier estimates; lower bounds only: {bounds}. "
                "A longer horizon_s removes this.")  # fmt: skip
    for key in ("ttft_s", "tpot_s", "call_e2e_s", "task_s", "task_usd"):
        d = summary.get(key) or {}
        n = int(d.get("n") or 0)
        weak = [p for p, need in NEEDS.items() if 0 < n < need]
        if weak:
            add("small_sample", f"{key}: {', '.join(weak)} from {n} values: an interpolation between the "
                "largest few, not a tail estimate.")  # fmt: skip
    growth = _queue_growth(replicas, scenario.warmup_s, horizon)
    load = (summary.get("headroom") or {}).get("batching_load")
    if growth is not None and growth[0] >= MIN_GROWTH and growth[0] > GROWTH * growth[1]:
        at = "" if load is None else f" (continuous-batching load {load:.2f})"
        add("overload", f"waiting calls grew by {growth[0]:.0f} through the window against {growth[1]:.0f} "
            f"running{at}: the cluster is overloaded and latencies grow with the run's length (not steady-state "
            "figures); add replicas or lower the load.")  # fmt: skip
    rejected = int(summary.get("calls_rejected") or 0)
    if rejected:
        add("context_window", f"{rejected} call(s) rejected: prompt + output passed the model's context window "
            f"({int(summary.get('tasks_failed') or 0)} task(s) failed); see on_context_limit.")  # fmt: skip
    compacted = int(summary.get("calls_compacted") or 0)
    if compacted:
        add("context_window", f"note: agents compacted their context before {compacted} call(s) to fit the "
            "model's context window.")  # fmt: skip
    if not summary.get("calls_completed"):
        add("no_traffic", "no call completed in the window: rates and costs per token are undefined.")
    for label, name, value, target, half in _noise_floor(scenario, calls, tasks, replicas):
        add("noise_floor", f"{label}: {name} {value:.4g} s against the target {target:g} s is within its 95% "
            f"interval (+-{half:.2g} s, batch means): another seed could give the other verdict; run longer "
            "or replicate (agentsim plan does).")  # fmt: skip
    return out


class PoolMemory(NamedTuple):
    """What :func:`kv_short_of_window` reads of a resolved pool."""

    pool: str
    model: str
    preset: spec.EnginePreset
    kv_tokens: int  # one attention rank's cache: the replica's over the ranks under data-parallel attention
    window_tokens: int
    overridden: bool  # the capacity is the scenario's kv_capacity_tokens, not the memory model's


ENGINE_AT_SHORT_KV: dict[spec.EnginePreset, str] = {
    "vllm": "vLLM would not start this server unless --max-model-len is at most {kv:,}",
    "sglang": "SGLang starts but caps every request at {kv:,} tokens",
    "trtllm": "TensorRT-LLM starts with max_seq_len cut to {kv:,}",
}
"""What each engine does when its KV cache cannot hold one sequence of the model's window: vLLM refuses to start
(V1 ``check_enough_kv_cache_memory``), SGLang caps a request's input (``max_req_input_len`` below
``max_total_num_tokens``), TensorRT-LLM shrinks ``max_seq_len`` to what fits ("maxSequenceLen ... reduced to")."""


def pool_memory(pool: ResolvedPool) -> PoolMemory:
    """What the ``kv_capacity`` warning reads of a resolved pool: under data-parallel attention each of the ``tp``
    ranks holds its own sequences, so one context must fit in a rank's share of the replica's cache."""
    d = pool.plan.spec.deployment
    return PoolMemory(
        pool.name,
        d.model,
        d.engine.preset,
        pool.plan.kv_capacity_tokens // pool.plan.engine.attention_ranks,
        pool.model.max_context_tokens,
        d.engine.kv_capacity_tokens is not None,
    )


def kv_short_of_window(pools: list[PoolMemory]) -> list[dict[str, str]]:
    """``kv_capacity`` warnings (module docstring): one for each pool whose cache (one attention rank's) cannot
    hold one full context of its model."""
    out = []
    for p in pools:
        if p.kv_tokens >= p.window_tokens:
            continue
        engine = ENGINE_AT_SHORT_KV[p.preset].format(kv=p.kv_tokens)
        remedy = (
            "raise its kv_capacity_tokens"
            if p.overridden
            else "give the pool more memory (more GPUs, lower precision)"
        )
        out.append({
            "code": "kv_capacity",
            "message": f"pool {p.pool}: a KV cache of {p.kv_tokens:,} tokens (one attention rank's) is less than one "
            f"{p.model} context ({p.window_tokens:,} tokens): {engine}, and no call longer than that can run; "
            f"{remedy} to serve the model's whole window.",
        })  # fmt: skip
    return out


def _noise_floor(
    scenario: spec.Scenario, calls: Table, tasks: Table, replicas: Table
) -> list[tuple[str, str, float, float, float]]:
    """The percentile targets whose verdict is within the noise: (workload, target name, the run's percentile,
    the target, the half-width of its 95% interval)."""
    slos = [w.slo for w in scenario.workload]
    if all(s.ttft_p99_s is None and s.tpot_p99_s is None and s.task_p95_s is None for s in slos):
        return []
    edges = batches.edges(replicas, scenario.warmup_s, scenario.horizon_s)
    if edges.size < batches.MIN_BATCHES + 1:
        return []
    out = []
    for w in scenario.workload:
        for name, q, target in (("ttft_p99_s", 99, w.slo.ttft_p99_s), ("tpot_p99_s", 99, w.slo.tpot_p99_s),
                                ("task_p95_s", 95, w.slo.task_p95_s)):  # fmt: skip
            if target is None:
                continue
            # the window's items, as the verdict (slo_attainment) counts them: not the warm-up's. Up to the order
            # statistics' cap, one pass keeps them with their times and each batch is numpy's percentile of its
            # share (what Ordered gives there); past it, each batch's percentile is a streamed pass of its own (a
            # run's calls may be many millions)
            kept = target_samples(calls, tasks, name, w.label, scenario.warmup_s, order.CAP)
            if kept is not None:
                values, at = kept
                if not values.size:
                    continue
                value = float(np.percentile(values, q))
                per_batch = batches.per_batch(values, at, edges, batches.percentile(q))
            else:
                whole = target_values(calls, tasks, name, w.label, scenario.warmup_s)
                value = whole.percentiles([q])[0]
                del whole
                streamed = []
                for a, b in itertools.pairwise(edges):
                    o = target_values(calls, tasks, name, w.label, scenario.warmup_s, (float(a), float(b)))
                    streamed.append(o.percentiles([q])[0] if o.n else np.nan)
                per_batch = np.asarray(streamed, dtype=float)
            half = batches.half_width(per_batch)
            if half is not None and abs(value - target) <= half:
                out.append((w.label, name, value, target, half))
    return out


def _queue_growth(replicas: Table, t0: float, t1: float) -> tuple[float, float] | None:
    """The growth of the total waiting calls over the window (the least-squares slope times the window's length,
    so a single spiky sample does not decide) and the mean running calls."""
    if replicas.num_rows == 0:
        return None
    t = col(replicas, "t_s")
    gpu = np.asarray(pc.not_equal(replicas.column("pool"), "tools").to_numpy(zero_copy_only=False), dtype=bool)
    sel = (t >= t0) & (t <= t1) & gpu
    if not sel.any():
        return None
    times = np.unique(t[sel])
    if times.size < 2:
        return None
    # Per sample time, the sums over the selected replicas (counts of calls: exact in float64, in any order).
    at = np.searchsorted(times, t[sel])
    waiting = np.bincount(at, weights=col(replicas, "waiting")[sel], minlength=times.size)
    running = np.bincount(at, weights=col(replicas, "running")[sel], minlength=times.size)
    # Least-squares slope in closed form; a window too short for its times to differ in floating point (a
    # horizon of a few ulps) has no trend to report.
    dt = times - times.mean()
    denom = float((dt * dt).sum())
    if not denom > 0.0 or not np.isfinite(denom):
        return None
    slope = float((dt * (waiting - waiting.mean())).sum()) / denom
    return slope * (t1 - t0), max(1.0, float(running.mean()))
