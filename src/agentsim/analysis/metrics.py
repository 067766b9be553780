"""Metrics: functions from result tables to summary numbers. Tables in, numbers out; no simulation here.

The tables may be Arrow tables or a run's Parquet files read a column at a time (:mod:`agentsim.analysis.tables`):
the summary of a ten-million-call run holds a few whole columns at once, never the table; each latency is
computed, summarized and dropped before the next.

Every statistic is taken over the *measurement window* ``[warmup_s, horizon_s]``: calls issued and tasks
started at or after ``warmup_s`` (the warm-up fills caches and queues and is excluded), and token and busy-time
counters differenced between the replica samples at ``warmup_s`` and ``horizon_s``. Each formula is written out
in ``docs/METRICS.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentsim import spec
from agentsim.analysis.order import Ordered
from agentsim.analysis.survival import StreamedCurve, area_above, kaplan_meier
from agentsim.analysis.tables import Table, batches, rows_where
from agentsim.resolve import PoolRates

__all__ = ["Table", "rows_where"]  # re-exported: the metrics' table helpers

PERCENTILES = (50, 90, 99)


def dist(
    values: np.ndarray, *, overwrite: bool = False, percentiles: tuple[int, ...] = PERCENTILES
) -> dict[str, float | None]:
    """``mean`` and the ``percentiles`` (default ``p50, p90, p99``; and ``n``) of ``values``; nulls when there
    are none. ``overwrite``: ``values`` may be reordered (a temporary of the caller's: no copy is made of it)."""
    nan = np.isnan(values)
    v = values[~nan] if values.size and (not overwrite or nan.any()) else values
    del nan
    if v.size == 0:
        return {"n": 0, "mean": None, **{f"p{p}": None for p in percentiles}}
    out: dict[str, float | None] = {"n": int(v.size), "mean": float(v.mean())}  # before any reordering
    q = np.percentile(v, percentiles, overwrite_input=overwrite or v is not values)
    for p, x in zip(percentiles, q, strict=True):
        out[f"p{p}"] = float(x)
    return out


def censored_dist(
    done: np.ndarray, censored: np.ndarray, *, overwrite: bool = False, percentiles: tuple[int, ...] = PERCENTILES
) -> dict[str, Any]:
    """A duration distribution when some items were still running at the horizon: ``done`` holds the durations
    that finished, ``censored`` the ages reached by those that did not (their durations are at least that).
    ``overwrite``: ``done`` may be reordered (a temporary of the caller's).

    Without censored items this is :func:`dist` (numpy's percentiles), plus ``censored: 0``. With them, the
    distribution is the Kaplan-Meier estimate (``scipy.stats.ecdf`` on right-censored data, computed in less
    memory by :mod:`agentsim.analysis.survival`): a percentile the estimate reaches is its first duration with
    ``F >= p``; one it does not reach (too many items still running) is reported as a lower bound, the
    percentile with every censored item counted at its age, and named in ``lower_bounds``. The mean is the area
    under the estimated survival curve (a lower bound, and named so, when the longest item is still running).
    Counting only finished items instead would drop exactly the long ones."""
    censored = censored[~np.isnan(censored)]
    if censored.size == 0:
        return {**dist(done, overwrite=overwrite, percentiles=percentiles), "censored": 0}
    finite = done.size - int(np.count_nonzero(np.isnan(done)))
    if overwrite:
        done.sort()  # NaN last
        done = done[:finite]
    else:
        done = np.sort(done[~np.isnan(done)])
    out: dict[str, Any] = {"n": int(done.size), "censored": int(censored.size)}
    lower: list[str] = []
    if done.size == 0:  # nothing finished: every statistic is at least the imputed one
        both = censored
        out["mean"] = float(both.mean())
        for p, x in zip(percentiles, np.percentile(both, percentiles), strict=True):
            out[f"p{p}"] = float(x)
        out["lower_bounds"] = ["mean", *(f"p{p}" for p in percentiles)]
        out["estimator"] = "lower bound"
        return out
    times, probs = kaplan_meier(done, np.sort(censored))
    for p in percentiles:
        reached = probs >= p / 100.0 - 1e-12
        if reached.any():
            out[f"p{p}"] = float(times[int(reached.argmax())])
        else:  # the durations in any order: a percentile does not depend on it
            out[f"p{p}"] = float(np.percentile(np.concatenate([done, censored]), p, overwrite_input=True))
            lower.append(f"p{p}")
        del reached
    last = times[-1]
    out["mean"] = area_above(times, probs, overwrite=True)
    del times, probs
    if censored.max() >= last:
        lower.insert(0, "mean")
    out["lower_bounds"] = lower
    out["estimator"] = "kaplan-meier"
    return out


def col(table: Table, name: str) -> np.ndarray:
    """A column as float64 numpy, nulls as NaN."""
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)


