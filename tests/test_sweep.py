"""Sweeps (``agentsim.planning.sweep``): points, seeds, run ids, the result table, resuming an interrupted sweep,
process pools and a real Dask ``LocalCluster``, and the ``agentsim sweep`` command.

Every run is the built-in example cut to a 60 s horizon with 8 agents (~0.05 s each), so the file stays fast.
"""

from __future__ import annotations

import faulthandler
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import agentsim
from agentsim import api, spec
from agentsim.cli import app
from agentsim.cli.planning import _split_values
from agentsim.errors import ScenarioError

# The module; ``agentsim.sweep`` is the function the package exports.
from agentsim.planning import sweep as sw
from helpers import packaged_figures

REAL_SIMULATE = api.simulate

TINY = ["horizon_s=60", "warmup_s=10", "workload[0].arrivals.agents=8", "workload[0].arrivals.ramp_s=5"]
AXES: dict[str, list[Any]] = {"cluster.pools[0].replicas": [1, 2], "cluster.router.kind": ["round-robin", "least-load"]}


@pytest.fixture(scope="module")
def base() -> spec.Scenario:
    return agentsim.load_scenario(agentsim.default_scenario(), TINY)


@pytest.fixture(scope="module")
def reference(base: spec.Scenario) -> pa.Table:
    """The uninterrupted, inline sweep every other way of running it must reproduce."""
    return agentsim.sweep(base, AXES, replications=2, workers=1)


# --------------------------------------------------------------------------------------------- points and seeds


def test_grid_crosses_first_axis_slowest_or_zips() -> None:
    axes = {"a": [1, 2], "b": ["x", "y", "z"]}
    assert sw.grid(axes) == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]
    assert sw.grid({"a": [1, 2], "b": ["x", "y"]}, zip=True) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert sw.grid({}) == [{}]
    with pytest.raises(ValueError, match="same number of values"):
        sw.grid(axes, zip=True)
    with pytest.raises(ValueError, match="no values"):
        sw.grid({"a": []})
    with pytest.raises(ValueError, match="cannot parse path"):
        sw.grid({"a..b": [1]})


def test_replication_seeds_are_spawned_from_the_base_seed() -> None:
    expected = [int(c.generate_state(1, dtype=np.uint32)[0]) for c in np.random.SeedSequence(7).spawn(3)]
    assert sw.replication_seeds(7, 3) == expected
    assert sw.replication_seeds(7, 2) == expected[:2]  # more replications only add seeds
    assert len(set(sw.replication_seeds(0, 50))) == 50
    with pytest.raises(ValueError):
        sw.replication_seeds(0, 0)


def test_apply_values_switching_kind_starts_the_variant_afresh(base: spec.Scenario) -> None:
    pa_ = sw.apply_values(base, {"cluster.router.kind": "prefix-aware", "cluster.router.balance_tokens": 5})
    assert isinstance(pa_.cluster.router, spec.PrefixAware) and pa_.cluster.router.balance_tokens == 5
    # back to a variant without balance_tokens: the old field does not leak into it
    rr = sw.apply_values(pa_, {"cluster.router.kind": "round-robin"})
    assert isinstance(rr.cluster.router, spec.RoundRobin)
    # closed -> poisson with the new variant's field from another path, whatever the order given
    s = sw.apply_values(base, {"workload[0].arrivals.rate_per_s": 0.5, "workload[0].arrivals.kind": "poisson"})
    assert s.workload[0].arrivals == spec.Poisson(rate_per_s=0.5)  # type: ignore[union-attr]
    with pytest.raises(ScenarioError, match="replicas"):
        sw.apply_values(base, {"cluster.pools[0].replicas": -1})
    with pytest.raises(ScenarioError, match="no such list element"):
        sw.apply_values(base, {"cluster.pools[3].replicas": 1})


def test_run_id_hashes_the_resolved_scenario_with_its_seed(base: spec.Scenario) -> None:
    rid = sw.run_id(base)
    assert len(rid) == 16 and int(rid, 16) >= 0
    assert sw.run_id(api.load_scenario(base.model_dump(mode="json"))) == rid  # same scenario, same id
    assert sw.run_id(base.model_copy(update={"seed": base.seed + 1})) != rid
    assert sw.run_id(sw.apply_values(base, {"cluster.pools[0].replicas": 3})) != rid


# --------------------------------------------------------------------------------------------- the table


