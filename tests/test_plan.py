"""Capacity planning (``agentsim.planning.plan``): the SLO grammar, censored statistics, the replica search, a
case whose answer is known analytically, skipped candidates, ranking, and the ``agentsim plan`` command."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from agentsim import spec
from agentsim.api import load_scenario
from agentsim.cli import app
from agentsim.planning.plan import _percentile, _search, _values, parse_slo, plan, statistic

D = 0.1  # the constant step time (alpha) of the analytic case, seconds


def md_scenario(rate: float, *, hardware: str = "h100", model: str = "llama-3.1-8b") -> dict[str, Any]:
    """One-token calls, one call per step (``max_num_seqs: 1``), every step exactly ``D``: each replica is a
    deterministic server of service time ``D``; Poisson arrivals; least-load routing; no KV limit."""
    return {
        "name": "md-c",
        "seed": 0,
        "horizon_s": 40.0,
        "warmup_s": 5.0,
        "sample_interval_s": 40.0,
        "workload": [
            {
                "profile": {
                    "kind": "fixed",
                    "prompt_tokens": {"kind": "constant", "value": 8},
                    "output_tokens": {"kind": "constant", "value": 1},
                },
                "arrivals": {"kind": "poisson", "rate_per_s": rate},
            }
        ],
        "cluster": {
            "pools": [
                {
                    "name": "pool",
                    "deployment": {
                        "model": model,
                        "hardware": hardware,
                        "tp": 1,
                        "engine": {"max_num_seqs": 1, "kv_capacity_tokens": 10**9},
                    },
                    "perf": {"kind": "linear", "alpha_s": D},
                    "replicas": 1,
                }
            ],
            "router": {"kind": "least-load"},
        },
    }


# --------------------------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("key", "metric", "stat"),
    [
        ("ttft_p99_s", "ttft", 99.0),
        ("task_p95_s", "task", 95.0),
        ("tpot_p99.9_s", "tpot", 99.9),
        ("e2e_mean_s", "e2e", "mean"),
        ("ttft_s", "ttft", None),
        ("task_s", "task", None),
    ],
)
def test_slo_grammar(key: str, metric: str, stat: object) -> None:
    s = parse_slo(key, 2)
    assert (s.key, s.metric, s.stat, s.target) == (key, metric, stat, 2.0)


@pytest.mark.parametrize(("key", "value"), [("latency_p99_s", 1), ("ttft_p99", 1), ("ttft_p100_s", 1), ("ttft_s", 0)])
def test_slo_grammar_rejects(key: str, value: float) -> None:
    with pytest.raises(ValueError, match="SLO"):
        parse_slo(key, value)


def test_percentile_is_numpys_and_handles_infinity() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 100):
        v = rng.exponential(size=n)
        for q in (0.5, 50, 90, 95, 99, 99.9):
            assert _percentile(v, q) == pytest.approx(float(np.percentile(v, q)), rel=1e-12)
    v = np.array([1.0, 2.0, math.inf, math.inf])
    assert _percentile(v, 0) == 1.0 and _percentile(v, 30) == pytest.approx(1.9)
    assert _percentile(v, 50) == math.inf  # interpolating towards an infinite value


def test_unfinished_work_past_its_target_counts_as_a_miss() -> None:
    """A task running since 7 s at a 100 s horizon takes > 93 s: with a 50 s target that is a certain miss
    (inf); with a 200 s target its outcome is unknown and it is left out. The window starts at 5 s."""
    s = load_scenario(md_scenario(1.0) | {"horizon_s": 100.0})
    tasks = pa.table({"start_s": [1.0, 6.0, 7.0, 95.0], "done_s": [11.0, 26.0, None, None]})
    calls = pa.table({k: pa.array([], pa.float64()) for k in ("issue_s", "first_token_s", "done_s")})
    v = _values(parse_slo("task_p50_s", 50), s, calls, tasks)
    assert sorted(v.tolist()) == [20.0, math.inf]  # task 1 is in the warm-up, task 4 is still young
    assert _values(parse_slo("task_p50_s", 200), s, calls, tasks).tolist() == [20.0]
    assert statistic(parse_slo("task_mean_s", 50), v) == math.inf
    assert statistic(parse_slo("task_s", 50), v) == 0.5  # attainment: one of the two known tasks
    assert statistic(parse_slo("task_s", 50), np.array([])) is None


# --------------------------------------------------------------------------------------------- search


def _run_search(max_n: int, need: int) -> tuple[int | None, list[int]]:
    gen = _search(max_n)
    tried = [next(gen)]
    try:
        while True:
            tried.append(gen.send(tried[-1] >= need))
    except StopIteration as stop:
        return stop.value, tried


@pytest.mark.parametrize("max_n", [1, 2, 3, 7, 8, 33, 256])
def test_search_finds_the_fewest_replicas(max_n: int) -> None:
    """Against every threshold of a monotone oracle: exact, each count tried at most once, and
    O(log max) evaluations."""
    for need in range(1, max_n + 3):
        found, tried = _run_search(max_n, need)
        assert found == (need if need <= max_n else None), (max_n, need, tried)
        assert len(tried) == len(set(tried)) and max(tried) <= max_n
        assert len(tried) <= 2 * math.ceil(math.log2(max_n)) + 2


# --------------------------------------------------------------------------------------------- analytic case


@pytest.mark.parametrize(("rate", "slos", "attainment", "expected"), [
    (45.0, {"ttft_p50_s": 1.0}, 0.9, 5),   # lambda D = 4.5
    (25.0, {"ttft_s": 1.0}, 0.5, 3),       # lambda D = 2.5; "half the calls within 1 s" is p50 <= 1 s
])  # fmt: skip
def test_plan_finds_the_stability_boundary(
    rate: float, slos: dict[str, float], attainment: float, expected: int
) -> None:
    """Analytic case: ``c`` replicas, each a deterministic server of service time ``D`` (one 1-token call per
    step of constant duration ``D``), fed Poisson arrivals at rate ``lambda`` by least-load routing.

    * ``c < lambda D`` (utilisation ``rho = lambda D / c > 1``): the backlog grows at ``lambda - c / D`` calls/s,
      balanced over the replicas, so a call issued at ``t`` waits ``~ (rho - 1) t`` (fluid limit). With
      ``lambda D = k + 1/2`` and ``c = k``, at the window's median issue time ``t = (5 + 40) / 2`` the median
      TTFT is ``~ 22.5 / (2k)`` s: 2.8 s for ``k = 4`` and 5.6 s for ``k = 2``, and more for smaller ``c``.
    * ``c > lambda D`` (``rho <= 0.9`` here): a stable M/D/c-like queue whose mean wait is a fraction of ``D``
      (M/D/5 at 0.9: ~0.08 s; join-shortest-queue is close to it), so the median TTFT is ~``D`` = 0.1 s.

    A median target of 1 s lies far between the two (a factor >= 2.8 from either side), so the answer is
    exactly the smallest stable count, ``c* = floor(lambda D) + 1``: 5 for ``lambda D = 4.5``, 3 for 2.5.
    """
    result = plan(load_scenario(md_scenario(rate)), slos, attainment=attainment, replications=2, workers=1)
    (row,) = result.rows
    assert row.status == "ok", row
    assert row.replicas == expected == math.floor(rate * D) + 1
    tried = {e.replicas: e.met for e in row.evaluations}
    assert tried[expected] and not tried[expected - 1]  # both sides of the boundary were evaluated
    assert row.usd_per_hour == pytest.approx(expected * 1.30)  # h100 at the catalog's rental_3y price


def test_plan_skips_what_cannot_run_and_ranks_by_cost() -> None:
    """Linear perf ignores the hardware, so every runnable candidate needs the same 5 replicas and the
    ranking is by price: h100 ($1.30/GPU-h) before h200 ($1.60). tp 3 does not divide the 8-GPU domain; a
    405B model in bf16 does not fit one 80 GB H100. Two workers: the candidates advance in parallel."""
    result = plan(
        load_scenario(md_scenario(45.0)),
        {"ttft_p50_s": 1.0},
        hardware=["h200", "h100"],
        tp=[3, 1],
        replications=1,
        workers=2,
    )
    got = [(r.hardware, r.tp, r.status, r.replicas) for r in result.rows]
    assert got == [
        ("h100", 1, "ok", 5), ("h200", 1, "ok", 5), ("h200", 3, "skipped", None), ("h100", 3, "skipped", None),
    ]  # fmt: skip
    assert "not a divisor" in (result.rows[-1].reason or "")
    assert [r.usd_per_hour for r in result.rows[:2]] == pytest.approx([6.5, 8.0])
    table = result.to_table()
    assert table.column("rank").to_pylist() == [1, 2, None, None]
    assert "ttft_p50_s" in table.column_names

    big = plan(load_scenario(md_scenario(45.0, model="llama-3.1-405b")), {"ttft_p50_s": 1.0}, workers=1)
    assert big.rows[0].status == "skipped" and "usable 72.0 GB" in (big.rows[0].reason or "")


def test_plan_reports_infeasible() -> None:
    result = plan(load_scenario(md_scenario(45.0)), {"ttft_p50_s": 1.0}, max_replicas=3, replications=1, workers=1)
    row = result.rows[0]
    assert row.status == "infeasible" and row.replicas is None
    assert [e.replicas for e in row.evaluations] == [1, 2, 3]


def test_plan_stops_scaling_out_at_a_latency_floor() -> None:
    """No count of replicas gives a median TTFT below one step (``D`` = 0.1 s): once doubling from 8 to 16
    replicas leaves the (finite) failing statistic flat, the search stops instead of going on to 256."""
    base = load_scenario(md_scenario(45.0))
    row = plan(base, {"ttft_p50_s": 0.05}, replications=1, workers=1).rows[0]
    assert row.status == "infeasible" and "more replicas do not help" in (row.reason or "")
    assert [e.replicas for e in row.evaluations] == [1, 2, 4, 8, 16]
    assert row.stats["ttft_p50_s"] == pytest.approx(D, rel=0.01)
    row = plan(base, {"ttft_p50_s": 0.05}, replications=1, workers=1, plateau=None, max_replicas=32).rows[0]
    assert [e.replicas for e in row.evaluations] == [1, 2, 4, 8, 16, 32]
    assert row.reason == "32 replicas do not meet the SLOs"


# --------------------------------------------------------------------------------------------- command line


def test_cli_plan_json_and_out(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(md_scenario(25.0)))
    base = ["plan", str(scenario), "--slo", "ttft_p50_s=1", "--hardware", "h100,h200", "--tp", "1", "-r", "1"]
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--json", "-w", "1", "--out", str(tmp_path / "p.parquet")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(r["hardware"], r["replicas"]) for r in doc["rows"]] == [("h100", 3), ("h200", 3)]
    assert doc["slos"] == {"ttft_p50_s": 1.0}
    assert pq.read_table(tmp_path / "p.parquet").column("replicas").to_pylist() == [3, 3]

    res = runner.invoke(app, [*base, "-w", "1", "--out", str(tmp_path / "p.json")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "h100" in res.output and "results:" in res.output
    assert json.loads((tmp_path / "p.json").read_text())["rows"][0]["replicas"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "at least one --slo"),
        (["--slo", "ttft_p99_s"], "expected name=seconds"),
        (["--slo", "latency_s=2"], "unknown SLO"),
        (["--slo", "ttft_s=2", "--tp", "x"], "--tp"),
        (["--slo", "ttft_s=2", "--out", "plan.txt"], ".json, .parquet or .csv"),
        (["--slo", "ttft_s=2", "--rank", "cheap"], "--rank"),
    ],
)
def test_cli_plan_bad_input_exits_2(tmp_path: Path, extra: list[str], message: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(md_scenario(25.0)))
    res = CliRunner().invoke(app, ["plan", str(scenario), "-q", "-w", "1", *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_scenario_helper_is_valid() -> None:
    assert isinstance(load_scenario(md_scenario(1.0)), spec.Scenario)
