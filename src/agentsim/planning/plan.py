"""Capacity planning: the fewest replicas of each candidate deployment that meet the SLOs, ranked by cost.

::

    from agentsim.planning.plan import plan
    result = plan(base, {"ttft_p99_s": 2, "task_p95_s": 900}, hardware=["h100", "h200"], tp=[1, 2, 4, 8])
    for row in result.rows: print(row.hardware, row.tp, row.replicas, row.usd_per_hour)

**Candidates.** Each ``hardware x tp`` is set on ``cluster.pools[0].deployment`` of the base scenario (other
pools, the workload and the pricing are kept). A candidate that cannot run (the weights do not fit, ``tp`` is
not a divisor of the scale-up domain, no catalog price) is reported as ``skipped`` with the reason from
:func:`agentsim.resolve.resolve`. Note that a ``pricing.usd_per_gpu_hour`` written in the scenario applies to
every hardware; leave it out to use each hardware's catalog price.

**SLO grammar.** A key is ``<metric>_<statistic>_s`` or ``<metric>_s``, its value a target in seconds:

- ``metric``: ``ttft`` (time to first token of a call), ``tpot`` (time per output token after the first),
  ``e2e`` (a call's end-to-end time), ``task`` (a task's duration, ``done_s - start_s``);
- ``statistic``: ``pNN`` or ``pNN.N`` (that percentile, numpy's linear interpolation; ``ttft_p99_s``,
  ``task_p95_s``, ``tpot_p99.9_s``) or ``mean``; the target holds when the statistic is ``<=`` the value;
- no statistic (``ttft_s=2``, ``task_s=900``): a per-item threshold; it holds when the fraction of items
  within it is at least ``attainment`` (default 0.9).

Statistics are taken over the summary's window (calls issued and tasks started at or after ``warmup_s``, all
workloads pooled). Work unfinished at the horizon is not dropped: an item that has already taken longer than
the target by ``horizon_s`` counts as an infinite value (a certain miss), so an overloaded cluster whose long
tasks never finish cannot pass on the few short ones that did; an unfinished item still within its target has
an unknown outcome and is left out. Choose a horizon well beyond the task targets. With no item at all the
statistic is undefined and the SLO counts as missed.

**Search.** A point (candidate, replica count) meets the SLOs when, for every key, the mean over the
replications of its statistic is within the target (for thresholds: the mean attainment is at least
``attainment``). The replications use the seeds of :func:`agentsim.planning.sweep.replication_seeds`, the same at
every replica count (common random numbers), which keeps the search's comparisons between counts sharp. For
each candidate: try 1, 2, 4, ... replicas until one meets the SLOs (or ``max_replicas`` fails: ``infeasible``),
then bisect between the last failing and the first passing count. This finds the fewest replicas when meeting
the SLOs is monotone in the count, as it is for any sane cluster. Scaling out stops early, as ``infeasible``,
when doubling the replicas improves none of the failing statistics by more than ``plateau`` (2% by default;
``None`` turns this off): a latency floor that more replicas cannot lower (one long prefill takes longer than
the TTFT target on this tp, say) would otherwise send the search all the way to ``max_replicas``. All
candidates advance together: each round submits the next count of every unfinished candidate, times the
replications, to the executor at once.

**Ranking.** Candidates that meet the SLOs are ranked by ``$/hour`` (the provisioned cost of the cluster
found), then by ``$/Mtok`` of output; then the infeasible ones, then the skipped ones. ``rank_by="usd_per_mtok"``
ranks by $/Mtok first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from agentsim import api, spec
from agentsim.analysis.metrics import call_latencies, col
from agentsim.errors import ScenarioError
from agentsim.files import atomic_path, write_text
from agentsim.planning.sweep import (
    apply_values,
    map_unordered,
    open_executor,
    replication_seeds,
    scenario_json,
)

__all__ = ["PlanResult", "PlanRow", "Slo", "evaluate", "parse_slo", "plan"]

_SLO_KEY = re.compile(r"^(ttft|tpot|e2e|task)(?:_(mean|p(\d+(?:\.\d+)?)))?_s$")

_COST = ("usd_per_hour", "usd_per_mtok_output", "usd_per_task")

ProgressFn = Callable[[str], None]
"""``progress(message)``: called as each evaluation round starts."""


@dataclass(frozen=True)
class Slo:
    """One parsed SLO: ``metric`` in ``ttft, tpot, e2e, task``; ``stat`` ``"mean"``, a percentile (float) or
    ``None`` for a threshold with attainment; ``target`` in seconds."""

    key: str
    metric: str
    stat: float | Literal["mean"] | None
    target: float


def parse_slo(key: str, target: float) -> Slo:
    """Parse one SLO key (see the module docstring); ``ValueError`` naming the grammar if it does not match."""
    m = _SLO_KEY.match(key)
    if m is None:
        raise ValueError(
            f"unknown SLO {key!r}: expected <metric>_<stat>_s or <metric>_s with metric in ttft, tpot, e2e, "
            "task and stat mean or pNN (ttft_p99_s, task_p95_s, tpot_mean_s, ttft_s)"
        )
    if not (isinstance(target, int | float) and math.isfinite(target) and target > 0):
        raise ValueError(f"SLO {key}: the target must be a positive number of seconds, got {target!r}")
    stat: float | Literal["mean"] | None
    if m.group(2) is None:
        stat = None
    elif m.group(2) == "mean":
        stat = "mean"
    else:
        stat = float(m.group(3))
        if not 0 < stat < 100:
            raise ValueError(f"SLO {key}: the percentile must be in (0, 100)")
    return Slo(key, m.group(1), stat, float(target))


# --------------------------------------------------------------------------------------------- statistics


def _percentile(values: np.ndarray, q: float) -> float:
    """numpy's linear-interpolation percentile, with ``inf`` values allowed (numpy would give NaN)."""
    v = np.sort(values)
    h = (v.size - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, v.size - 1)
    a, b = float(v[lo]), float(v[hi])
    frac = h - lo
    if frac == 0.0 or a == b:
        return a
    if math.isinf(b):
        return math.inf
    return a + (b - a) * frac