def own_col(table: Table, name: str) -> np.ndarray:
    """:func:`col`, as an array of its own that may be changed in place (not a view of the table's memory)."""
    a = col(table, name)
    return a if a.flags.writeable and a.flags.owndata else a.copy()


def _codes(table: Table, name: str) -> tuple[np.ndarray, list[str]]:
    """Text column ``name`` as codes into its distinct values (null: the code ``len(values)``)."""
    arr = table.column(name)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    names = [str(v) for v in arr.dictionary.to_pylist()]
    code = np.asarray(arr.indices.fill_null(len(names)).to_numpy(zero_copy_only=False), dtype=np.int64)
    return code, names


def ttft_of(calls: Table) -> np.ndarray:
    """Per-call time to first token (NaN where there is none)."""
    ttft = own_col(calls, "first_token_s")
    ttft -= col(calls, "issue_s")  # in place: one array of the table's length, not three
    return ttft


def tpot_of(calls: Table) -> np.ndarray:
    """Per-call time per output token after the first (NaN where undefined; see :func:`call_latencies`)."""
    tpot = own_col(calls, "done_s")
    tpot -= col(calls, "first_token_s")
    per = own_col(calls, "generated_tokens")
    per -= 1  # token counts: exact in float64, so per > 0 exactly when generated > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(tpot, per, out=tpot)
    tpot[~(per > 0)] = np.nan
    return tpot


def e2e_of(calls: Table) -> np.ndarray:
    """Per-call end-to-end seconds (NaN where unfinished)."""
    e2e = own_col(calls, "done_s")
    e2e -= col(calls, "issue_s")
    return e2e


def call_latencies(calls: Table) -> dict[str, np.ndarray]:
    """Per-call TTFT, TPOT and end-to-end seconds (NaN where undefined).

    TPOT is ``(done - first_token) / (generated - 1)``: the mean time between output tokens after the first,
    undefined for single-token outputs.
    """
    return {"ttft_s": ttft_of(calls), "tpot_s": tpot_of(calls), "call_e2e_s": e2e_of(calls)}


def is_status(table: Table, status: str) -> np.ndarray:
    """Boolean mask of ``table``'s rows whose ``status`` is ``status``."""
    return np.asarray(pc.equal(table.column("status"), status).to_numpy(zero_copy_only=False), dtype=bool)


def of_workload(table: Table, label: str) -> np.ndarray:
    """Boolean mask of ``table``'s rows whose ``workload`` is ``label``."""
    return np.asarray(pc.equal(table.column("workload"), label).to_numpy(zero_copy_only=False), dtype=bool)


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


