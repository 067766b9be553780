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
from agentsim.planning.plan import PlanResult, Space, parse_slo, plan, statistic
from agentsim.planning.plan.slo import percentile as _percentile
from agentsim.planning.plan.slo import values as _values

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

    * ``c < lambda D`` (utilisation ``rho = lambda D / c > 1``): the backlog grows without bound; the analytic
      bound (``floor(lambda D) + 1``) excludes these counts without simulating them.
    * ``c > lambda D`` (``rho <= 0.9`` here): a stable M/D/c-like queue whose median TTFT is ~``D`` plus a
      fraction of it, far below the 1 s target, so the answer is exactly ``floor(lambda D) + 1``.
    """
    result = plan(md_scenario(rate), slos, attainment=attainment, replications=3, workers=1, space=Space(tp=[1]))
    (row,) = result.rows
    assert row.status == "meets", row
    assert row.lower_bound == row.replicas == expected == math.floor(rate * D) + 1
    assert {e.replicas for e in row.evaluations} == {expected}  # nothing below the bound was simulated
    assert row.usd_per_hour == pytest.approx(expected * 1.30)  # h100 at the catalog's rental_3y price
    e = row.slos[next(iter(slos))]
    assert e.lo is not None and e.hi is not None and 0 < e.lo <= e.value <= e.hi  # a real interval


def test_plan_skips_what_cannot_run_and_ranks_by_cost() -> None:
    """Linear perf ignores the hardware, so every runnable candidate needs the same 5 replicas and the
    ranking is by price: h100 ($1.30/GPU-h) before h200 ($1.60). tp 3 does not divide the 8-GPU domain; a
    405B model in bf16 does not fit one 80 GB H100. Two workers: the candidates advance in parallel."""
    result = plan(md_scenario(45.0), {"ttft_p50_s": 1.0}, space=Space(hardware=["h200", "h100"], tp=[3, 1]),
                  replications=2, workers=2)  # fmt: skip
    got = [(r.hardware, r.tp, r.status, r.replicas) for r in result.rows]
    assert got == [
        ("h100", 1, "meets", 5), ("h200", 1, "meets", 5), ("h200", 3, "skipped", None), ("h100", 3, "skipped", None),
    ]  # fmt: skip
    assert "not a divisor" in (result.rows[-1].reason or "")
    assert [r.usd_per_hour for r in result.rows[:2]] == pytest.approx([6.5, 8.0])
    table = result.to_table()
    assert table.column("rank").to_pylist() == [1, 2, None, None]
    assert {"ttft_p50_s", "ttft_p50_s.lo", "ttft_p50_s.hi", "model", "precision"} <= set(table.column_names)

    big = plan(md_scenario(45.0, model="llama-3.1-405b"), {"ttft_p50_s": 1.0}, space=Space(tp=[1]), workers=1)
    usable = 0.9 * 79.22 * 2**30 / 1e9  # the 79.22 GiB an H100 shows the engine
    assert big.rows[0].status == "skipped" and f"usable {usable:.1f} GB" in (big.rows[0].reason or "")
    assert big.answer is None


def test_candidate_fields_are_applied_before_validation() -> None:
    """``--set deployment.ep=8`` is invalid beside the base's ``tp: 1`` but valid in a tp-8 candidate: the
    overrides and the candidate's axes are applied together, then validated."""
    data = md_scenario(5.0, model="qwen3-235b-a22b")
    result = plan(data, {"ttft_p50_s": 1.0}, overrides=["cluster.pools[0].deployment.ep=8"],
                  space=Space(tp=[8], parallel=["ep"], precision=["fp8"]), replications=2, workers=1)  # fmt: skip
    (row,) = result.rows
    assert row.status == "meets" and row.tp == 8 and row.parallel == "ep"


def test_plan_reports_infeasible() -> None:
    result = plan(md_scenario(45.0), {"ttft_p50_s": 1.0}, max_replicas=3, replications=2, workers=1,
                  space=Space(tp=[1]))  # fmt: skip
    row = result.rows[0]
    assert row.status == "infeasible" and row.replicas is None
    assert "bound" in (row.reason or "")  # 5 replicas are needed at the least: none simulated