def _values(slo: Slo, scenario: spec.Scenario, calls: pa.Table, tasks: pa.Table) -> np.ndarray:
    """The window values of an SLO's metric: finished ones, plus ``inf`` for unfinished items already past the
    target at the horizon."""
    t0, t1 = scenario.warmup_s, scenario.horizon_s
    if slo.metric == "task":
        start = col(tasks, "start_s")
        w = start >= t0
        done = col(tasks, "done_s")[w]
        start = start[w]
        finished = ~np.isnan(done)
        late = ~finished & (t1 - start > slo.target)
        return np.concatenate([(done - start)[finished], np.full(int(late.sum()), math.inf)])
    issue = col(calls, "issue_s")
    w = issue >= t0
    lat = {k: v[w] for k, v in call_latencies(calls).items()}
    issue = issue[w]
    if slo.metric == "ttft":
        v = lat["ttft_s"]
        known = ~np.isnan(v)
        late = ~known & (t1 - issue > slo.target)
    elif slo.metric == "e2e":
        v = lat["call_e2e_s"]
        known = ~np.isnan(v)
        late = ~known & (t1 - issue > slo.target)
    else:  # tpot: an unfinished call whose decode so far already averages above the target will miss it
        v = lat["tpot_s"]
        known = ~np.isnan(v)
        first = col(calls, "first_token_s")[w]
        out = col(calls, "output_tokens")[w]
        done = col(calls, "done_s")[w]
        with np.errstate(invalid="ignore", divide="ignore"):
            so_far = (t1 - first) / (out - 1)
        late = np.isnan(done) & ~np.isnan(first) & (out > 1) & (so_far > slo.target)
    return np.concatenate([v[known], np.full(int(late.sum()), math.inf)])


def statistic(slo: Slo, values: np.ndarray) -> float | None:
    """The SLO's statistic of ``values`` (for a threshold: the fraction within the target); None if empty."""
    if values.size == 0:
        return None
    if slo.stat is None:
        return float(np.count_nonzero(values <= slo.target) / values.size)
    if slo.stat == "mean":
        return math.inf if np.isinf(values).any() else float(values.mean())
    return _percentile(values, slo.stat)


