"""Operational laws and bookkeeping identities that every run must satisfy.

* Interactive response-time law for a closed population (``R = N / X - Z``) and Little's law for calls (open
  loop) and for tasks (closed loop: tasks in system = ``N`` minus the thinking agents), checked statistically
  over replications (99.8% Student-t intervals, ``helpers_validation``).
* Token conservation, task/call consistency, summary counts and the cost identity on runs of every built-in
  profile on a small heterogeneous cluster, plus one run tight enough on KV to preempt.
* Reproducibility: the same seed gives byte-identical Parquet files, another seed different calls.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from agentsim.analysis.rows import col
from agentsim.api import RunResult, load_scenario, run, save_run
from helpers_validation import estimate, fixed_profile, issued_between, latencies, linear_perf, scenario

PERF = linear_perf(0.01, 2e-5, 1e-7, 1e-4)
OUTPUT = {"kind": "exponential", "mean": 30.0}  # random task sizes so that agents do not stay in lockstep


# ============================================================================================ closed loop


@pytest.mark.validation
def test_interactive_response_time_law_and_littles_law_for_tasks() -> None:
    """``N`` agents, each thinking ``Z`` seconds between single-call tasks, on one replica.

    Over a window ``[t0, t1)`` of length ``tau``, take the tasks *completed* in the window: ``X = count / tau``
    and ``R`` their mean duration. For one agent, its completed cycles (think ``Z`` then task ``R_j``) tile
    the window except for the age of its cycle at ``t0`` (added) and at ``t1`` (removed); in stationarity the
    two ages have the same distribution, so ``E[sum (Z + R_j)] = N tau`` exactly, i.e. the population
    estimate ``X (R + Z)`` has mean ``N``: the interactive response-time law ``R = N / X - Z``.

    Little's law for tasks: the time-average number of tasks in the system (calls ``running + waiting`` on the
    replica, sampled every 0.05 s; a task here is one call with no gap) equals ``X R``, and equals ``N`` minus
    the time-average number of thinking agents, which is ``X Z`` by Little's law for the think station.
    """
    n_agents, z = 20, 1.0
    t0, t1 = 30.0, 230.0
    tau = t1 - t0
    pop, little, thinking = [], [], []
    for seed in range(6):
        s = scenario(
            profile=fixed_profile(200, OUTPUT), perf=PERF, seed=seed, horizon_s=t1, warmup_s=t0,
            arrivals={"kind": "closed", "agents": n_agents, "think_s": {"kind": "constant", "value": z},
                      "ramp_s": z},
            sample_interval_s=0.05,
        )
        r = run(s)
        done = col(r.tasks, "done_s")
        start = col(r.tasks, "start_s")
        m = (done >= t0) & (done < t1)
        x = m.sum() / tau
        resp = (done - start)[m].mean()
        t = col(r.replicas, "t_s")
        grid = (t >= t0) & (t < t1)
        in_system = (col(r.replicas, "running") + col(r.replicas, "waiting"))[grid].mean()
        pop.append(x * (resp + z))
        little.append(in_system / (x * resp))
        thinking.append(in_system + x * z)
        if seed == 0:
            print(f"\nclosed loop: X {x:.3f}/s, R {resp:.4f} s vs N/X - Z = {n_agents / x - z:.4f} s, "
                  f"tasks in system {in_system:.3f} vs X R = {x * resp:.3f}, N - X Z = {n_agents - x * z:.3f}")
    est = estimate(pop)
    print(f"X (R + Z): {est.describe(n_agents)}")
    est.assert_matches(n_agents, what="response-time law: X (R + Z) = N")
    est = estimate(little)
    print(f"tasks in system / (X R): {est.describe(1.0)}")
    est.assert_matches(1.0, what="Little's law for tasks")
    est = estimate(thinking)
    print(f"tasks in system + X Z: {est.describe(n_agents)}")
    est.assert_matches(n_agents, what="tasks in system = N - thinking agents")


# ============================================================================================ open loop


@pytest.mark.validation
def test_littles_law_for_calls() -> None:
    """Poisson calls on two replicas (round robin). ``L`` = time-average of ``running + waiting`` summed over
    the replicas (sampled every 0.05 s: in stationarity the expectation of a sample at any fixed time is the
    time average), ``lambda`` = calls issued in the window per second, ``W`` = their mean time in the system
    (issue to done, all of them finished thanks to a tail after the window). The boundary terms of the
    sample-path identity (time inside the window of calls issued before it, time after it of calls issued in
    it) have equal expectations in stationarity, so ``E[L] = lambda W``.
    """
    lam = 30.0
    t0, t1 = 20.0, 120.0
    ratios = []
    for seed in range(6):
        s = scenario(
            profile=fixed_profile(200, OUTPUT), arrivals={"kind": "poisson", "rate_per_s": lam}, perf=PERF,
            seed=seed, horizon_s=t1 + 30.0, warmup_s=t0, sample_interval_s=0.05, replicas=2,
            router="round-robin",
        )
        r = run(s)
        t = col(r.replicas, "t_s")
        grid = (t >= t0) & (t < t1)
        occupancy = col(r.replicas, "running") + col(r.replicas, "waiting")
        # Two replicas sampled at the same instants: the time-average total is twice the mean per row.
        big_l = occupancy[grid].mean() * 2
        mask = issued_between(r.calls, t0, t1)
        w = latencies(r.calls, mask)["sojourn"].mean()
        lam_hat = mask.sum() / (t1 - t0)
        ratios.append(big_l / (lam_hat * w))
        if seed == 0:
            print(f"\nLittle (calls): L {big_l:.3f} vs lambda W = {lam_hat:.2f} x {w:.4f} = {lam_hat * w:.3f}")
    est = estimate(ratios)
    print(f"L / (lambda W): {est.describe(1.0)}")
    est.assert_matches(1.0, what="Little's law for calls")


# ============================================================================================ conservation

PROFILES = {"coding-agent": 24, "deep-research": 12, "support-agent": 24, "chat": 40}
WARMUP, HORIZON = 30.0, 300.0


TIGHT = "agent/tight-kv"
TIGHT_PROFILE = {
    "kind": "agent", "system_prompt_tokens": {"kind": "constant", "value": 500},
    "task_prompt_tokens": {"kind": "uniform", "low": 200, "high": 1500},
    "steps": {"kind": "uniform", "low": 1, "high": 5},
    "output_tokens": {"kind": "uniform", "low": 200, "high": 3000},
    "tool_result_tokens": {"kind": "uniform", "low": 0, "high": 500},
    "tool_s": {"kind": "exponential", "mean": 1.0},
}


def builtin_run(profile: str | dict[str, Any], agents: int, engine: dict[str, Any] | None = None) -> RunResult:
    """``profile`` on a small heterogeneous cluster: one H100 and one H200 replica of Llama-3.1-8B (roofline
    perf, KV capacity from memory unless ``engine`` says otherwise) behind a prefix-aware router."""
    s = load_scenario({
        "seed": 1, "horizon_s": HORIZON, "warmup_s": WARMUP, "sample_interval_s": 10.0,
        "workload": [{"profile": profile, "arrivals": {"kind": "closed", "agents": agents, "ramp_s": 20.0}}],
        "cluster": {
            "pools": [
                {"name": "h100", "deployment": {"model": "llama-3.1-8b", "hardware": "h100",
                                                "engine": engine or {}}, "replicas": 1},
                {"name": "h200", "deployment": {"model": "llama-3.1-8b", "hardware": "h200",
                                                "engine": {"max_num_seqs": 64, **(engine or {})}},
                 "replicas": 1},
            ],
            "router": {"kind": "prefix-aware"},
        },
    })
    return run(s)


@pytest.fixture(scope="module")
def builtin_runs() -> dict[str, RunResult]:
    runs = {p: builtin_run(p, n) for p, n in PROFILES.items()}
    # KV tight enough to preempt: admission reserves only the prompt, so 40 agents with outputs up to 3k tokens
    # on 16k-token replicas run out of KV while decoding.
    runs[TIGHT] = builtin_run(TIGHT_PROFILE, 40, {"kv_capacity_tokens": 16_000})
    return runs


def ints(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.int64)


def final_rows(r: RunResult) -> pa.Table:
    return r.replicas.filter(pa.array(col(r.replicas, "t_s") == r.scenario.horizon_s))


@pytest.mark.parametrize("name", [*PROFILES, TIGHT])
def test_token_conservation(builtin_runs: dict[str, RunResult], name: str) -> None:
    r = builtin_runs[name]
    calls, tasks = r.calls, r.tasks
    assert calls.num_rows > 50 and tasks.num_rows > 10
    prompt, cached = ints(calls, "prompt_tokens"), ints(calls, "cached_tokens")
    out, gen = ints(calls, "output_tokens"), ints(calls, "generated_tokens")
    done = ~np.isnan(col(calls, "done_s"))
    first = ~np.isnan(col(calls, "first_token_s"))
    preempted = int(ints(calls, "preemptions").sum())
    final = final_rows(r)
    assert final.num_rows == 2

    # Output tokens: every token the replicas generated belongs to exactly one call, finished or not.
    assert int(ints(final, "output_tokens").sum()) == int(gen.sum())
    assert (gen[done] == out[done]).all()
    assert (gen <= out).all() and (gen[first] >= 1).all() and (gen[~first] == 0).all()
    assert ((cached >= 0) & (cached < prompt)).all()  # at least one prompt token is always computed

    # Prompt tokens computed: every prefilled call computed prompt - cached; a call still prefilling at the
    # horizon computed part of it; a preempted call recomputed (so only the lower bound holds then).
    prefill = int(ints(final, "prefill_tokens").sum())
    lower = int((prompt - cached)[first].sum())
    in_replica = ~np.isnan(col(calls, "replica")) & ~first
    upper = lower + int((prompt - cached)[in_replica].sum())
    assert prefill >= lower
    if preempted == 0:
        assert prefill <= upper
        if not in_replica.any():
            assert prefill == lower
    else:
        assert name == TIGHT

    # Tasks: a completed task has all its planned calls, all completed; task columns are sums over calls.
    tid = ints(calls, "task_id")
    by_task = calls.group_by("task_id").aggregate([
        ("prompt_tokens", "sum"), ("cached_tokens", "sum"), ("output_tokens", "sum"), ("busy_s", "sum"),
        ("call_id", "count"), ("done_s", "count"),
    ])
    index = {t: i for i, t in enumerate(by_task.column("task_id").to_pylist())}
    rows = [index[t] for t in tasks.column("task_id").to_pylist()]
    agg = {k: np.asarray(by_task.column(k).to_pylist())[rows] for k in by_task.column_names}
    assert np.array_equal(agg["prompt_tokens_sum"], ints(tasks, "prompt_tokens"))
    assert np.array_equal(agg["cached_tokens_sum"], ints(tasks, "cached_tokens"))
    assert np.array_equal(agg["output_tokens_sum"], ints(tasks, "output_tokens"))
    np.testing.assert_allclose(agg["busy_s_sum"], col(tasks, "busy_s"), rtol=1e-12, atol=1e-12)
    assert np.array_equal(agg["call_id_count"], ints(tasks, "calls"))
    task_done = ~np.isnan(col(tasks, "done_s"))
    assert np.array_equal(agg["done_s_count"][task_done], ints(tasks, "calls")[task_done])
    assert np.array_equal(ints(tasks, "calls")[task_done], ints(tasks, "calls_planned")[task_done])
    assert set(tid.tolist()) == set(tasks.column("task_id").to_pylist())
    assert len(set(ints(calls, "call_id").tolist())) == calls.num_rows
    # A call's task is done no earlier than the call.
    t_done = dict(zip(tasks.column("task_id").to_pylist(), col(tasks, "done_s").tolist(), strict=True))
    call_done = col(calls, "done_s")
    assert all(t_done[t] >= d for t, d in zip(tid.tolist(), call_done.tolist(), strict=True)
               if not math.isnan(t_done[t]))

    # Summary counts are the tables' counts over the window (calls issued, tasks started at or after warm-up).
    s = r.summary
    win = col(calls, "issue_s") >= WARMUP
    assert s["calls_completed"] == int((win & done).sum())
    assert s["calls_unfinished"] == int((win & ~done).sum())
    twin = col(tasks, "start_s") >= WARMUP
    assert s["tasks_completed"] == int((twin & task_done).sum())
    assert s["tasks_unfinished"] == int((twin & ~task_done).sum())
    assert s["prompt_tokens"] == int(prompt[win & done].sum())
    assert s["cached_tokens"] == int(cached[win & done].sum())
    assert s["output_tokens"] == int(out[win & done].sum())
    print(f"\n{name}: {calls.num_rows} calls, {tasks.num_rows} tasks, {int((~done).sum())} unfinished, "
          f"{preempted} preemptions, prefill counter {prefill} (>= {lower})")


@pytest.mark.parametrize("name", [*PROFILES, TIGHT])
def test_cost_identity(builtin_runs: dict[str, RunResult], name: str) -> None:
    """Provisioned dollars split exactly into the calls' shares of busy time and the idle remainder."""
    r = builtin_runs[name]
    pools, calls = r.pools, r.calls
    assert pools.num_rows == 2
    for row in pools.to_pylist():
        assert row["calls_usd"] + row["idle_usd"] == pytest.approx(row["provisioned_usd"], rel=1e-9)
        assert row["provisioned_usd"] == pytest.approx(
            row["gpus"] * row["usd_per_gpu_hour"] * HORIZON / 3600.0, rel=1e-12)
        assert row["busy_s"] + row["idle_s"] == pytest.approx(row["replicas"] * HORIZON, rel=1e-12)
        in_pool = np.asarray(calls.column("pool").to_pylist(), dtype=object) == row["pool"]
        # The calls' busy shares add up to the pool's busy seconds (what makes the dollars add up).
        assert col(calls, "busy_s")[in_pool].sum() == pytest.approx(row["busy_s"], rel=1e-9)
        assert col(calls, "usd")[in_pool].sum() == pytest.approx(row["calls_usd"], rel=1e-12)
    assert col(calls, "usd").sum() == pytest.approx(col(pools, "calls_usd").sum(), rel=1e-12)
    window = HORIZON - WARMUP
    expected = sum(row["gpus"] * row["usd_per_gpu_hour"] for row in pools.to_pylist()) * window / 3600.0
    assert r.summary["usd_total"] == pytest.approx(expected, rel=1e-12)
    assert r.summary["gpu_hours"] == pytest.approx(col(pools, "gpus").sum() * window / 3600.0, rel=1e-12)


