"""The search: for each candidate, the fewest replicas that meet every SLO at 95% confidence.

1. **Bound.** Each runnable candidate starts at its analytic lower bound (:mod:`agentsim.planning.plan.bounds`):
   counts below it cannot keep up, so they are never simulated.
2. **Bracket, on short runs.** A short run simulates the warm-up and ``screen`` (a quarter, by default) of the
   measured window, with ``screen_replications`` seeds. From the bound, counts grow geometrically (x1.5, at
   least +1) until the short runs' pooled statistics are within the targets; then bisection between the last
   count that missed and the first that did not. A count that misses its targets early is taken to miss them:
   a queue that already fails its targets does not recover later, and a slowly growing one only gets worse.
3. **Confirm, at full length.** The first count whose short runs passed is simulated at the scenario's full
   horizon with ``replications`` seeds. An SLO whose interval straddles its target (``marginal``) gets two more
   seeds at a time, up to ``max_replications``. If the count meets every SLO at 95% confidence it is the answer
   (the count below missed its short runs); if not, the next count up is confirmed the same way.
4. **Latency floors.** When doubling the replicas improves none of the failing statistics by more than
   ``plateau`` (2%), more replicas do not help (a single long prefill longer than the TTFT target, say): the
   candidate is ``infeasible`` at once instead of searching up to ``max_replicas``.
5. **Cheapest first (branch and bound).** Once a candidate meets the SLOs at some cost, a candidate whose
   fewest possible replicas already cost more (its bound, or the counts it has seen miss) cannot be the answer:
   with ``prune`` (the default) its search stops there and its row says so (``dominated``); ``prune=False``
   searches every candidate to its answer (a full table and frontier).

All candidates advance together: each round submits every pending count's runs to the executor at once (local
processes, or a Dask cluster). Every candidate uses the same seeds (common random numbers), so their
differences are not noise of different draws.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from agentsim import spec
from agentsim._version import __version__
from agentsim.analysis.accuracy import resolved_accuracy, with_regime
from agentsim.errors import ScenarioError
from agentsim.planning.plan import space as sp
from agentsim.planning.plan.bounds import lower_bound
from agentsim.planning.plan.confidence import Decision, Estimate, combine, estimate
from agentsim.planning.plan.result import RANK_KEYS, Evaluation, PlanResult, PlanRow, SloEstimate, ranking_warnings
from agentsim.planning.plan.slo import Sample, Slo, parse_slo, sample, values
from agentsim.planning.sweep import map_unordered, open_executor, replication_seeds, runs_at_once

ProgressFn = Callable[[str], None]
"""``progress(line)``: one line per evaluation decided (and per round started)."""

SUMMARY_KEYS = ("usd_per_hour", "usd_per_mtok_output", "usd_per_task", "output_tokens_per_s")


def evaluate(scenario_json: str, seed: int, slos: Sequence[tuple[str, float]], horizon_s: float) -> dict[str, Any]:
    """Worker: simulate the scenario (JSON) with ``seed`` up to ``horizon_s``; return each SLO's
    :class:`~agentsim.planning.plan.slo.Sample`, the cost fields and the speed figures. Top-level, so
    executors can pickle it."""
    from agentsim import api

    data = json.loads(scenario_json)
    data["seed"] = seed
    data["horizon_s"] = horizon_s
    data["sample_interval_s"] = min(float(data.get("sample_interval_s", horizon_s)), horizon_s)
    scenario = api.validate_data(data, "plan run")
    r = api.run(scenario, max_memory_mb=0)  # plan() checked the candidates' estimates before the search
    # The columns an SLO needs, read from the run's files one at a time: not its whole call table (issue 16).
    calls, tasks = r.columns("calls"), r.columns("tasks")
    samples = {}
    for key, target in slos:
        s = parse_slo(key, target)
        samples[key] = sample(s, values(s, r.scenario, calls, tasks))
    summary = {k: r.summary.get(k) for k in SUMMARY_KEYS}
    tpot = (r.summary.get("tpot_s") or {}).get("mean")
    summary["tokens_per_s_per_user"] = 1.0 / tpot if tpot else None
    summary["task_p95_s"] = _task_p95(r.scenario, tasks)
    # each pool's prompt tokens computed per output token, as the run measured it for its own accuracy entries
    # (a null ratio: the pool only prefills)
    summary["prompt_per_output"] = {
        pool: math.inf if regime["prompt_per_output"] is None else regime["prompt_per_output"]
        for pool, e in (r.summary.get("accuracy") or {}).items() if (regime := e.get("regime")) is not None
    }  # fmt: skip
    return {"samples": samples, "summary": summary}


def _task_p95(scenario: spec.Scenario, tasks: Any) -> float | None:
    """The 95th percentile of the window's task durations, as the summary estimates its task percentiles: tasks
    still running at the horizon count by their age (Kaplan-Meier; a lower bound when the estimate does not reach
    95%), not dropped -- dropping them would make an overloaded candidate look fast."""
    from agentsim.analysis.distributions import censored_dist
    from agentsim.analysis.rows import col

    start = col(tasks, "start_s")
    done = col(tasks, "done_s")
    w = start >= scenario.warmup_s
    finished = ~np.isnan(done) & w
    running = np.isnan(done) & w
    d = censored_dist(done[finished] - start[finished], scenario.horizon_s - start[running], percentiles=(95,))
    p95: float | None = d["p95"]
    return p95


@dataclass
class _Cand:
    row: PlanRow
    cand: sp.Candidate
    lo: int  # every count <= lo misses (below the bound, or seen to miss)
    usd_per_replica_hour: float  # what one more replica of the target pool(s) costs
    usd_fixed_hour: float  # the other pools of the scenario
    passed: int | None = None  # the fewest count whose short runs passed
    hi: int | None = None  # the fewest count confirmed to meet
    pending: int | None = None
    stage: Literal["screen", "full"] = "screen"
    samples: dict[int, list[dict[str, Sample]]] = field(default_factory=dict)
    summaries: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    screened: dict[int, Evaluation] = field(default_factory=dict)
    tried: dict[int, Evaluation] = field(default_factory=dict)
    done: bool = False

    def cost(self, n: int) -> float:
        return self.usd_fixed_hour + n * self.usd_per_replica_hour


def _next_up(n: int) -> int:
    return max(n + 1, math.ceil(n * 1.5))


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [float(x) for x in xs if x is not None]
    if not vals or len(vals) < len(xs):
        return None
    return math.inf if any(math.isinf(v) for v in vals) else math.fsum(vals) / len(vals)


def _est(e: Estimate) -> SloEstimate:
    return SloEstimate(e.value, e.lo, e.hi, e.decision)


def plan(
    base: spec.Scenario | Mapping[str, Any],
    slos: Mapping[str, float],
    *,
    space: sp.Space | None = None,
    overrides: Sequence[str] = (),
    hardware: Sequence[str] | None = None,
    tp: Sequence[int] | None = None,
    attainment: float = 0.9,
    max_replicas: int = 256,
    replications: int = 3,
    max_replications: int = 10,
    screen: float = 0.25,
    screen_replications: int = 2,
    prune: bool = True,
    rank_by: Literal["usd_per_hour", "usd_per_mtok"] = "usd_per_hour",
    plateau: float | None = 0.02,
    executor: Any = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    max_memory_mb: float | None = None,
) -> PlanResult:
    """The fewest replicas of each candidate deployment meeting every SLO at 95% confidence, ranked by cost.

    ``base`` is a scenario or its raw data; ``overrides`` (``path=value``) are applied to it together with each
    candidate's axis values before validation. ``space`` restricts or extends the axes (``hardware`` and ``tp``
    are shortcuts for its two most used ones). See the package and module docstrings for the rest.

    Before the search, each candidate's run is estimated (:mod:`agentsim.preflight`) at ``max_replicas``:
    :class:`~agentsim.preflight.MemoryLimitError` if the largest, times the local workers, is above
    ``max_memory_mb`` (default: half the machine's memory; 0: no limit)."""
    from agentsim import preflight
    from agentsim.api import source_digest
    from agentsim.catalog import load_catalog
    from agentsim.resolve import resolve

    wall0 = time.perf_counter()
    if not slos:
        raise ValueError("give at least one SLO")
    parsed = [parse_slo(k, v) for k, v in slos.items()]
    if not 0 < attainment <= 1:
        raise ValueError(f"attainment must be in (0, 1], got {attainment}")
    if max_replicas < 1:
        raise ValueError(f"max_replicas must be >= 1, got {max_replicas}")
    if not 2 <= replications <= max_replications:
        raise ValueError(f"need 2 <= replications ({replications}) <= max_replications ({max_replications})")
    if not 0 < screen <= 1:
        raise ValueError(f"screen must be in (0, 1], got {screen}")
    if screen_replications < 1:
        raise ValueError(f"screen_replications must be >= 1, got {screen_replications}")
    if rank_by not in RANK_KEYS:
        raise ValueError(f"rank_by must be one of {', '.join(RANK_KEYS)}, got {rank_by!r}")
    data = base.model_dump(mode="json") if isinstance(base, spec.Scenario) else dict(base)
    sp_ = space or sp.Space()
    if hardware is not None or tp is not None:
        sp_ = sp.Space(**{**sp_.__dict__, **({"hardware": hardware} if hardware else {}), **({"tp": tp} if tp else {})})
    packaged = load_catalog()
    moe = {k: m.is_moe for k, m in packaged.models.items()}
    has_presets = "preset" in spec.EngineSpec.model_fields
    cands = sp.candidates(data, overrides, sp_, moe, has_presets)
    if not cands:
        raise ValueError("the search space is empty")
    seed0 = int(data.get("seed", 0)) if not isinstance(base, spec.Scenario) else base.seed
    seeds = replication_seeds(seed0, max_replications)
    slo_args = [(s.key, s.target) for s in parsed]

    rows: list[PlanRow] = []
    work: list[_Cand] = []
    estimates: list[preflight.Estimate] = []
    horizon = warmup = 0.0
    for c in cands:
        row = PlanRow(c.label, c.model, c.hardware, c.tp, c.pp, c.parallel, c.precision, c.kv_precision,
                      c.max_num_seqs, c.preset, c.topology, c.gpus_per_replica, "meets")  # fmt: skip
        rows.append(row)
        minimum = sp.min_total(c.topology)
        try:
            scenario = sp.validate(c, minimum, f"candidate {c.label}")
            resolved = resolve(scenario, packaged)
        except ScenarioError as e:
            row.status = "skipped"
            row.reason = "; ".join(m for _, m in e.errors)
            continue
        horizon, warmup = scenario.horizon_s, scenario.warmup_s
        dep = resolved.pools[0].plan.spec.deployment
        row.engine = {"kv_precision": dep.kv_precision, **dep.engine.model_dump(mode="json", exclude_none=True)}
        targets = [0, 1] if c.topology != "aggregated" else [0]
        # the plan warns of its answer and ranking itself; until a run says the candidate's regime
        # (analysis.accuracy.regime_of; _judge), its class's figures over all its rows
        accuracy, _ = resolved_accuracy(resolved)
        row.accuracy = [{"pool": name, **accuracy[name]} for name in (resolved.pools[i].name for i in targets)]
        bound = lower_bound(resolved, targets, parsed, minimum)
        row.lower_bound = bound.replicas
        per = resolved.pools[0].rates.usd_per_replica_hour
        fixed = sum(p.rates.usd_per_replica_hour * p.rates.replicas for i, p in enumerate(resolved.pools)
                    if i not in targets) + (resolved.tools.usd_per_replica_hour if resolved.tools else 0.0)  # fmt: skip
        if bound.replicas > max_replicas:
            row.status = "infeasible"
            row.reason = f"the analytic bound needs {bound.replicas} replicas > max_replicas ({max_replicas})"
            continue
        work.append(_Cand(row, c, bound.replicas - 1, per, fixed, pending=bound.replicas))
        estimates.append(preflight.estimate(resolved, replicas=max_replicas))
    if estimates:
        limit = preflight.default_limit_mb() if max_memory_mb is None else max_memory_mb
        at_once = runs_at_once(executor, workers)
        preflight.check_estimates(estimates, limit, at_once)
    short = warmup + screen * (horizon - warmup)
    simulations = 0

    with open_executor(executor, workers) as ex:
        while True:
            if prune:
                _prune(work)
            active = [w for w in work if not w.done and w.pending is not None]
            if not active:
                break
            jobs: list[tuple[str, int, list[tuple[str, float]], float]] = []
            owners: list[_Cand] = []
            for w in active:
                assert w.pending is not None
                js = json.dumps(sp.with_replicas(w.cand, w.pending), sort_keys=True)
                if w.stage == "screen" and short < horizon:
                    todo = [(seeds[r], short) for r in range(screen_replications)]
                else:
                    w.stage = "full"
                    have = len(w.samples.get(w.pending, []))
                    want = replications if have == 0 else min(max_replications, have + 2)
                    todo = [(seeds[r], horizon) for r in range(have, want)]
                for seed, length in todo:
                    jobs.append((js, seed, slo_args, length))
                    owners.append(w)
            if progress is not None:
                progress(f"round: {len(jobs)} runs for " + ", ".join(f"{w.row.label} x{w.pending}" for w in active))
            results: list[dict[str, Any]] = [{}] * len(jobs)
            for i, res in map_unordered(evaluate, jobs, ex):
                results[i] = res
            simulations += len(jobs)
            batch: dict[int, list[dict[str, Any]]] = {}
            for w, res in zip(owners, results, strict=True):
                batch.setdefault(id(w), []).append(res)
            for w in active:
                length = short if w.stage == "screen" else horizon
                _advance(w, batch.get(id(w), []), parsed, attainment, max_replications, max_replicas, plateau,
                         length, progress)  # fmt: skip

    ranked = _rank(rows, rank_by)
    return PlanResult(
        warnings=ranking_warnings(ranked, rank_by, ttft=any(s.metric == "ttft" for s in parsed)),
        slos=dict(slos),
        attainment=attainment,
        replications=replications,
        max_replications=max_replications,
        max_replicas=max_replicas,
        seeds=seeds,
        rows=ranked,
        scenario=data,
        overrides=list(overrides),
        model=cands[0].model,
        agentsim_version=__version__,
        source_sha256=source_digest(),
        wall_s=time.perf_counter() - wall0,
        simulations=simulations,
    )


def _prune(work: list[_Cand]) -> None:
    """Stop every candidate whose fewest possible replicas cost more than the cheapest answer found."""
    answers = [w.cost(w.hi) for w in work if w.done and w.hi is not None]
    if not answers:
        return
    best = min(answers)
    for w in work:
        if w.done or w.pending is None:
            continue
        least = w.cost(w.lo + 1)
        if least > best * (1 + 1e-9):
            w.done = True
            w.pending = None
            w.row.status = "dominated"
            w.row.reason = (f"cannot be the cheapest: {w.lo + 1}+ replicas cost ${least:.4g}/hour or more, the "
                            f"answer ${best:.4g}/hour")  # fmt: skip
            if w.row.evaluations:
                w.row.slos = w.row.evaluations[-1].slos


def _advance(
    w: _Cand,
    results: list[dict[str, Any]],
    slos: Sequence[Slo],
    attainment: float,
    max_replications: int,
    max_replicas: int,
    plateau: float | None,
    length: float,
    progress: ProgressFn | None,
) -> None:
    n = w.pending
    assert n is not None
    screening = w.stage == "screen"
    if screening:
        samples = [r["samples"] for r in results]
        summaries = [r["summary"] for r in results]
    else:
        w.samples.setdefault(n, []).extend(r["samples"] for r in results)
        w.summaries.setdefault(n, []).extend(r["summary"] for r in results)
        samples, summaries = w.samples[n], w.summaries[n]
    ests = {s.key: estimate(s, [x[s.key] for x in samples], attainment) for s in slos}
    if screening:
        # Short runs bracket the answer by their pooled statistics: within every target or not.
        ok = all(_within(s, ests[s.key].value, attainment) for s in slos)
        decision: Decision = "meets" if ok else "fails"
    else:
        decision = combine([e.decision for e in ests.values()])
        if decision == "marginal" and len(samples) < max_replications:
            return  # more seeds at this count next round
    ev = Evaluation(
        replicas=n,
        replications=len(samples),
        horizon_s=length,
        decision=decision,
        slos={k: _est(e) for k, e in ests.items()},
        screening=screening,
        **{k: _mean([s.get(k) for s in summaries]) for k in (*SUMMARY_KEYS, "tokens_per_s_per_user", "task_p95_s")},
        prompt_per_output=_mean_ratios([s.get("prompt_per_output") or {} for s in summaries]),
    )
    w.row.evaluations.append(ev)
    (w.screened if screening else w.tried)[n] = ev
    _say(progress, w, ev)
    if screening:
        _bracket(w, n, ok, ev, slos, plateau, max_replicas)
    else:
        _confirm(w, n, decision == "meets", max_replicas)


def _within(slo: Slo, value: float | None, attainment: float) -> bool:
    if value is None:
        return False
    return value >= attainment if slo.stat is None else value <= slo.target


def _bracket(w: _Cand, n: int, ok: bool, ev: Evaluation, slos: Sequence[Slo], plateau: float | None,
             max_replicas: int) -> None:  # fmt: skip
    """After short runs at ``n``: the next count to screen, or the count to confirm at full length."""
    if ok:
        w.passed = n
    else:
        w.lo = max(w.lo, n)
        half = [e for e in w.screened.values() if 2 * e.replicas <= n]
        if w.passed is None and plateau is not None and half:
            prev = max(half, key=lambda e: e.replicas)
            if _flat(slos, prev, ev, plateau):
                _finish(w, None, f"more replicas do not help: from {prev.replicas} to {n} replicas "
                        + ", ".join(f"{k} {_fmt(prev.slos[k].value)} -> {_fmt(e.value)}"
                                    for k, e in ev.slos.items() if e.decision != "meets"))  # fmt: skip
                return
    if w.passed is None:
        if n >= max_replicas:
            _finish(w, None, f"{max_replicas} replicas do not meet the SLOs")
            return
        w.pending = min(max_replicas, _next_up(n))
        return
    if w.passed - w.lo <= 1:
        w.pending = w.passed
        w.stage = "full"
        return
    w.pending = (w.lo + w.passed) // 2


def _confirm(w: _Cand, n: int, met: bool, max_replicas: int) -> None:
    """After full-length runs at ``n``: the answer, or the next count up to confirm."""
    if met:
        w.hi = n
        _finish(w, n, None)
        return
    w.lo = max(w.lo, n)
    if n >= max_replicas:
        _finish(w, None, f"{max_replicas} replicas do not meet the SLOs")
        return
    w.pending = n + 1
    w.stage = "full"


def _flat(slos: Sequence[Slo], before: Evaluation, after: Evaluation, plateau: float) -> bool:
    """No failing SLO statistic improved by more than ``plateau`` between two counts (both finite)."""
    failing = [s for s in slos if after.slos[s.key].decision != "meets"]
    if not failing:
        return False
    for s in failing:
        a, b = before.slos[s.key].value, after.slos[s.key].value
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return False
        if (b > a * (1 + plateau)) if s.stat is None else (b < a * (1 - plateau)):
            return False
    return True


def _finish(w: _Cand, found: int | None, reason: str | None) -> None:
    w.done = True
    w.pending = None
    row = w.row
    if found is None:
        marginal = [e for e in w.tried.values() if e.decision == "marginal"]
        row.status = "marginal" if marginal else "infeasible"
        last = row.evaluations[-1] if row.evaluations else None
        if marginal:
            pick = min(marginal, key=lambda e: e.replicas)
            reason = (f"no count met the SLOs at 95% confidence within {pick.replications} replications; "
                      f"{pick.replicas} replicas might")  # fmt: skip
            _fill(row, pick)
            _judge(w, pick)
        elif last is not None:
            row.slos = last.slos
        row.reason = reason
        return
    _fill(row, w.tried[found])
    _judge(w, w.tried[found])
    row.status = "meets"


def _mean_ratios(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each pool's prompt tokens computed per output token, the mean over the runs that measured it."""
    pools = dict.fromkeys(k for r in runs for k in r)
    return {k: sum(vals) / len(vals) for k in pools if (vals := [r[k] for r in runs if k in r])}


def _judge(w: _Cand, ev: Evaluation) -> None:
    """The row's accuracy entries with the regime the chosen count's runs put each sized pool in
    (:func:`agentsim.analysis.accuracy.with_regime`): the figures its model error and warnings rest on."""
    w.row.accuracy = [with_regime(e, ev.prompt_per_output.get(e["pool"])) for e in w.row.accuracy]


def _fill(row: PlanRow, ev: Evaluation) -> None:
    row.replicas = ev.replicas
    row.gpus = ev.replicas * row.gpus_per_replica
    row.usd_per_hour = ev.usd_per_hour
    row.usd_per_mtok_output = ev.usd_per_mtok_output
    row.usd_per_task = ev.usd_per_task
    row.tokens_per_s_per_user = ev.tokens_per_s_per_user
    row.task_p95_s = ev.task_p95_s
    row.slos = ev.slos


def _say(progress: ProgressFn | None, w: _Cand, ev: Evaluation) -> None:
    if progress is None:
        return
    parts = []
    for k, e in ev.slos.items():
        ci = "" if e.lo is None else f" [{_fmt(e.lo)}, {_fmt(e.hi)}]"
        parts.append(f"{k} {_fmt(e.value)}{ci}")
    kind = f"{ev.replications} short runs" if ev.screening else f"{ev.replications} runs"
    progress(f"{w.row.label}: {ev.replicas} replicas {ev.decision} ({kind}; {'; '.join(parts)})")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _inf(x: float | None) -> float:
    return math.inf if x is None else x


def _rank(rows: list[PlanRow], rank_by: str) -> list[PlanRow]:
    ok = [r for r in rows if r.status == "meets"]
    keys = RANK_KEYS[rank_by]
    ok.sort(key=lambda r: tuple(_inf(getattr(r, k)) for k in keys))
    order = ("marginal", "dominated", "infeasible", "skipped")
    return ok + [r for s in order for r in rows if r.status == s]
