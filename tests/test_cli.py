"""The ``agentsim`` command line: every command, its output files and its exit codes.

Bad input must exit 2 with the field path and the reason on stderr and no traceback; ``run`` writes the six
documented files; ``schema``, ``catalog --json``, ``example`` and ``run --json`` print machine-readable text.
Runs use the built-in default scenario cut to a 120 s horizon so the whole file stays fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from rich.console import Console

import agentsim
from agentsim import api
from agentsim.cli import run as cli_run
from helpers import invoke, refused

SHORT = ["--set", "horizon_s=120", "--set", "warmup_s=20"]
RUN_FILES = {"calls.parquet", "tasks.parquet", "replicas.parquet", "pools.parquet", "summary.json", "manifest.json"}
CALL_COLUMNS = {
    "task_id",
    "call_id",
    "workload",
    "replica",
    "issue_s",
    "first_token_s",
    "done_s",
    "prompt_tokens",
    "cached_tokens",
    "output_tokens",
    "preemptions",
    "usd",
    "energy_j",
}
TASK_COLUMNS = {
    "task_id",
    "workload",
    "start_s",
    "done_s",
    "calls",
    "prompt_tokens",
    "cached_tokens",
    "output_tokens",
    "usd",
}
REPLICA_COLUMNS = {
    "t_s",
    "pool",
    "replica",
    "running",
    "waiting",
    "kv_used_tokens",
    "kv_capacity_tokens",
    "busy_s",
    "output_tokens",
    "prefill_tokens",
}
POOL_COLUMNS = {
    "pool",
    "replicas",
    "gpus",
    "usd_per_gpu_hour",
    "provisioned_usd",
    "calls_usd",
    "idle_usd",
    "busy_s",
    "idle_s",
    "busy_energy_j",
    "idle_energy_j",
}
LATENCIES = ("ttft_s", "tpot_s", "call_e2e_s", "task_s")
SUMMARY_FIELDS = {
    "calls_completed",
    "calls_unfinished",
    "tasks_completed",
    "output_tokens",
    "prompt_tokens",
    "cached_tokens",
    "output_tokens_per_s",
    *LATENCIES,
    "slo_attainment",
    "gpu_hours",
    "usd_total",
    "usd_per_mtok_output",
    "usd_per_mtok_processed",
    "usd_per_task",
    "energy_kwh",
    "tokens_per_mwh",
}

def example_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(api.example_text("default"))
    return data


def write_scenario(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None] | None = None, name: str = "scenario.yaml"
) -> Path:
    data = example_data()
    if mutate is not None:
        mutate(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- run


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("run", *SHORT, "--out", out)
    assert result.exit_code == 0, result.output
    return result, out


def test_run_writes_the_six_files(default_run: tuple[Any, Path]) -> None:
    result, out = default_run
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert f"results: {out}" in result.stdout
    assert "ttft_s" in result.stdout  # the summary table


def test_run_tables_have_the_documented_columns(default_run: tuple[Any, Path]) -> None:
    _, out = default_run
    for name, expected in (
        ("calls", CALL_COLUMNS),
        ("tasks", TASK_COLUMNS),
        ("replicas", REPLICA_COLUMNS),
        ("pools", POOL_COLUMNS),
    ):
        names = set(pq.read_schema(out / f"{name}.parquet").names)
        assert expected <= names, f"{name}: missing {expected - names}"
    calls = pq.read_table(out / "calls.parquet")
    assert calls.num_rows > 0


def test_run_summary_has_the_documented_fields(default_run: tuple[Any, Path]) -> None:
    _, out = default_run
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_FIELDS, SUMMARY_FIELDS - set(summary)
    for key in LATENCIES:
        assert {"mean", "p50", "p90", "p99"} <= set(summary[key]), key
    assert summary["calls_completed"] > 0
    assert summary["ttft_s"]["p50"] <= summary["ttft_s"]["p99"]
    assert {"calls", "tasks", "by_workload"} <= set(summary["slo_attainment"])


def test_run_manifest_holds_scenario_seed_version_and_wall_time(default_run: tuple[Any, Path]) -> None:
    _, out = default_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["agentsim_version"] == agentsim.__version__
    assert manifest["seed"] == 7  # the default example's seed
    assert manifest["wall_s"] > 0
    scenario = agentsim.load_scenario(manifest["scenario"])  # resolved: validates as it stands
    assert scenario.horizon_s == 120 and scenario.warmup_s == 20
    assert manifest["scenario"]["cluster"]["pools"][0]["perf"]["kind"] == "roofline"


def test_run_seed_and_set_reach_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "r"
    result = invoke("run", *SHORT, "--seed", "3", "--set", "cluster.pools[0].replicas=2", "-q", "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3
    assert manifest["scenario"]["seed"] == 3
    assert manifest["scenario"]["cluster"]["pools"][0]["replicas"] == 2
    pools = pq.read_table(out / "pools.parquet").to_pylist()
    assert pools[0]["replicas"] == 2
    assert "ttft_s" not in result.stdout  # --quiet: no table, only the path
    assert result.stdout.strip() == f"results: {out}"


def test_run_without_out_makes_a_new_dir_under_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("run", *SHORT, "-q")
    assert result.exit_code == 0, result.output
    made = list((tmp_path / "runs").iterdir())
    assert len(made) == 1
    assert made[0].name.endswith("coding-agents-on-h200")
    assert {p.name for p in made[0].iterdir()} == RUN_FILES
    assert f"results: {Path('runs') / made[0].name}" in result.stdout


def test_run_refuses_an_existing_out_and_overwrite_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = invoke("run", *SHORT, "-q", "--out", out)
    refused(result, "already exists", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"

    result = invoke("run", *SHORT, "-q", "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temporary or moved-aside directory left


def _json_part(stdout: str) -> Any:
    return json.loads(stdout[: stdout.rindex("}") + 1])


def test_run_json_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "r"
    result = invoke("run", *SHORT, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert _json_part(result.stdout) == json.loads((out / "summary.json").read_text())


def test_run_json_stdout_is_only_json(tmp_path: Path) -> None:
    # `agentsim run --json | jq` must work: the results path goes to stderr.
    out = tmp_path / "r"
    result = invoke("run", *SHORT, "--json", "--out", out)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["calls_completed"] > 0
    assert f"results: {out}" in result.stderr


def test_run_negative_seed_is_bad_input(tmp_path: Path) -> None:
    # --seed is validated like the file's seed (>= 0), not a numpy traceback.
    refused(invoke("run", *SHORT, "-q", "--seed=-1", "--out", tmp_path / "r"), "seed")
    assert not (tmp_path / "r").exists()


def test_run_reports_a_scenario_that_cannot_run(tmp_path: Path) -> None:
    def unknown(d: dict[str, Any]) -> None:
        d["cluster"]["pools"][0]["deployment"]["model"] = "gpt-9"

    out = tmp_path / "r"
    refused(
        invoke("run", write_scenario(tmp_path, unknown), "--out", out), "cluster.pools[0].deployment.model"
    )
    assert not out.exists()


# --------------------------------------------------------------------------- validate


def test_validate_ok(tmp_path: Path) -> None:
    path = write_scenario(tmp_path)
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok")
    assert "KV capacity" in result.stdout
    # each pool's public-data accuracy, and the warnings a run would give of it: exit 0 all the same
    assert "on public data: " in result.stdout
    on_amd = write_scenario(tmp_path, _set("cluster.pools[0].deployment.hardware", "mi300x"), "amd.yaml")
    amd = invoke("validate", on_amd)
    assert amd.exit_code == 0, amd.output
    assert "warning (model_accuracy): pool" in amd.stderr and "AMD" in amd.stderr


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        *head, last = api.parse_path(path)
        node: Any = d
        for k in head:
            node = node[k]
        node[last] = value

    return mutate


@pytest.mark.parametrize(
    ("field", "value", "needles"),
    [
        (
            "cluster.pools[0].deployment.colour",
            "red",
            ["cluster.pools[0].deployment.colour", "unknown field"],
        ),
        ("cluster.pools[0].replicas", "many", ["cluster.pools[0].replicas", "valid integer"]),
        ("horizon_s", [1, 2], ["horizon_s"]),
        (
            "workload[0].arrivals",
            {"kind": "poisson", "rate_per_s": -1},
            ["workload[0].arrivals.rate_per_s", "greater than 0"],
        ),
        ("cluster.pools[0].perf.mfu", 1.5, ["cluster.pools[0].perf.mfu"]),
    ],
    ids=["unknown-field", "wrong-type", "wrong-type-list", "negative-rate", "mfu-range"],
)
def test_validate_bad_fields(tmp_path: Path, field: str, value: Any, needles: list[str]) -> None:
    err = refused(invoke("validate", write_scenario(tmp_path, _set(field, value))), *needles)
    assert ".poisson." not in err and ".roofline." not in err  # union tags are not part of the path


def test_validate_model_that_does_not_fit_gives_the_numbers(tmp_path: Path) -> None:
    def huge(d: dict[str, Any]) -> None:
        d["cluster"]["pools"][0]["deployment"].update(model="llama-3.1-405b", hardware="h100", tp=1, precision="bf16")

    err = refused(
        invoke("validate", write_scenario(tmp_path, huge)), "cluster.pools[0].deployment", "llama-3.1-405b", " GB"
    )
    assert "811.7 GB" in err  # 405.9e9 params x 2 bytes
    assert "85.1 GB of device memory" in err  # the 79.22 GiB an H100 "80 GB" shows the engine


def test_validate_unknown_model_lists_the_known_ids(tmp_path: Path) -> None:
    refused(
        invoke("validate", write_scenario(tmp_path, _set("cluster.pools[0].deployment.model", "gpt-9"))),
        "cluster.pools[0].deployment.model",
        "gpt-9",
        "llama-3.3-70b",
        "llama-3.1-8b",
    )


def test_validate_set_override_and_bad_set_paths(tmp_path: Path) -> None:
    path = write_scenario(tmp_path)
    assert invoke("validate", path, "--set", "cluster.pools[0].replicas=2").exit_code == 0
    refused(
        invoke("validate", path, "--set", "cluster.pools[3].replicas=2"), "cluster.pools[3]", "no such list element"
    )
    refused(invoke("validate", path, "--set", "cluster..replicas=2"), "cluster..replicas")
    refused(invoke("validate", path, "--set", "cluster.pools[0].replicas"), "path.to.field=value")
    refused(
        invoke("validate", path, "--set", "clutser.pools=1"), "clutser", "unknown field (did you mean 'cluster'?)"
    )


def test_validate_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\nseed: 1\n")
    refused(invoke("validate", path), str(path), "not valid YAML")


def test_validate_yaml_error_text_is_printed_verbatim(tmp_path: Path) -> None:
    # Messages are printed as text, not rich markup: '[unclosed ... ]' must not be eaten as a tag.
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\nseed: 1\n")
    err = refused(invoke("validate", path))
    assert "[unclosed" in err and "expected ',' or ']'" in err


def test_validate_missing_file(tmp_path: Path) -> None:
    refused(invoke("validate", tmp_path / "nope.yaml"), "nope.yaml", "cannot read")


def test_validate_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    refused(invoke("validate", path), "mapping")


# --------------------------------------------------------------------------- schema, catalog, example


def test_schema_is_json_of_the_scenario() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Scenario"
    assert schema["additionalProperties"] is False
    assert {"workload", "cluster"} <= set(schema["required"])
    assert {
        "WorkloadSpec",
        "ClusterSpec",
        "PoolSpec",
        "Deployment",
        "RooflinePerf",
        "Poisson",
        "Closed",
        "Rental",
        "Tco",
    } <= set(schema["$defs"])
    # Structural check of the example against the schema (no jsonschema dependency needed).
    example = example_data()
    assert set(example) <= set(schema["properties"])
    assert set(schema["required"]) <= set(example)
    pool_props = set(schema["$defs"]["PoolSpec"]["properties"])
    assert set(example["cluster"]["pools"][0]) <= pool_props
    assert set(example["cluster"]["pools"][0]["deployment"]) <= set(schema["$defs"]["Deployment"]["properties"])
    assert set(example["workload"][0]) <= set(schema["$defs"]["WorkloadSpec"]["properties"])


def test_schema_validates_the_example_with_jsonschema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(invoke("schema").stdout)
    jsonschema.validate(example_data(), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example_data(), "colour": "red"}, schema)


def test_catalog_lists_hardware_models_and_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_run, "out_console", Console(width=200))  # wide enough that no id is cut
    result = invoke("catalog")
    assert result.exit_code == 0, result.output
    for name in (
        "h100",
        "h200",
        "b200",
        "mi300x",
        "llama-3.3-70b",
        "coding-agent",
        "deep-research",
        "support-agent",
        "chat",
    ):
        assert name in result.stdout, name


def test_catalog_model_ids_readable_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # 80 columns is what a pipe or CI gets; ids must not be cut to 'llam…'.
    monkeypatch.setattr(cli_run, "out_console", Console(width=80))
    stdout = invoke("catalog").stdout
    for name in ("llama-3.3-70b", "qwen3-235b-a22b", "deepseek-r1", "mi300x", "deep-research"):
        assert name in stdout, name


def test_catalog_json() -> None:
    result = invoke("catalog", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert set(doc) == {"hardware", "models", "prices", "profiles"}
    assert {"h100", "h200", "b200", "mi300x"} <= set(doc["hardware"])
    assert "llama-3.3-70b" in doc["models"]
    assert {"coding-agent", "deep-research", "support-agent", "chat"} <= set(doc["profiles"])
    assert doc["hardware"]["h100"]["hbm_gb"] == 80


def test_example_prints_commented_yaml_that_validates(tmp_path: Path) -> None:
    result = invoke("example")
    assert result.exit_code == 0
    text = result.stdout
    assert text == api.example_text("default")
    assert any(line.lstrip().startswith("#") for line in text.splitlines())
    assert " # " in text  # inline comments too
    scenario = agentsim.load_scenario(yaml.safe_load(text))
    assert scenario.name == "coding-agents-on-h200"
    path = tmp_path / "example.yaml"
    path.write_text(text)
    assert invoke("validate", path).exit_code == 0


def test_example_list_and_unknown_example() -> None:
    result = invoke("example", "--list")
    assert result.exit_code == 0
    assert "default" in result.stdout.split()
    refused(invoke("example", "nope"), "nope", "default")


# --------------------------------------------------------------------------- the real executables


def test_console_script_and_python_m(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "agentsim"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    commands = {
        "script-help": [str(script), "--help"],
        "module-help": [sys.executable, "-m", "agentsim", "--help"],
        "script-bad": [str(script), "validate", str(tmp_path / "missing.yaml")],
    }
    procs = {
        k: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for k, c in commands.items()
    }  # concurrently: each pays the interpreter start-up
    done = {k: (p.communicate(timeout=60), p.returncode) for k, p in procs.items()}
    for key in ("script-help", "module-help"):
        (stdout, stderr), code = done[key]
        assert code == 0, stderr
        for command in ("run", "validate", "schema", "example", "catalog"):
            assert command in stdout, (key, command)
    (_, stderr), code = done["script-bad"]
    assert code == 2
    assert "cannot read" in stderr and "Traceback" not in stderr
