"""The Python API: the public names, ``load_scenario`` with overrides and its errors, ``simulate`` and
``save_run``, and that ``import agentsim`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

import agentsim
from agentsim import api, spec, store

# The public API. Changing it is a decision: update this set on purpose (style of httpx's
# tests/test_exported_members.py).
EXPECTED_ALL = {
    "RunResult",
    "ScenarioError",
    "__version__",
    "default_scenario",
    "load_scenario",
    "save_run",
    "simulate",
    "sweep",
}

# A small, fast run of the built-in example.
SMALL = ["horizon_s=60", "warmup_s=10", "workload[0].arrivals.agents=16", "workload[0].arrivals.ramp_s=10"]


def example_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(api.example_text("default"))
    return data


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "scenario.yaml"
    path.write_text(api.example_text("default"))
    return path


@pytest.fixture(scope="module")
def small(scenario_file: Path) -> spec.Scenario:
    return agentsim.load_scenario(scenario_file, SMALL)


@pytest.fixture(scope="module")
def result(small: spec.Scenario) -> agentsim.RunResult:
    return agentsim.simulate(small)


def errors_of(source: Any, overrides: list[str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(agentsim.ScenarioError) as info:
        agentsim.load_scenario(source, overrides or [])
    return info.value.errors


# --------------------------------------------------------------------------- public names


def test_public_api_is_exactly_the_expected_set() -> None:
    assert set(agentsim.__all__) == EXPECTED_ALL
    assert len(agentsim.__all__) == len(EXPECTED_ALL)  # no duplicates


def test_every_exported_name_resolves() -> None:
    for name in agentsim.__all__:
        assert getattr(agentsim, name) is not None, name
    assert agentsim.simulate is api.simulate
    assert agentsim.ScenarioError is api.ScenarioError
    assert issubclass(agentsim.ScenarioError, ValueError)


def test_version_matches_the_installed_distribution() -> None:
    assert agentsim.__version__ == metadata.version("agentsim")


def test_import_does_not_pull_plotting_or_cluster_libraries() -> None:
    code = (
        "import sys, agentsim\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'dask', 'distributed'))\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


# --------------------------------------------------------------------------- simulate and save


def test_simulate_returns_arrow_tables(result: agentsim.RunResult, small: spec.Scenario) -> None:
    assert isinstance(result, agentsim.RunResult)
    assert result.scenario == small
    for name in ("calls", "tasks", "replicas", "pools"):
        assert isinstance(getattr(result, name), pa.Table), name
    assert result.calls.num_rows > 0
    assert result.summary["window_s"] == 50
    assert result.manifest["seed"] == small.seed
    assert result.manifest["calls"] == result.calls.num_rows


def test_simulate_accepts_a_path_and_a_seed(small: spec.Scenario, tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small.model_dump(mode="json")))
    r = agentsim.simulate(str(path), seed=3)
    assert r.scenario.seed == 3 and r.manifest["seed"] == 3
    assert r.manifest["scenario"]["seed"] == 3
    assert r.scenario.model_copy(update={"seed": small.seed}) == small


def test_same_seed_same_result(small: spec.Scenario, result: agentsim.RunResult) -> None:
    again = agentsim.simulate(small)
    assert again.calls.equals(result.calls)
    assert again.tasks.equals(result.tasks)
    assert again.summary == result.summary


def test_pool_cost_is_calls_plus_idle(result: agentsim.RunResult) -> None:
    for row in result.pools.to_pylist():
        assert row["calls_usd"] + row["idle_usd"] == pytest.approx(row["provisioned_usd"], rel=1e-9)
        assert row["busy_s"] + row["idle_s"] == pytest.approx(row["replicas"] * result.scenario.horizon_s)
    assert pc.sum(result.tasks["usd"]).as_py() == pytest.approx(pc.sum(result.calls["usd"]).as_py())


def test_save_run_writes_and_refuses_an_existing_dir(result: agentsim.RunResult, tmp_path: Path) -> None:
    out = agentsim.save_run(result, tmp_path / "run")
    assert out == tmp_path / "run"
    back = store.read_run(out)
    for name in ("calls", "tasks", "replicas", "pools"):
        assert back[name].equals(getattr(result, name)), name
    assert back["summary"] == json.loads(json.dumps(result.summary))
    with pytest.raises(store.RunExistsError):
        agentsim.save_run(result, out)
    with pytest.raises(FileExistsError):
        agentsim.save_run(result, str(out))
    assert agentsim.save_run(result, out, overwrite=True) == out


def test_save_run_moves_a_simulated_runs_files(small: spec.Scenario, tmp_path: Path) -> None:
    # The first save takes the spill files into the run (linked, the spill directory removed); the result then
    # reads them there, and a later save copies them from there.
    r = agentsim.simulate(small)
    spilled = r.files()
    calls = r.calls
    out = agentsim.save_run(r, tmp_path / "run")
    assert r.files() == {name: out / f"{name}.parquet" for name in spilled}
    assert not any(path.exists() for path in spilled.values())
    assert not spilled["calls"].parent.exists()
    again = agentsim.save_run(r, tmp_path / "again")
    assert store.read_run(again)["calls"].equals(calls)
    assert all(path.exists() for path in r.files().values())


def test_simulate_raises_scenario_error_for_unknown_model(small: spec.Scenario) -> None:
    bad = agentsim.load_scenario(small, ["cluster.pools[0].deployment.model=gpt-9"])
    with pytest.raises(agentsim.ScenarioError) as info:
        agentsim.simulate(bad)
    ((path, reason),) = info.value.errors
    assert path == "cluster.pools[0].deployment.model"
    assert "llama-3.3-70b" in reason


def test_simulate_negative_seed_is_a_scenario_error(small: spec.Scenario) -> None:
    # The seed argument is validated like the file's seed (not a bare numpy ValueError).
    with pytest.raises(agentsim.ScenarioError) as info:
        agentsim.simulate(small, seed=-1)
    assert info.value.errors[0][0] == "seed"


def test_replica_counters_never_decrease() -> None:
    data = {
        "horizon_s": 30,
        "warmup_s": 5,
        "sample_interval_s": 1,
        "workload": [
            {
                "profile": {
                    "kind": "fixed",
                    "prompt_tokens": {"kind": "constant", "value": 100},
                    "output_tokens": {"kind": "constant", "value": 100000},
                },
                "arrivals": {"kind": "poisson", "rate_per_s": 0.5},
                "max_tasks": 3,
            }
        ],
        "cluster": {"pools": [{"name": "p", "deployment": {"model": "llama-3.1-8b", "hardware": "h100"}}]},
    }
    r = agentsim.simulate(agentsim.load_scenario(data))
    out = np.asarray(r.replicas.column("output_tokens").to_numpy(), dtype=float)
    assert np.all(np.diff(out) >= 0), out[-3:]


# --------------------------------------------------------------------------- load_scenario


def test_load_scenario_with_overrides(scenario_file: Path) -> None:
    s = agentsim.load_scenario(
        scenario_file,
        [
            "cluster.pools[0].replicas=3",
            "workload[0].arrivals={kind: poisson, rate_per_s: 2}",
            "cluster.pools[0].deployment.engine.prefix_caching=false",
            "workload[0].slo.ttft_s=1.5",
            "name=tweaked",
        ],
    )
    assert s.cluster.pools[0].replicas == 3
    assert isinstance(s.workload[0].arrivals, spec.Poisson)
    assert s.workload[0].arrivals.rate_per_s == 2
    assert s.cluster.pools[0].deployment.engine.prefix_caching is False
    assert s.workload[0].slo.ttft_s == 1.5
    assert s.name == "tweaked"
    # The file's other values stay.
    assert s.cluster.pools[0].deployment.tp == 4


def test_load_scenario_from_a_mapping_does_not_mutate_it() -> None:
    data = example_data()
    before = json.dumps(data, sort_keys=True)
    s = agentsim.load_scenario(data, ["cluster.pools[0].replicas=5"])
    assert s.cluster.pools[0].replicas == 5
    assert json.dumps(data, sort_keys=True) == before


def test_load_scenario_from_a_loaded_scenario(small: spec.Scenario) -> None:
    s = agentsim.load_scenario(small, ["cluster.pools[0].replicas=2"])
    assert s.cluster.pools[0].replicas == 2
    assert s.horizon_s == small.horizon_s


def test_load_scenario_from_a_scenario_built_in_python() -> None:
    # Defaulted union tags (kind) of objects built in Python must survive the round trip.
    s = spec.Scenario(
        workload=[spec.WorkloadSpec(arrivals=spec.Poisson(rate_per_s=1))],
        cluster=spec.ClusterSpec(
            pools=[spec.PoolSpec(name="p", deployment=spec.Deployment(model="llama-3.1-8b", hardware="h100"))]
        ),
    )
    assert agentsim.load_scenario(s, ["cluster.pools[0].replicas=2"]).cluster.pools[0].replicas == 2


def test_error_paths_drop_union_tags() -> None:
    errors = errors_of(example_data(), ["cluster.pools[0].perf.mfu=1.5"])
    assert [p for p, _ in errors] == ["cluster.pools[0].perf.mfu"]
    errors = errors_of(example_data(), ["workload[0].arrivals={kind: gamma, rate_per_s: 1, cv: -2}"])
    assert [p for p, _ in errors] == ["workload[0].arrivals.cv"]
    errors = errors_of(example_data(), ["pricing={kind: tco, capex_usd_per_gpu: 0}"])
    assert [p for p, _ in errors] == ["pricing.capex_usd_per_gpu"]


def test_error_paths_of_model_validators_name_the_object() -> None:
    errors = errors_of(example_data(), ["warmup_s=5000"])
    assert errors == [("", "warmup_s (5000.0) must be below horizon_s (3600.0)")]
    errors = errors_of(example_data(), ["cluster.pools[0].replicas=0"])
    assert errors == [("cluster", "the cluster has no replicas")]


def test_every_error_is_reported_with_the_source_name(scenario_file: Path) -> None:
    with pytest.raises(agentsim.ScenarioError) as info:
        agentsim.load_scenario(scenario_file, ["seed=-1", "cluster.pools[0].replicas=x", "colour=red"])
    e = info.value
    assert e.source == str(scenario_file)
    assert {p for p, _ in e.errors} == {"seed", "cluster.pools[0].replicas", "colour"}
    text = str(e)
    assert text.startswith(f"{scenario_file} is not valid:")
    assert len(text.splitlines()) == 4


def test_override_errors() -> None:
    assert errors_of(example_data(), ["cluster.pools[2].replicas=1"]) == [("cluster.pools[2]", "no such list element")]
    assert errors_of(example_data(), ["replicas"])[0][1] == "an override must look like path.to.field=value"
    ((path, reason),) = errors_of(example_data(), ["a..b=1"])
    assert path == "a..b" and "cannot parse" in reason
    ((path, reason),) = errors_of(example_data(), ["name.first=x"])
    assert path == "name.first" and reason == "not a mapping"
    ((path, reason),) = errors_of(example_data(), ["horizon_s={a: 1"])  # not YAML
    assert path == "horizon_s"


def test_bad_inline_profile_reports_only_the_bad_field() -> None:
    errors = errors_of(example_data(), ["workload[0].profile={kind: agent, steps: {kind: constant, value: -1}}"])
    assert [p for p, _ in errors] == ["workload[0].profile.steps.value"]


def test_load_scenario_file_errors(tmp_path: Path) -> None:
    ((path, reason),) = errors_of(tmp_path / "missing.yaml")
    assert path == "" and "cannot read" in reason
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\n")
    ((path, reason),) = errors_of(bad)
    assert path == "" and "not valid YAML" in reason
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    ((path, reason),) = errors_of(scalar)
    assert "mapping" in reason


def test_default_scenario_is_the_example() -> None:
    assert agentsim.default_scenario() == agentsim.load_scenario(example_data())
    assert api.example_names() == ["default", "hybrid", "hybrid-whole", "offload", "planner-subagents"]