def test_table_has_axes_means_intervals_and_run_ids(base: spec.Scenario, reference: pa.Table) -> None:
    t = reference
    assert t.num_rows == 4
    assert t.column_names[:4] == ["point", "cluster.pools[0].replicas", "cluster.router.kind", "replications"]
    assert t.column("cluster.pools[0].replicas").to_pylist() == [1, 1, 2, 2]
    assert t.column("cluster.router.kind").to_pylist() == ["round-robin", "least-load"] * 2
    for name in ("ttft_s.p99", "usd_per_mtok_output", "slo_attainment.calls", "output_tokens_per_s"):
        assert pa.types.is_float64(t.schema.field(name).type), name
        assert pa.types.is_float64(t.schema.field(f"{name}.ci95").type), name
    seeds = sw.replication_seeds(base.seed, 2)
    assert t.column("seeds").to_pylist() == [seeds] * 4  # common random numbers: same seeds at every point
    ids = [i for row in t.column("run_ids").to_pylist() for i in row]
    assert len(set(ids)) == 8

    # mean and 95% Student-t half-width of point 2, from its two runs computed afresh
    s2 = sw.apply_values(base, {"cluster.pools[0].replicas": 2, "cluster.router.kind": "round-robin"})
    vals = [agentsim.simulate(s2, seed=seed).summary["output_tokens_per_s"] for seed in seeds]
    mean = (vals[0] + vals[1]) / 2
    t1 = math.tan(0.475 * math.pi)  # t(0.975, 1): one degree of freedom is the Cauchy distribution
    half = t1 * float(np.std(vals, ddof=1)) / math.sqrt(2)
    assert t.column("output_tokens_per_s")[2].as_py() == pytest.approx(mean, rel=1e-12)
    assert t.column("output_tokens_per_s.ci95")[2].as_py() == pytest.approx(half, rel=1e-9)


def test_each_point_carries_its_runs_regime_and_the_error_that_speaks_for_it(
    base: spec.Scenario, reference: pa.Table
) -> None:
    """The sweep's accuracy columns are the mean over a point's runs of what each run's summary says (its ratio,
    and the packaged figures of its regime, or of its class where the regime has too few rows). This point's two
    runs fall in the same regime (their ratios 3.9 and 8.3: mixed, which no class has rows of), so the error is
    the class's on both: the mean of the ratios is what it checks; choosing between regimes is
    test_a_sweep_keeps_what_a_run_decides_of_its_accuracy's."""
    s0 = sw.apply_values(base, {"cluster.pools[0].replicas": 1, "cluster.router.kind": "round-robin"})
    ratios, errors = [], []
    for seed in sw.replication_seeds(base.seed, 2):
        ratio = agentsim.simulate(s0, seed=seed).summary["accuracy"]["h200"]["regime"]["prompt_per_output"]
        errors.append(packaged_figures("dense_hopper", ratio).mape_pct["output_tok_s"])
        ratios.append(ratio)
    assert reference.column("accuracy.h200.regime.prompt_per_output")[0].as_py() == pytest.approx(sum(ratios) / 2)
    assert reference.column("accuracy.h200.model_error_pct.output_tok_s")[0].as_py() == pytest.approx(sum(errors) / 2)
    assert "accuracy.h200.rows" not in reference.column_names  # a constant of the class


def test_common_random_numbers_make_cluster_only_changes_comparable(reference: pa.Table) -> None:
    """With one replica the router has nothing to choose: both routers must give the very same numbers,
    which holds only if both points saw identical tasks and arrivals."""
    rows = reference.drop_columns(["point", "cluster.router.kind", "run_ids"]).to_pylist()
    assert rows[0] == rows[1]


def test_one_replication_has_no_interval_and_t975() -> None:
    # textbook table values (three decimals), and the closed forms for 1 and 2 degrees of freedom
    for df, table in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042), (120, 1.980)):
        assert sw.t975(df) == pytest.approx(table, abs=5e-4), df
    assert sw.t975(1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-12)
    assert sw.t975(2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-12)
    with pytest.raises(ValueError, match="df must be >= 1"):
        sw.t975(0)
    assert sw._mean_ci([1.0]) == (1.0, None)
    assert sw._mean_ci([None, None]) == (None, None)
    assert sw._mean_ci([2.0, None, 4.0])[0] == 3.0  # nulls are left out


def test_flatten_summary() -> None:
    flat = sw.flatten_summary({"a": 1, "b": {"c": 2.5, "d": None, "e": True, "f": "text"}})
    assert flat == {"a": 1.0, "b.c": 2.5, "b.d": None, "b.e": 1.0}


def _entry(regime: dict[str, Any] | None) -> dict[str, Any]:
    """An accuracy entry as a run's summary holds it (analysis.accuracy.with_regime), with made-up figures."""
    entry: dict[str, Any] = {
        "basis": "roofline", "class": "dense_hopper", "rows": 72, "n": {"output_tok_s": 72},
        "mape_pct": {"output_tok_s": 28.8, "ttft_s": 82.8, "tpot_s": 19.7}, "bias_pct": {"output_tok_s": 20.0},
    }  # fmt: skip
    return entry if regime is None else entry | {"regime": regime}