def slo_attainment(
    calls: Table,
    tasks: Table,
    workloads: list[spec.WorkloadSpec | spec.TraceWorkload],
    horizon_s: float = float("inf"),
    warmup_s: float = float("-inf"),
) -> dict[str, Any]:
    """Per workload: the fraction of calls meeting the per-call targets and of tasks meeting the task target,
    and whether each percentile target holds. Overall: the same fractions pooled over workloads with SLOs.
    Over the calls issued and the tasks started at or after ``warmup_s``, read a batch at a time.

    Work still running at the horizon is *censored*, not failed, unless it has already missed: an unfinished
    call counts (as a miss) once its wait for the first token exceeds the TTFT target, an unfinished task once
    its age exceeds the task target; otherwise it is left out of the fraction. Counting every unfinished task as
    a miss would make attainment depend on the run's length when tasks are long. A call rejected at the context
    window, and a task failed by one, count as misses.
    """
    if all(v is None for w in workloads for v in w.slo.model_dump().values()):
        return {"calls": None, "tasks": None, "by_workload": {}}  # no targets: nothing to attain
    # Only the columns some target needs (a run's calls may be many millions), a batch at a time.
    slos = [w.slo for w in workloads]
    need_ttft = any((s.ttft_s or s.ttft_p99_s) is not None for s in slos)
    need_tpot = any((s.tpot_s or s.tpot_p99_s) is not None for s in slos)
    need_tasks = any((s.task_s or s.task_p95_s) is not None for s in slos)
    counts = {w.label: [0, 0, 0, 0] for w in workloads}  # good calls, counted calls, good tasks, counted tasks
    if need_ttft or need_tpot:
        names = ["issue_s", "first_token_s", "done_s", "status", "workload"]
        names += ["generated_tokens"] if need_tpot else []
        for b in _window(calls, names, "issue_s", warmup_s):
            finished = ~np.isnan(col(b, "done_s"))
            rejected = is_status(b, "rejected")
            ttft = ttft_of(b) if need_ttft else None
            tpot = tpot_of(b) if need_tpot else None
            waited = None  # how long each call waited for its first token, up to the horizon
            if ttft is not None:
                first = col(b, "first_token_s")
                waited = np.where(np.isnan(first), horizon_s, first) - col(b, "issue_s")
            for w in workloads:
                ttft_t = w.slo.ttft_s or w.slo.ttft_p99_s
                tpot_t = w.slo.tpot_s or w.slo.tpot_p99_s
                if ttft_t is None and tpot_t is None:
                    continue
                m = of_workload(b, w.label)
                done = m & finished
                good = done.copy()
                if ttft_t is not None and ttft is not None:
                    good &= ttft <= ttft_t
                if tpot_t is not None and tpot is not None:
                    good &= np.isnan(tpot) | (tpot <= tpot_t)
                missed_open = m & rejected
                if ttft_t is not None and waited is not None:
                    missed_open |= m & ~done & (waited > ttft_t)
                counts[w.label][0] += int(good.sum())
                counts[w.label][1] += int((done | missed_open).sum())
    if need_tasks:
        for b in _window(tasks, ["start_s", "done_s", "status", "workload"], "start_s", warmup_s):
            start = col(b, "start_s")
            task_s = col(b, "done_s") - start
            finished = ~np.isnan(task_s)
            failed = is_status(b, "failed")
            for w in workloads:
                task_t = w.slo.task_s or w.slo.task_p95_s
                if task_t is None:
                    continue
                tm = of_workload(b, w.label)
                counts[w.label][2] += int((tm & finished & (task_s <= task_t)).sum())
                counts[w.label][3] += int((tm & (finished | failed | (horizon_s - start > task_t))).sum())
    per: dict[str, Any] = {}
    ok_calls = n_calls = ok_tasks = n_tasks = 0
    for w in workloads:
        s = w.slo
        good_c, n_c, good_t, n_t = counts[w.label]
        entry: dict[str, Any] = {}
        if (s.ttft_s or s.ttft_p99_s) is not None or (s.tpot_s or s.tpot_p99_s) is not None:
            entry["calls"] = float(good_c / n_c) if n_c else None
            ok_calls += good_c
            n_calls += n_c
        if (s.task_s or s.task_p95_s) is not None:
            entry["tasks"] = float(good_t / n_t) if n_t else None
            ok_tasks += good_t
            n_tasks += n_t
        met: dict[str, bool | None] = {}
        for name, q, target in (("ttft_p99_s", 99, s.ttft_p99_s), ("tpot_p99_s", 99, s.tpot_p99_s),
                                ("task_p95_s", 95, s.task_p95_s)):  # fmt: skip
            if target is not None:
                o = target_values(calls, tasks, name, w.label, warmup_s)
                met[name] = bool(o.percentiles([q])[0] <= target) if o.n else None
        if met:
            entry["targets_met"] = met
        if entry:
            per[w.label] = entry
    return {
        "calls": ok_calls / n_calls if n_calls else None,
        "tasks": ok_tasks / n_tasks if n_tasks else None,
        "by_workload": per,
    }


TARGET_COLUMNS: dict[str, tuple[list[str], Callable[[Table], np.ndarray]]] = {
    "ttft_p99_s": (["issue_s", "first_token_s"], ttft_of),
    "tpot_p99_s": (["issue_s", "first_token_s", "done_s", "generated_tokens"], tpot_of),
    "task_p95_s": (["start_s", "done_s"], lambda b: col(b, "done_s") - col(b, "start_s")),
}
"""What a percentile target is a percentile of: the columns it needs and its per-row value (NaN: none)."""