def evaluate(scenario_json: str, seed: int, slos: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """Worker function: simulate the scenario (JSON) with ``seed`` and return ``{"stats": {key: value},
    "summary": {...}}`` with the statistic of each SLO ``(key, target)`` and the cost fields of the summary.
    Top-level, so executors can pickle it."""
    scenario = api.validate_data(json.loads(scenario_json), "plan run")
    r = api.simulate(scenario, seed=seed)
    stats: dict[str, float | None] = {}
    for key, target in slos:
        s = parse_slo(key, target)
        stats[key] = statistic(s, _values(s, r.scenario, r.calls, r.tasks))
    keep = ("usd_per_hour", "usd_per_mtok_output", "usd_per_task", "gpu_hours", "output_tokens_per_s")
    return {"stats": stats, "summary": {k: r.summary.get(k) for k in keep}}


# --------------------------------------------------------------------------------------------- results


@dataclass
class Evaluation:
    """One replica count tried for a candidate: the mean over the replications of each SLO statistic and
    of the cost fields, and whether the SLOs are met."""

    replicas: int
    met: bool
    stats: dict[str, float | None]
    usd_per_hour: float | None
    usd_per_mtok_output: float | None
    usd_per_task: float | None


@dataclass
class PlanRow:
    """A candidate deployment and what the search found for it. ``status``: ``ok`` (``replicas`` is the
    fewest that meet the SLOs), ``infeasible`` (not even ``max_replicas`` does) or ``skipped`` (cannot run:
    ``reason``)."""

    hardware: str
    tp: int
    gpus_per_replica: int
    status: Literal["ok", "infeasible", "skipped"]
    reason: str | None = None
    replicas: int | None = None
    gpus: int | None = None
    usd_per_hour: float | None = None
    usd_per_mtok_output: float | None = None
    usd_per_task: float | None = None
    stats: dict[str, float | None] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=list)


@dataclass
class PlanResult:
    """The ranked candidates (``rows``, best first) and the search's settings."""

    slos: dict[str, float]
    attainment: float
    replications: int
    max_replicas: int
    seeds: list[int]
    rows: list[PlanRow]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (infinite statistics as the string ``"inf"``)."""
        return _json_safe(asdict(self))  # type: ignore[no-any-return]

    def to_table(self) -> pa.Table:
        """One row per candidate, best first; ``rank`` is null for candidates that do not meet the SLOs."""
        cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "rank",
                "hardware",
                "tp",
                "gpus_per_replica",
                "status",
                "replicas",
                "gpus",
                "usd_per_hour",
                "usd_per_mtok_output",
                "usd_per_task",
            )
        }
        stat_cols: dict[str, list[float | None]] = {k: [] for k in self.slos}
        cols["reason"] = []
        rank = 0
        for row in self.rows:
            rank += row.status == "ok"
            cols["rank"].append(rank if row.status == "ok" else None)
            for k in ("hardware", "tp", "gpus_per_replica", "status", "replicas", "gpus"):
                cols[k].append(getattr(row, k))
            for k in ("usd_per_hour", "usd_per_mtok_output", "usd_per_task", "reason"):
                cols[k].append(getattr(row, k))
            for k in self.slos:
                stat_cols[k].append(row.stats.get(k))
        types = {"rank": pa.int64(), "tp": pa.int64(), "gpus_per_replica": pa.int64(), "replicas": pa.int64()}
        arrays = {k: pa.array(v, type=types.get(k)) for k, v in cols.items() if k != "reason"}
        for k, v in stat_cols.items():
            arrays[k] = pa.array(v, type=pa.float64())
        arrays["reason"] = pa.array(cols["reason"], type=pa.string())
        return pa.table(arrays)

    def save(self, path: str | Path) -> Path:
        """Write the table (``.parquet``, ``.csv``) or the full result (``.json``), atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
            write_text(path, text, overwrite=True)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            table = self.to_table()
            with atomic_path(path, overwrite=True) as tmp:
                pq.write_table(table, tmp)
        elif suffix == ".csv":
            import pyarrow.csv as pcsv

            table = self.to_table()
            with atomic_path(path, overwrite=True) as tmp:
                pcsv.write_csv(table, tmp)
        else:
            raise ValueError(f"{path}: save as .json, .parquet or .csv")
        return path


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else None)
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------- search