def test_plan_stops_scaling_out_at_a_latency_floor() -> None:
    """No count of replicas gives a median TTFT below one step (``D`` = 0.1 s): once doubling the replicas
    leaves the (finite) failing statistic flat, the search stops instead of going on to 256."""
    row = plan(md_scenario(45.0), {"ttft_p50_s": 0.05}, replications=2, workers=1, space=Space(tp=[1])).rows[0]
    assert row.status == "infeasible" and "more replicas do not help" in (row.reason or "")
    assert max(e.replicas for e in row.evaluations) < 32
    assert row.slos["ttft_p50_s"].value == pytest.approx(D, rel=0.02)


def test_saved_plan_round_trips_and_records_its_origin(tmp_path: Path) -> None:
    result = plan(md_scenario(25.0), {"ttft_p50_s": 1.0, "ttft_s": 1.0}, replications=2, workers=1,
                  space=Space(hardware=["h100", "h200"], tp=[1]))  # fmt: skip
    path = result.save(tmp_path / "p.json")
    back = PlanResult.load(path)
    assert back == result
    doc = json.loads(path.read_text())
    assert doc["model"] == "llama-3.1-8b" and doc["scenario"]["name"] == "md-c"
    assert doc["agentsim_version"] and len(doc["source_sha256"]) == 64 and len(doc["seeds"]) == 10


# --------------------------------------------------------------------------------------------- command line