def test_a_sweep_keeps_what_a_run_decides_of_its_accuracy() -> None:
    """Of a pool's accuracy a sweep keeps the run's prompt/output ratio and the figures that ratio's regime is judged
    on: the regime's where they apply (enough rows), else the class's; nothing of a pool the figures do not cover,
    and none of the class's constants (rows, n, label)."""
    heavy = {"name": "prompt-heavy", "prompt_per_output": 19.4, "rows": 19, "n": {"output_tok_s": 19},
             "mape_pct": {"output_tok_s": 62.1, "ttft_s": 42.0, "tpot_s": 33.1}, "bias_pct": {"output_tok_s": 59.1},
             "applies": True}  # fmt: skip
    mixed = heavy | {"name": "mixed", "prompt_per_output": 4.4, "rows": 0, "applies": False}
    only_prefill = heavy | {"prompt_per_output": None}
    summary = {
        "accuracy": {
            "a": _entry(heavy), "b": _entry(mixed), "c": _entry(None), "d": _entry(only_prefill),
            "mine": {"basis": "table", "class": None, "note": "your own step times"},
        },
        "x": 1,
    }  # fmt: skip
    heavy_figures = {"output_tok_s": 62.1, "ttft_s": 42.0, "tpot_s": 33.1}, 59.1
    class_figures = {"output_tok_s": 28.8, "ttft_s": 82.8, "tpot_s": 19.7}, 20.0

    def columns(pool: str, figures: tuple[dict[str, float], float]) -> dict[str, float]:
        mape, bias = figures
        return {f"accuracy.{pool}.model_error_pct.{m}": v for m, v in mape.items()} | {
            f"accuracy.{pool}.model_bias_pct": bias
        }

    assert sw.flatten_summary(summary) == (
        {"accuracy.a.regime.prompt_per_output": 19.4} | columns("a", heavy_figures)
        # mixed: too few rows of its own, the class's figures
        | {"accuracy.b.regime.prompt_per_output": 4.4} | columns("b", class_figures)
        # no run ratio (validate's entry): the class's figures, no ratio column
        | columns("c", class_figures)
        # a pool that only prefills: prompt-heavy with a null ratio
        | {"accuracy.d.regime.prompt_per_output": None} | columns("d", heavy_figures)
        | {"x": 1.0}
    )


# --------------------------------------------------------------------------------------------- storage, resume


def _counting(monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None) -> list[int]:
    """Count ``api.simulate`` calls made by sweep workers (inline), optionally failing after some."""
    calls: list[int] = []
    real = REAL_SIMULATE

    def simulate(*args: Any, **kwargs: Any) -> agentsim.RunResult:
        if fail_after is not None and len(calls) >= fail_after:
            raise RuntimeError("killed")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "simulate", simulate)
    return calls