def _search(max_replicas: int) -> Generator[int, bool, int | None]:
    """Yields replica counts to try and receives whether each met the SLOs; returns the fewest that does, or
    None. Exponential search up from 1, then bisection between the last failure and the first success."""
    lo, n = 0, 1
    while True:
        if (yield n):
            hi = n
            break
        lo = n
        if n >= max_replicas:
            return None
        n = min(2 * n, max_replicas)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (yield mid):
            hi = mid
        else:
            lo = mid
    return hi


def _mean(xs: Sequence[float | None]) -> float | None:
    if any(x is None for x in xs) or not xs:
        return None
    vals = [float(x) for x in xs if x is not None]
    return math.inf if any(math.isinf(v) for v in vals) else math.fsum(vals) / len(vals)


def _one_met(slo: Slo, value: float | None, attainment: float) -> bool:
    if value is None:
        return False
    return value >= attainment if slo.stat is None else value <= slo.target


def _met(slos: Sequence[Slo], stats: Mapping[str, float | None], attainment: float) -> bool:
    return all(_one_met(s, stats[s.key], attainment) for s in slos)


def _failing(slos: Sequence[Slo], stats: Mapping[str, float | None], attainment: float) -> list[Slo]:
    return [s for s in slos if not _one_met(s, stats[s.key], attainment)]


def _flat(
    slos: Sequence[Slo],
    before: Mapping[str, float | None],
    after: Mapping[str, float | None],
    attainment: float,
    plateau: float,
) -> bool:
    """Whether no failing SLO statistic improved by more than the fraction ``plateau`` between two replica
    counts (both finite: an overloaded count, with infinite statistics, always leaves room to improve)."""
    failing = _failing(slos, after, attainment)
    if not failing:
        return False
    for s in failing:
        a, b = before[s.key], after[s.key]
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return False
        improved = b > a * (1 + plateau) if s.stat is None else b < a * (1 - plateau)
        if improved:
            return False
    return True


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


@dataclass
class _Candidate:
    row: PlanRow
    scenario: spec.Scenario
    search: Generator[int, bool, int | None]
    pending: int | None = None
    tried: dict[int, Evaluation] = field(default_factory=dict)


