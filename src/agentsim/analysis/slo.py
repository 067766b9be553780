"""SLO attainment: the share of calls and tasks meeting their workload's targets, and whether each percentile
target holds, over the measurement window (``docs/METRICS.md``). Read a batch at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from agentsim import spec
from agentsim.analysis.order import Ordered
from agentsim.analysis.rows import col, in_window, is_status, of_workload, tpot_of, ttft_of
from agentsim.analysis.tables import ParquetColumns, Table


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
        for b in in_window(calls, names, "issue_s", warmup_s):
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
        for b in in_window(tasks, ["start_s", "done_s", "status", "workload"], "start_s", warmup_s):
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


def target_samples(
    calls: Table, tasks: Table, target: str, label: str, warmup_s: float, cap: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The values of :func:`target_values` (no ``times`` window) and each one's issue (start) time, in one pass, or
    None as soon as there are more than ``cap`` of them (then stream them: :func:`target_values`)."""
    names, of = TARGET_COLUMNS[target]
    table, at = (tasks, "start_s") if target == "task_p95_s" else (calls, "issue_s")
    values: list[np.ndarray] = []
    times: list[np.ndarray] = []
    n = 0
    for b in in_window(table, [*names, "workload"], at, warmup_s):
        v = of(b)
        keep = of_workload(b, label) & np.isfinite(v)
        n += int(keep.sum())
        if n > cap:
            return None
        values.append(v[keep])
        times.append(col(b, at)[keep])
    if not values:
        return np.empty(0), np.empty(0)
    return np.concatenate(values), np.concatenate(times)


def target_values(
    calls: Table, tasks: Table, target: str, label: str, warmup_s: float, times: tuple[float, float] | None = None
) -> Ordered:
    """The values a percentile target (``ttft_p99_s``, ``tpot_p99_s``, ``task_p95_s``) is taken over: workload
    ``label``'s calls issued (tasks started) at or after ``warmup_s`` and, with ``times``, in ``[a, b)``; only
    finite values."""
    names, of = TARGET_COLUMNS[target]
    table, at = (tasks, "start_s") if target == "task_p95_s" else (calls, "issue_s")

    def source() -> Iterator[np.ndarray]:
        for b in in_window(table, [*names, "workload"], at, warmup_s):
            v = of(b)
            keep = of_workload(b, label) & np.isfinite(v)
            if times is not None:
                t = col(b, at)
                keep &= (t >= times[0]) & (t < times[1])
            yield v[keep]

    return Ordered(source, table.num_rows, tempdir=table.path.parent if isinstance(table, ParquetColumns) else None)