def test_some_run_preempts(builtin_runs: dict[str, RunResult]) -> None:
    """The tight-KV run exercises the preemption branch of the checks above."""
    assert int(ints(builtin_runs[TIGHT].calls, "preemptions").sum()) > 0


# ============================================================================================ reproducibility


def test_same_seed_same_bytes_other_seed_other_calls(tmp_path: Path) -> None:
    def go(seed: int, out: str) -> Path:
        s = load_scenario({
            "seed": seed, "horizon_s": 120.0, "sample_interval_s": 5.0,
            "workload": [{"profile": "support-agent", "arrivals": {"kind": "poisson", "rate_per_s": 0.5}},
                         {"profile": "chat", "arrivals": {"kind": "closed", "agents": 10}}],
            "cluster": {"pools": [{"name": "p", "deployment": {"model": "llama-3.1-8b", "hardware": "h100"},
                                   "replicas": 2}], "router": {"kind": "session-affinity"}},
        })
        return save_run(run(s), tmp_path / out)

    a, b, c = go(3, "a"), go(3, "b"), go(4, "c")
    for table in ("calls", "tasks", "replicas", "pools"):
        assert (a / f"{table}.parquet").read_bytes() == (b / f"{table}.parquet").read_bytes(), table
    assert (a / "calls.parquet").read_bytes() != (c / "calls.parquet").read_bytes()