def target_values(
    calls: Table, tasks: Table, target: str, label: str, warmup_s: float, times: tuple[float, float] | None = None
) -> Ordered:
    """The values a percentile target (``ttft_p99_s``, ``tpot_p99_s``, ``task_p95_s``) is taken over: workload
    ``label``'s calls issued (tasks started) at or after ``warmup_s`` and, with ``times``, in ``[a, b)``; only
    finite values."""
    names, of = TARGET_COLUMNS[target]
    table, at = (tasks, "start_s") if target == "task_p95_s" else (calls, "issue_s")

    def source() -> Iterator[np.ndarray]:
        for b in _window(table, [*names, "workload"], at, warmup_s):
            v = of(b)
            keep = of_workload(b, label) & np.isfinite(v)
            if times is not None:
                t = col(b, at)
                keep &= (t >= times[0]) & (t < times[1])
            yield v[keep]

    return Ordered(source, table.num_rows)


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


def _window(table: Table, names: list[str], at: str, t0: float) -> Iterator[pa.RecordBatch]:
    """:func:`~agentsim.analysis.tables.batches` of ``table``'s rows whose ``at`` is at least ``t0``."""
    for b in batches(table, list(dict.fromkeys([*names, at]))):
        keep = col(b, at) >= t0
        yield b if keep.all() else b.filter(pa.array(keep))


def values(table: Table, names: list[str], at: str, t0: float, of: Callable[[pa.RecordBatch], np.ndarray]) -> Ordered:
    """The non-NaN values of ``of`` over ``table``'s rows whose ``at`` is at least ``t0`` (``names``: the
    columns ``of`` reads), for order statistics in bounded memory (:class:`~agentsim.analysis.order.Ordered`)."""

    def source() -> Iterator[np.ndarray]:
        for b in _window(table, names, at, t0):
            v = of(b)
            yield v[~np.isnan(v)]

    return Ordered(source, table.num_rows)


def dist_of(o: Ordered, percentiles: tuple[int, ...] = PERCENTILES) -> dict[str, float | None]:
    """:func:`dist` of the values of ``o`` (numpy's figures, bit for bit, however many there are)."""
    if o.kept is not None:
        return dist(o.kept, overwrite=True, percentiles=percentiles)
    out: dict[str, float | None] = {"n": o.n, "mean": o.mean()}
    for p, x in zip(percentiles, o.percentiles(percentiles), strict=True):
        out[f"p{p}"] = x
    return out


def censored_dist_of(o: Ordered, censored: np.ndarray, percentiles: tuple[int, ...] = PERCENTILES) -> dict[str, Any]:
    """:func:`censored_dist` of the finished durations ``o`` and the ages ``censored`` of the items still
    running (few: they are live), with the finished ones streamed in order when there are too many to hold
    (:class:`~agentsim.analysis.survival.StreamedCurve`: the same Kaplan-Meier product)."""
    if o.kept is not None:
        return censored_dist(o.kept, censored, overwrite=True, percentiles=percentiles)
    censored = np.sort(censored[~np.isnan(censored)])
    if censored.size == 0:
        return {**dist_of(o, percentiles), "censored": 0}
    curve = StreamedCurve(o.blocks(), o.n, censored, [p / 100.0 for p in percentiles])
    out: dict[str, Any] = {"n": o.n, "censored": int(censored.size)}
    lower: list[str] = []
    both: Ordered | None = None
    for p in percentiles:
        x = curve.first.get(p / 100.0)
        if x is None:  # not reached: the percentile with every censored item at its age, a lower bound
            if both is None:
                both = Ordered(lambda: itertools.chain(o.source(), [censored]), None, cap=o.cap)
            x = both.percentiles([p])[0]
            lower.append(f"p{p}")
        out[f"p{p}"] = x
    out["mean"] = curve.area
    if censored[-1] >= curve.last:
        lower.insert(0, "mean")
    out["lower_bounds"] = lower
    out["estimator"] = "kaplan-meier"
    return out


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
    for b in _window(calls, names, "issue_s", t0):
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
        code, model_names = _codes(completed, "model")
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
    for b in _window(tasks, ["start_s", "done_s", "status", "workload"], "start_s", t0):
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