def plan(
    base: spec.Scenario,
    slos: Mapping[str, float],
    *,
    hardware: Sequence[str] | None = None,
    tp: Sequence[int] | None = None,
    attainment: float = 0.9,
    max_replicas: int = 256,
    replications: int = 3,
    rank_by: Literal["usd_per_hour", "usd_per_mtok"] = "usd_per_hour",
    plateau: float | None = 0.02,
    executor: Any = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> PlanResult:
    """For each ``hardware x tp`` on ``cluster.pools[0]`` (default: the base's own), the fewest replicas meeting
    every SLO, ranked by cost. See the module docstring for the SLO grammar, the search, ``plateau`` and the
    ranking; ``executor``/``workers`` as in :func:`agentsim.planning.sweep`."""
    from agentsim.catalog import load_catalog
    from agentsim.resolve import resolve

    if not slos:
        raise ValueError("give at least one SLO")
    parsed = [parse_slo(k, v) for k, v in slos.items()]
    if not 0 < attainment <= 1:
        raise ValueError(f"attainment must be in (0, 1], got {attainment}")
    if max_replicas < 1:
        raise ValueError(f"max_replicas must be >= 1, got {max_replicas}")
    d0 = base.cluster.pools[0].deployment
    hw_list = list(hardware) if hardware else [d0.hardware]
    tp_list = list(tp) if tp else [d0.tp]
    seeds = replication_seeds(base.seed, replications)
    slo_args = [(s.key, s.target) for s in parsed]
    packaged = load_catalog()

    candidates: list[_Candidate] = []
    rows: list[PlanRow] = []
    for hw in hw_list:
        for t in tp_list:
            row = PlanRow(hw, t, t * d0.pp, "ok")
            rows.append(row)
            prefix = "cluster.pools[0]"
            values = {f"{prefix}.deployment.hardware": hw, f"{prefix}.deployment.tp": t, f"{prefix}.replicas": 1}
            try:
                scenario = apply_values(base, values, source=f"candidate {hw} tp={t}")
                resolve(scenario, packaged)
            except ScenarioError as e:
                row.status = "skipped"
                row.reason = "; ".join(m for _, m in e.errors)
                continue
            candidates.append(_Candidate(row, scenario, _search(max_replicas)))

    with open_executor(executor, workers) as ex:
        active = []
        for c in candidates:
            c.pending = next(c.search)
            active.append(c)
        while active:
            if progress is not None:
                progress(", ".join(f"{c.row.hardware}/tp{c.row.tp} x{c.pending}" for c in active))
            jobs: list[tuple[str, int, list[tuple[str, float]]]] = []
            for c in active:
                assert c.pending is not None
                js = scenario_json(apply_values(c.scenario, {"cluster.pools[0].replicas": c.pending}))
                jobs.extend((js, seed, slo_args) for seed in seeds)
            results: list[dict[str, Any]] = [{}] * len(jobs)
            for i, res in map_unordered(evaluate, jobs, ex):
                results[i] = res
            still = []
            for j, c in enumerate(active):
                assert c.pending is not None
                mine = results[j * len(seeds) : (j + 1) * len(seeds)]
                stats = {s.key: _mean([m["stats"][s.key] for m in mine]) for s in parsed}
                cost = {k: _mean([m["summary"][k] for m in mine]) for k in _COST}
                ev = Evaluation(c.pending, _met(parsed, stats, attainment), stats, **cost)
                prev = c.row.evaluations[-1] if c.row.evaluations else None
                c.tried[c.pending] = ev
                c.row.evaluations.append(ev)
                if (
                    plateau is not None
                    and prev is not None
                    and not any(e.met for e in c.row.evaluations)
                    and _flat(parsed, prev.stats, ev.stats, attainment, plateau)
                ):
                    c.search.close()
                    c.row.status = "infeasible"
                    c.row.stats = ev.stats
                    c.row.reason = (
                        f"more replicas do not help: from {prev.replicas} to {ev.replicas} replicas "
                        + ", ".join(
                            f"{f.key} {_fmt(prev.stats[f.key])} -> {_fmt(ev.stats[f.key])} (target {f.target:g})"
                            for f in _failing(parsed, ev.stats, attainment)
                        )
                    )
                    continue
                try:
                    c.pending = c.search.send(ev.met)
                    still.append(c)
                except StopIteration as stop:
                    _finish(c, stop.value, max_replicas)
            active = still

    ok = [r for r in rows if r.status == "ok"]
    if rank_by == "usd_per_mtok":
        ok.sort(key=lambda r: (_inf(r.usd_per_mtok_output), _inf(r.usd_per_hour)))
    else:
        ok.sort(key=lambda r: (_inf(r.usd_per_hour), _inf(r.usd_per_mtok_output)))
    ranked = ok + [r for r in rows if r.status == "infeasible"] + [r for r in rows if r.status == "skipped"]
    return PlanResult(dict(slos), attainment, replications, max_replicas, seeds, ranked)


def _inf(x: float | None) -> float:
    return math.inf if x is None else x


def _finish(c: _Candidate, found: int | None, max_replicas: int) -> None:
    row = c.row
    if found is None:
        row.status = "infeasible"
        row.reason = f"{max_replicas} replicas do not meet the SLOs"
        last = c.tried.get(max_replicas)
        if last is not None:
            row.stats = last.stats
        return
    ev = c.tried[found]
    row.replicas = found
    row.gpus = found * row.gpus_per_replica
    row.usd_per_hour = ev.usd_per_hour
    row.usd_per_mtok_output = ev.usd_per_mtok_output
    row.usd_per_task = ev.usd_per_task
    row.stats = ev.stats