def test_cli_plan_json_and_out(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(md_scenario(25.0)))
    base = ["plan", str(scenario), "--slo", "ttft_p50_s=1", "--hardware", "h100,h200", "--tp", "1", "-r", "2"]
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
    res = runner.invoke(app, [*base, "-w", "1", "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 2 and "--overwrite" in res.output  # an earlier plan is not replaced silently


def test_cli_plan_at_80_columns_cuts_no_value_and_says_each_decision(tmp_path: Path) -> None:
    """Without a terminal: a line per decided count (stderr), and at 80 columns every number of every row
    appears whole (the table, or one block per candidate when it does not fit)."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(md_scenario(25.0)))
    res = CliRunner().invoke(app, ["plan", str(scenario), "--slo", "ttft_p50_s=1", "--slo", "ttft_p99_s=2",
                                   "--slo", "ttft_s=1", "--hardware", "h100,h200", "--tp", "1,2", "-r", "2", "-w",
                                   "1", "--out", str(tmp_path / "p.json")], env={"COLUMNS": "80"})  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.stderr.count("replicas meets") >= 4  # one line per decided count, at least one per candidate
    result = PlanResult.load(tmp_path / "p.json")
    for line in res.stdout.splitlines():
        assert len(line) <= 80 or line.startswith("results:"), line
    for row in result.rows:
        for k in result.slos:
            e = row.slos[k]
            for v in (e.value, e.lo, e.hi):
                assert f"{v:.4g}" in res.stdout
        assert f"{row.usd_per_hour:.4g}" in res.stdout


def test_cli_plan_says_when_nothing_meets(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(md_scenario(25.0)))
    res = CliRunner().invoke(app, ["plan", str(scenario), "--slo", "ttft_p50_s=1e-6", "--tp", "1", "-r", "2",
                                   "-w", "1", "--max-replicas", "4"])  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "nothing meets the SLOs" in res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "at least one --slo"),
        (["--slo", "ttft_p99_s"], "expected name=seconds"),
        (["--slo", "latency_s=2"], "unknown SLO"),
        (["--slo", "ttft_s=2", "--tp", "x"], "--tp"),
        (["--slo", "ttft_s=2", "--out", "plan.txt"], ".json, .parquet or .csv"),
        (["--slo", "ttft_s=2", "--rank", "cheap"], "--rank"),
        (["--slo", "ttft_s=2", "--emit", "k8s"], "--emit"),
        (["--slo", "ttft_s=2", "--topology", "2to1"], "prefill:decode ratio"),
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


def test_default_search_finds_that_one_rank_cannot_prefill_an_agents_long_prompt_in_time() -> None:
    """DeepSeek-R1 on 8 x H200 for coding agents (prompts of tens of thousands of tokens). Data-parallel attention
    gives each GPU room for many more sequences (no copy of the MLA latent cache per rank), but it prefills each
    prompt on the one rank that holds it, while the other ranks wait for it at every MoE layer (docs/FIDELITY.md,
    cause 13): a 40,000-token prompt's attention alone is 40,000^2 / 2 query-key pairs x 61 layers x 2 x 128 heads
    x (192 + 128) FLOPs = 4.0e15 FLOPs, 5 s on one H200 at 80% of its BF16 peak and 0.6 s on eight. The default
    search tries the three MoE modes, and one with attention over tensor parallelism (experts split by tp, or by
    expert parallelism: within a few percent of each other) is the cheapest that meets the TTFT and TPOT targets;
    data-parallel attention does not meet them."""
    data = {
        "name": "r1", "seed": 3, "horizon_s": 600.0, "warmup_s": 150.0, "sample_interval_s": 600.0,
        "workload": [{"profile": "coding-agent", "arrivals": {"kind": "closed", "agents": 80, "ramp_s": 30}}],
        "cluster": {"pools": [{"name": "gpu", "replicas": 1, "perf": {"kind": "roofline"},
                               "deployment": {"model": "deepseek-r1", "hardware": "h200", "tp": 8,
                                              "precision": "fp8"}}],
                    "router": {"kind": "session-affinity"}},
    }  # fmt: skip
    result = plan(data, {"ttft_p99_s": 10.0, "tpot_p99_s": 0.1}, space=Space(tp=[8]), replications=2,
                  workers=2)  # fmt: skip
    assert {r.parallel for r in result.rows} == {"tp", "ep", "ep-dpa"}
    best = result.answer
    statuses = {r.parallel: r.status for r in result.rows}
    assert statuses["tp"] == statuses["ep"] == "meets", [(r.label, r.status, r.replicas) for r in result.rows]
    assert best is not None and best.parallel in ("tp", "ep")
    assert next(r for r in result.rows if r.parallel == "ep-dpa").status != "meets"


def test_task_p95_counts_the_tasks_still_running() -> None:
    """plan.json's task p95 (the $/task frontier's axis) counts a task still running at the horizon by its age, as
    the summary's Kaplan-Meier does (review: it counted finished tasks only, which favours an overloaded
    candidate). Nine tasks of 1..9 s and one running for the whole 200 s horizon: the estimate never reaches
    95%, so the p95 is the lower bound with the running task at its age, not the finished tasks' 8.6 s."""
    import pyarrow as pa

    import agentsim
    from agentsim.planning.plan.search import _task_p95

    s = agentsim.default_scenario().model_copy(update={"horizon_s": 200.0, "warmup_s": 0.0})
    done = [float(x) for x in range(1, 10)]
    tasks = pa.table({"start_s": [0.0] * 10, "done_s": [*done, None]})
    assert _task_p95(s, tasks) == pytest.approx(float(np.percentile([*done, 200.0], 95)))
    assert float(np.percentile(done, 95)) == pytest.approx(8.6)  # what finished tasks alone would say
    everyone = pa.table({"start_s": [0.0] * 9, "done_s": done})
    assert _task_p95(s, everyone) == pytest.approx(8.6)  # nothing running: the plain percentile


def test_plan_refuses_an_unknown_ranking_from_python_too() -> None:
    """The CLI checks --rank; the Python API names the choices instead of ranking silently by $/hour."""
    with pytest.raises(ValueError, match="rank_by must be one of usd_per_hour, usd_per_mtok, got 'usd'"):
        plan(md_scenario(45.0), {"ttft_p50_s": 1.0}, rank_by="usd", workers=1)  # type: ignore[arg-type]