def test_interrupted_sweep_resumes_to_identical_results(
    base: spec.Scenario, reference: pa.Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s"
    _counting(monkeypatch, fail_after=3)
    with pytest.raises(RuntimeError, match="killed"):
        agentsim.sweep(base, AXES, replications=2, workers=1, out=out)
    assert len(list((out / "runs").iterdir())) == 3  # what finished before the crash is kept
    assert not (out / "sweep.parquet").exists()

    calls = _counting(monkeypatch)
    resumed = agentsim.sweep(base, AXES, replications=2, workers=1, out=out)
    assert len(calls) == 8 - 3  # finished runs are read, not recomputed
    assert resumed.equals(reference)
    assert pq.read_table(out / "sweep.parquet").equals(reference)

    calls = _counting(monkeypatch)
    again = agentsim.sweep(base, AXES, replications=2, workers=1, out=out)
    assert calls == [] and again.equals(reference)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left behind


def test_killed_cli_sweep_resumes_to_identical_results(tmp_path: Path) -> None:
    """``agentsim sweep`` is SIGKILLed after its first finished run; the same command again completes the sweep,
    and the table equals an uninterrupted in-process sweep of the same points."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(api.example_text("default"))
    longer = ["horizon_s=240", "warmup_s=20", "workload[0].arrivals.agents=16", "workload[0].arrivals.ramp_s=5"]
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "agentsim", "sweep", str(scenario), *[a for o in longer for a in ("--set", o)],
           "-p", "cluster.pools[0].replicas=1,2,3,4", "-r", "2", "-w", "1", "-q", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    runs = out / "runs"
    while time.monotonic() < deadline and proc.poll() is None:
        if runs.is_dir() and any(not p.name.startswith(".") for p in runs.iterdir()):
            proc.kill()
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    done = [p for p in runs.iterdir() if not p.name.startswith(".")]
    assert 1 <= len(done) < 8
    assert not (out / "sweep.parquet").exists()

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    base = agentsim.load_scenario(agentsim.default_scenario(), longer)
    reference = agentsim.sweep(base, {"cluster.pools[0].replicas": [1, 2, 3, 4]}, replications=2, workers=1)
    assert pq.read_table(out / "sweep.parquet").equals(reference)


def test_stored_runs_and_definition(base: spec.Scenario, tmp_path: Path) -> None:
    out = tmp_path / "s"
    t = agentsim.sweep(base, {"cluster.pools[0].replicas": [1]}, replications=1, workers=1, out=out, keep_tables=True)
    rid = t.column("run_ids")[0].as_py()[0]
    run = out / "runs" / rid
    assert {p.name for p in run.iterdir()} == {
        "summary.json", "manifest.json", "calls.parquet", "tasks.parquet", "replicas.parquet", "pools.parquet",
    }  # fmt: skip
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["run_id"] == rid
    assert sw.run_id(api.load_scenario(manifest["scenario"])) == rid  # the id is the hash of what ran
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["axes"] == {"cluster.pools[0].replicas": [1]} and doc["points"][0]["run_ids"] == [rid]

    t2 = agentsim.sweep(base, {"cluster.pools[0].replicas": [1]}, workers=1, out=tmp_path / "light")
    assert {p.name for p in (tmp_path / "light" / "runs" / rid).iterdir()} == {"summary.json", "manifest.json"}
    assert t2.equals(t)


def test_invalid_point_fails_before_running(base: spec.Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    with pytest.raises(ScenarioError, match="sweep point 1"):
        agentsim.sweep(base, {"cluster.pools[0].deployment.tp": [1, 3]}, workers=1)
    assert calls == []


def test_progress_counts_points(base: spec.Scenario) -> None:
    seen: list[tuple[int, int]] = []
    agentsim.sweep(base, {"cluster.pools[0].replicas": [1, 2]}, workers=1, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(0, 2), (1, 2), (2, 2)]


# --------------------------------------------------------------------------------------------- executors


def test_process_pool_gives_the_same_table(base: spec.Scenario, reference: pa.Table) -> None:
    assert agentsim.sweep(base, AXES, replications=2, workers=2).equals(reference)


def test_any_concurrent_futures_executor(base: spec.Scenario, reference: pa.Table) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:
        assert agentsim.sweep(base, AXES, replications=2, executor=ex).equals(reference)


def test_dask_local_cluster(base: spec.Scenario, reference: pa.Table, tmp_path: Path) -> None:
    """A real ``LocalCluster`` of two worker processes on loopback runs the sweep through its ``Client``.

    Timeout: if anything hangs for 120 s, faulthandler prints every thread's stack and ends the test run
    (pytest-timeout is not a dependency)."""
    distributed = pytest.importorskip("distributed")
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            distributed.Client(cluster, timeout="30s") as client,
        ):
            table = agentsim.sweep(base, AXES, replications=2, executor=client, out=tmp_path / "d")
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert table.equals(reference)
    assert pq.read_table(tmp_path / "d" / "sweep.parquet").equals(reference)


# --------------------------------------------------------------------------------------------- command line


def test_split_values_keeps_flow_collections_whole() -> None:
    assert _split_values("1,2, 3") == ["1", "2", "3"]
    assert _split_values("{kind: poisson, rate_per_s: 2},[1, 2],'a,b'") == [
        "{kind: poisson, rate_per_s: 2}", "[1, 2]", "'a,b'",
    ]  # fmt: skip


def test_cli_sweep_writes_parquet_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(api.example_text("default"))
    out = tmp_path / "sweep"
    args = ["sweep", str(scenario), *[a for o in TINY for a in ("--set", o)], "--param",
            "cluster.pools[0].replicas=1,2", "-p", "cluster.router.kind=round-robin,least-load", "--zip",
            "-r", "2", "-w", "1", "--out", str(out)]  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "results:" in res.output and "round-robin" in res.output and "±" in res.output
    t = pq.read_table(out / "sweep.parquet")
    assert t.num_rows == 2 and t.column("cluster.router.kind").to_pylist() == ["round-robin", "least-load"]
    calls = _counting(monkeypatch)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert calls == []  # the same command again: everything read back
    assert pq.read_table(out / "sweep.parquet").equals(t)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--param", "cluster.pools[0].replicas"], "expected path.to.field=v1,v2"),
        (["--param", "cluster.pools[0].replicas=1,-2"], "replicas"),
        (["--param", "a=1,2", "--param", "b=1", "--zip"], "same number of values"),
        (["--workers", "0"], "workers"),
    ],
)
def test_cli_sweep_bad_input_exits_2(tmp_path: Path, extra: list[str], message: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(api.example_text("default"))
    res = CliRunner().invoke(app, ["sweep", str(scenario), "-q", "--out", str(tmp_path / "o"), *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
