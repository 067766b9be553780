"""Metrics: the run's summary, from its result tables. Tables in, numbers out; no simulation here.

The tables may be Arrow tables or a run's Parquet files (:mod:`agentsim.analysis.tables`), read a batch at a
time: counts and sums accumulate, and each distribution is a pass of its own in bounded memory
(:mod:`agentsim.analysis.distributions`, :mod:`agentsim.analysis.order`), so the summary of a ten-million-call
run holds a bounded number of values at once, never a whole column.

Every statistic is taken over the *measurement window* ``[warmup_s, horizon_s]``: calls issued and tasks
started at or after ``warmup_s`` (the warm-up fills caches and queues and is excluded), and token and busy-time
counters differenced between the replica samples at ``warmup_s`` and ``horizon_s``. Each formula is written out
in ``docs/METRICS.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from agentsim import spec
from agentsim.analysis.distributions import censored_dist_of, dist_of
from agentsim.analysis.rows import codes, col, e2e_of, in_window, is_status, of_workload, tpot_of, ttft_of, values
from agentsim.analysis.slo import slo_attainment
from agentsim.analysis.tables import Table, batches
from agentsim.resolve import PoolRates


def window(replicas: Table, t0: float, t1: float) -> dict[str, np.ndarray]:
    """Per-replica counter increments between the samples at ``t0`` and ``t1``, one entry per replica present at
    ``t1`` (a replica that did not exist yet at ``t0`` counts from zero)."""
    t = col(replicas, "t_s")
    a = replicas.filter(pa.array(t == t0))
    b = replicas.filter(pa.array(t == t1))
    names = ("busy_s", "busy_prompt_steps_s", "provisioned_s", "output_tokens", "prefill_tokens", "steps")
    key_a = list(zip(a.column("pool").to_pylist(), a.column("replica").to_pylist(), strict=True))
    start = {k: i for i, k in enumerate(key_a)}
    rows = [start.get(k, -1) for k in zip(b.column("pool").to_pylist(), b.column("replica").to_pylist(), strict=True)]
    idx = np.asarray(rows, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name in names:
        end = col(b, name)
        begin = np.where(idx >= 0, col(a, name)[np.maximum(idx, 0)] if a.num_rows else 0.0, 0.0)
        out[name] = end - begin
    out["pool"] = np.asarray(b.column("pool").to_pylist(), dtype=object)
    return out


def headroom(
    replicas: Table, w: dict[str, np.ndarray], rate_of: dict[str, PoolRates], t0: float, t1: float
) -> dict[str, float | None]:
    """How much more the GPU replicas could take, over the window.

    ``batching_load``: the continuous-batching load, ``sum(d_busy - d_steps * t_min) / sum(d_provisioned)`` over
    the GPU replicas, with ``t_min`` a pool's minimal step (one decode token, no context): the share of
    provisioned time spent on token work rather than on the fixed cost of steps. A replica holding one call runs
    steps back to back, so its busy fraction is 1 at any load; this one is 0 when idle and 1 at saturation (the
    ``rho`` of the closed-form continuous-batching queue for a linear step model, as the autoscaler uses).
    ``kv_active_fraction``: the mean over the window's samples of the KV held by running calls (not the prefix
    cache, which fills whatever the load) over the KV capacity; ``kv_cached_fraction`` the prefix cache's."""
    gpu = np.array([rate_of[p].gpus_per_replica > 0 for p in w["pool"]], dtype=bool)
    t_min = np.array([rate_of[p].min_step_s for p in w["pool"]], dtype=float)
    prov = float(w["provisioned_s"][gpu].sum())
    work = float((w["busy_s"] - w["steps"] * t_min)[gpu].sum())
    t = col(replicas, "t_s")
    pools = replicas.column("pool").combine_chunks().dictionary_encode()  # a few names over many rows
    gpu_pool = np.array([rate_of[p].gpus_per_replica > 0 for p in pools.dictionary.to_pylist()], dtype=bool)
    sel = (t >= t0) & (t <= t1) & gpu_pool[np.asarray(pools.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    cap = col(replicas, "kv_capacity_tokens")[sel]
    used = col(replicas, "kv_used_tokens")[sel]
    cached = col(replicas, "kv_cached_tokens")[sel]
    total = float(cap.sum())
    return {
        "batching_load": max(0.0, work / prov) if prov > 0 else None,
        "kv_active_fraction": float((used - cached).sum() / total) if total > 0 else None,
        "kv_cached_fraction": float(cached.sum() / total) if total > 0 else None,
    }


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The arrays one after the other (none: an empty array)."""
    return np.concatenate(parts) if parts else np.empty(0)


CALL_TOKENS = ("prompt_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "reloaded_dram_tokens",
               "reloaded_nvme_tokens")  # fmt: skip
"""The completed calls' token columns the summary sums."""


def summarize(
    scenario: spec.Scenario,
    calls: Table,
    tasks: Table,
    replicas: Table,
    rates: list[PoolRates],
) -> dict[str, Any]:
    """The run's summary: counts, token volumes, latency distributions, SLO attainment, cost and energy.

    The call and task tables are read a batch at a time: counts and token sums accumulate (integers: exact in
    any order), the ages of the work still running at the horizon are kept (it is live, so few), and each
    latency distribution is a pass of its own (:class:`~agentsim.analysis.order.Ordered`)."""
    t0, t1 = scenario.warmup_s, scenario.horizon_s
    span = t1 - t0
    labels = [w.label for w in scenario.workload]
    by_workload = {label: {"calls_rejected": 0, "calls_compacted": 0, "tasks_failed": 0} for label in labels}
    n_done = n_unfinished = n_rejected = n_compacted = 0
    tok = dict.fromkeys(CALL_TOKENS, 0)
    model_calls: dict[str, int] = {}
    model_tok: dict[str, dict[str, int]] = {}
    waited_parts: list[np.ndarray] = []  # the censored calls' ages: no first token / not done by the horizon
    running_parts: list[np.ndarray] = []
    names = ["issue_s", "first_token_s", "done_s", "status", "compacted", "workload", "model", *CALL_TOKENS]
    for b in in_window(calls, names, "issue_s", t0):
        done = ~np.isnan(col(b, "done_s"))
        rejected = is_status(b, "rejected")
        compacted = np.asarray(b.column("compacted").to_numpy(zero_copy_only=False), dtype=bool)
        issue = col(b, "issue_s")
        waited_parts.append(t1 - issue[np.isnan(col(b, "first_token_s")) & ~rejected])
        running_parts.append(t1 - issue[~done & ~rejected])
        n_done += int(done.sum())
        n_unfinished += int((~done & ~rejected).sum())
        n_rejected += int(rejected.sum())
        n_compacted += int(compacted.sum())
        for label in labels:
            in_w = of_workload(b, label)
            by_workload[label]["calls_rejected"] += int((rejected & in_w).sum())
            by_workload[label]["calls_compacted"] += int((compacted & in_w).sum())
        # Token sums of the completed calls, whole and per model: integers, exact in any order.
        completed = b.filter(pa.array(done))
        code, model_names = codes(completed, "model")
        counts = np.bincount(code, minlength=len(model_names) + 1)
        sums = {name: np.asarray(completed.column(name).to_numpy(zero_copy_only=False), dtype=np.int64)
                for name in CALL_TOKENS}  # fmt: skip
        for name, v in sums.items():
            tok[name] += int(v.sum())
        for i, m_name in enumerate(model_names):
            model_calls[m_name] = model_calls.get(m_name, 0) + int(counts[i])
            per = model_tok.setdefault(m_name, dict.fromkeys(("prompt_tokens", "output_tokens", "reasoning_tokens"), 0))
            for name in per:
                per[name] += int(sums[name][code == i].sum())
    waited, running = _joined(waited_parts), _joined(running_parts)
    del waited_parts, running_parts

    tasks_done = n_unfinished_t = n_failed = 0
    task_ages: list[np.ndarray] = []
    for b in in_window(tasks, ["start_s", "done_s", "status", "workload"], "start_s", t0):
        done_t = ~np.isnan(col(b, "done_s"))
        failed = is_status(b, "failed")
        tasks_done += int(done_t.sum())
        n_unfinished_t += int((~done_t & ~failed).sum())
        n_failed += int(failed.sum())
        task_ages.append(t1 - col(b, "start_s")[~done_t & ~failed])
        for label in labels:
            by_workload[label]["tasks_failed"] += int((failed & of_workload(b, label)).sum())
    # Tasks finishing inside the window, whenever they started: in steady state their count over the window is
    # the task throughput, the right denominator for the window's cost. (Counting only tasks that also started
    # in the window would miss every long task still running at the horizon and overstate $/task.)
    finished_in_window = 0
    for b in batches(tasks, ["done_s"]):
        all_done = col(b, "done_s")
        finished_in_window += int(np.sum((all_done >= t0) & (all_done <= t1)))

    w = window(replicas, t0, t1)
    rate_of = {r.pool: r for r in rates}
    usd = 0.0
    energy_j = 0.0
    gpu_s = 0.0
    gpu_busy = 0.0
    tier_usd = 0.0
    tier_j = 0.0
    tools_usd = 0.0
    models = list(dict.fromkeys(r.model for r in rates if r.model is not None))
    per_model = {m: {"usd": 0.0, "energy_j": 0.0, "output": 0.0} for m in models}
    for pool, busy, prompt, prov, out in zip(
        w["pool"], w["busy_s"], w["busy_prompt_steps_s"], w["provisioned_s"], w["output_tokens"], strict=True
    ):
        r = rate_of[pool]
        usd += r.usd_per_s * prov
        joules = (
            prompt * r.busy_w_per_replica
            + (busy - prompt) * r.decode_w_per_replica
            + (prov - busy) * r.idle_w_per_replica
        )
        energy_j += joules
        gpu_s += r.gpus_per_replica * prov
        if r.gpus_per_replica:
            gpu_busy += busy * r.gpus_per_replica
        tier_usd += r.tier_usd_per_s * prov
        tier_j += r.tier_w_per_replica * prov
        if r.model is None:
            tools_usd += r.usd_per_s * prov
        else:
            m = per_model[r.model]
            m["usd"] += r.usd_per_s * prov
            m["energy_j"] += joules
            m["output"] += out
    out_tok = float(w["output_tokens"].sum())
    processed = out_tok + float(w["prefill_tokens"].sum())
    mwh = energy_j / 3.6e9

    def per_mtok(tokens: float, cost: float = usd) -> float | None:
        return cost / (tokens / 1e6) if tokens > 0 else None

    prompt_sum = float(tok["prompt_tokens"])
    output_sum, reasoning_sum = tok["output_tokens"], tok["reasoning_tokens"]
    # The window's generated tokens (dO) that reach the user: dO times the delivered share of the completed
    # window calls' output (docs/METRICS.md).
    delivered_share = float((output_sum - reasoning_sum) / output_sum) if output_sum > 0 else 1.0

    def by_model(m: str) -> dict[str, Any]:
        entry = per_model[m]
        sums = model_tok.get(m, {})
        return {
            "calls_completed": model_calls.get(m, 0),
            "prompt_tokens": sums.get("prompt_tokens", 0),
            "output_tokens": sums.get("output_tokens", 0),
            "reasoning_tokens": sums.get("reasoning_tokens", 0),
            "usd": entry["usd"],
            "energy_kwh": entry["energy_j"] / 3.6e6,
            "usd_per_mtok_output": per_mtok(entry["output"], entry["usd"]),
        }

    def tier_rate(tokens: float) -> float | None:
        return float(tokens / prompt_sum) if prompt_sum > 0 else None

    # Then one latency at a time: each is a pass (or a few) of its own, summarized and dropped.
    latency = ["issue_s", "first_token_s", "done_s"]
    ttft = censored_dist_of(values(calls, latency, "issue_s", t0, ttft_of), waited)
    call_e2e = censored_dist_of(values(calls, latency, "issue_s", t0, e2e_of), running)
    tpot = dist_of(values(calls, [*latency, "generated_tokens"], "issue_s", t0, tpot_of))
    del waited, running
    task_s = censored_dist_of(
        values(tasks, ["start_s", "done_s"], "start_s", t0, lambda b: col(b, "done_s") - col(b, "start_s")),
        _joined(task_ages),
    )
    del task_ages

    def of_done(name: str) -> Callable[[pa.RecordBatch], np.ndarray]:
        return lambda b: np.where(np.isnan(col(b, "done_s")), np.nan, col(b, name))

    calls_per_task = dist_of(values(tasks, ["start_s", "done_s", "calls"], "start_s", t0, of_done("calls")))
    task_usd = dist_of(values(tasks, ["start_s", "done_s", "usd"], "start_s", t0, of_done("usd")))

    return {
        "window_s": span,
        "calls_completed": n_done,
        "calls_unfinished": n_unfinished,
        "calls_rejected": n_rejected,
        "calls_compacted": n_compacted,
        "tasks_completed": tasks_done,
        "tasks_unfinished": n_unfinished_t,
        "tasks_failed": n_failed,
        "by_workload": by_workload,
        "prompt_tokens": int(tok["prompt_tokens"]),
        "cached_tokens": int(tok["cached_tokens"]),
        "output_tokens": int(output_sum),
        "reasoning_tokens": int(reasoning_sum),
        "delivered_tokens": int(output_sum - reasoning_sum),
        "cache_hit_rate": float(tok["cached_tokens"] / tok["prompt_tokens"]) if n_done else None,
        "cache_hit_rate_by_tier": {
            "hbm": tier_rate(tok["cached_tokens"] - tok["reloaded_dram_tokens"] - tok["reloaded_nvme_tokens"]),
            "dram": tier_rate(tok["reloaded_dram_tokens"]),
            "nvme": tier_rate(tok["reloaded_nvme_tokens"]),
        },
        "output_tokens_per_s": out_tok / span,
        "processed_tokens_per_s": processed / span,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "call_e2e_s": call_e2e,
        "task_s": task_s,
        "calls_per_task": calls_per_task,
        "slo_attainment": slo_attainment(calls, tasks, list(scenario.workload), t1, t0),
        "gpu_hours": gpu_s / 3600.0,
        "busy_fraction": gpu_busy / gpu_s if gpu_s > 0 else None,
        "headroom": headroom(replicas, w, rate_of, t0, t1),
        "usd_total": usd,
        "usd_per_hour": usd / span * 3600.0,
        "usd_per_mtok_output": per_mtok(out_tok),
        "usd_per_mtok_processed": per_mtok(processed),
        "usd_per_mtok_generated": per_mtok(out_tok),
        "usd_per_mtok_delivered": per_mtok(out_tok * delivered_share),
        "by_model": {m: by_model(m) for m in models},
        "tools_usd": tools_usd,
        "kv_tier_usd": tier_usd,
        "kv_tier_energy_kwh": tier_j / 3.6e6,
        "tasks_finished_in_window": finished_in_window,
        "tasks_per_hour": finished_in_window / span * 3600.0,
        "usd_per_task": usd / finished_in_window if finished_in_window else None,
        "task_usd": task_usd,
        "energy_kwh": energy_j / 3.6e6,
        "tokens_per_mwh": out_tok / mwh if mwh > 0 else None,
        "joules_per_output_token": energy_j / out_tok if out_tok > 0 else None,
    }


def optional_rows(summary: dict[str, Any], fmt: Any) -> list[tuple[str, str]]:
    """Rows shown only when a run uses them: reasoning (delivered vs generated), several models (cost and
    $/Mtok per model), lower KV tiers (hit rate per tier, their cost)."""
    rows: list[tuple[str, str]] = []
    if summary.get("reasoning_tokens"):
        rows.append(
            ("delivered / reasoning tokens", f"{summary['delivered_tokens']:,} / {summary['reasoning_tokens']:,}")
        )
        rows.append(
            (
                "$ / Mtok delivered / generated",
                f"{fmt(summary['usd_per_mtok_delivered'])} / {fmt(summary['usd_per_mtok_generated'])}",
            )
        )
    by_model = summary.get("by_model") or {}
    if len(by_model) > 1:
        for m, e in by_model.items():
            rows.append(
                (
                    f"model {m}: calls, $, $ / Mtok output",
                    f"{e['calls_completed']}, {fmt(e['usd'])}, {fmt(e['usd_per_mtok_output'])}",
                )
            )
    tiers = summary.get("cache_hit_rate_by_tier") or {}
    if summary.get("kv_tier_usd") or tiers.get("dram") or tiers.get("nvme"):
        rows.append(
            ("cache hit rate HBM / DRAM / NVMe", " / ".join(fmt(tiers.get(k), 3) for k in ("hbm", "dram", "nvme")))
        )
        rows.append(("KV tiers $ / kWh", f"{fmt(summary['kv_tier_usd'])} / {fmt(summary['kv_tier_energy_kwh'])}"))
    return rows
