"""docs/METRICS.md is the contract of a run's outputs: every column and field it names exists in real runs'
outputs, and every column and field of those outputs is named there.

The tables are read from METRICS.md's sections (the first column of each Markdown table, every name in
backticks); nested ``summary.json`` fields are named there by their path with dots (``slo_attainment.calls``),
``<w>`` and ``<pool>`` standing for any workload label and pool name, and a field of unit *dist* stands for the
fields of a distribution (``ttft_s.n``, ``ttft_s.p99``, ...). The runs are short cuts of the built-in examples
(the default: a unified pool, percentile SLO targets; hybrid: disaggregated pools and a tool pool) and of the
default with an autoscaled pool and per-call and per-task SLO thresholds, and of the default overloaded (calls
still queued at the horizon: censored TTFT), so the optional fields all appear. The figures it lists under
``agentsim report`` are exactly those the run, comparison, sweep and plan reports draw.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import agentsim
from agentsim import api
from agentsim.planning.plan.result import PlanResult

METRICS = Path(__file__).resolve().parents[1] / "docs" / "METRICS.md"
TABLES = ("calls", "tasks", "replicas", "pools")
SHORT = ["horizon_s=120", "warmup_s=20", "workload[0].arrivals.agents=16", "workload[0].arrivals.ramp_s=10"]


def sections() -> dict[str, str]:
    """METRICS.md's ``## `` sections by the first name in backticks of their heading."""
    out: dict[str, str] = {}
    for part in re.split(r"^## ", METRICS.read_text(), flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        m = re.search(r"`([^`]+)`", heading)
        if m:
            out[m.group(1)] = body
    return out


def table_rows(body: str) -> list[list[str]]:
    """The rows (cells) of every Markdown table in ``body``, headers and separators left out."""
    rows: list[list[str]] = []
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.fullmatch(r"\|(\s*-+\s*\|)+", line):
            continue
        if i + 1 < len(lines) and re.fullmatch(r"\|(\s*-+\s*\|)+", lines[i + 1]):
            continue  # a header
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_columns(section: str) -> set[str]:
    return {n for row in table_rows(sections()[section]) for n in names(row[0])}


def documented_types(section: str) -> dict[str, pa.DataType]:
    """A table's columns with their Arrow types (the second column of METRICS.md's table: one per name)."""
    out: dict[str, pa.DataType] = {}
    for row in table_rows(sections()[section]):
        types = [t.strip() for t in row[1].split(",")]
        assert len(types) == len(names(row[0])), row
        out.update(zip(names(row[0]), map(pa.type_for_alias, types), strict=True))
    return out


def documented_summary() -> set[str]:
    """The summary's leaf fields as METRICS.md names them: object rows are parents of dotted rows; *dist* rows
    expand to the distribution's fields."""
    body = sections()["summary.json"]
    m = re.search(r"\*\*distribution\*\* is `\{([^}]+)\}`", body)
    assert m, "METRICS.md no longer defines a distribution's fields"
    stats = [s.strip() for s in m.group(1).split(",")]
    c = re.search(r"\*\*censored distribution\*\*.*?plus\s+`\{([^}]+)\}`", body, flags=re.S)
    assert c, "METRICS.md no longer defines a censored distribution's extra fields"
    extra = [s.strip() for s in c.group(1).split(",")]
    fields: set[str] = set()
    for row in table_rows(body):
        unit = row[1] if len(row) == 4 else ""
        for name in names(row[0]):
            if "cdist" in unit:
                fields.update(f"{name}.{s}" for s in [*stats, *extra])
            elif "dist" in unit:
                fields.update(f"{name}.{s}" for s in stats)
            elif unit != "object":
                fields.add(name)
    return fields


def flatten(doc: dict[str, Any], prefix: str = "") -> set[str]:
    """Leaf paths of a JSON object, with dots (an empty object has none)."""
    out: set[str] = set()
    for key, value in doc.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def pattern(name: str) -> re.Pattern[str]:
    # <m> is a model id, which may hold dots (llama-3.3-70b); other placeholders are one path segment.
    escaped = re.escape(name).replace(r"\<", "<").replace(r"\>", ">")
    return re.compile(re.sub(r"<[a-z]+>", "[^.]+", escaped.replace("<m>", ".+")))


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(api.example_text(name))
    return data


def autoscaled() -> dict[str, Any]:
    data = example("default")
    data["cluster"]["pools"][0]["autoscale"] = {"min_replicas": 1, "max_replicas": 6, "interval_s": 20,
                                                "cold_start_s": 10}
    data["workload"][0]["slo"] = {"ttft_s": 5.0, "tpot_s": 0.1, "task_s": 600.0}
    return data


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each run's outputs as written: the tables' schemas, summary.json, manifest.json."""
    out: dict[str, dict[str, Any]] = {}
    overloaded = ["cluster.pools[0].replicas=1", "workload[0].arrivals.agents=200"]  # calls still queued
    for name, data, extra in [("default", example("default"), []), ("hybrid", example("hybrid"), []),
                              ("autoscaled", autoscaled(), []), ("overloaded", example("default"), overloaded),
                              ("two-models", example("planner-subagents"), [])]:  # by_model.<m> for two ids
        result = agentsim.simulate(agentsim.load_scenario(data, [*SHORT, *extra]))
        path = agentsim.save_run(result, tmp_path_factory.mktemp(name) / "run")
        out[name] = {t: pq.read_schema(path / f"{t}.parquet") for t in TABLES}
        out[name]["summary"] = json.loads((path / "summary.json").read_text())
        out[name]["manifest"] = json.loads((path / "manifest.json").read_text())
        out[name]["path"] = path
    return out


@pytest.mark.parametrize("table", TABLES)
def test_every_table_column_is_documented_with_its_type_and_exists(runs: dict[str, dict[str, Any]], table: str) -> None:
    documented = documented_types(f"{table}.parquet")
    for outputs in runs.values():
        columns = {f.name: f.type for f in outputs[table]}
        assert set(columns) - set(documented) == set(), f"{table}.parquet columns missing from METRICS.md"
        assert set(documented) - set(columns) == set(), f"METRICS.md names {table}.parquet columns that do not exist"
        assert columns == documented, f"{table}.parquet column types differ from METRICS.md"


def test_every_summary_field_is_documented_and_exists(runs: dict[str, dict[str, Any]]) -> None:
    documented = {name: pattern(name) for name in documented_summary()}
    seen: set[str] = set()
    for run, outputs in runs.items():
        for field in sorted(flatten(outputs["summary"])):
            matching = [name for name, p in documented.items() if p.fullmatch(field)]
            assert matching, f"summary.json field {field} ({run} run) is not in METRICS.md"
            seen.update(matching)
    assert set(documented) - seen == set(), "METRICS.md names summary fields that no run wrote"
    assert "autoscale" not in runs["default"]["summary"]  # documented as absent without an autoscaled pool


def test_every_manifest_field_is_documented_and_exists(runs: dict[str, dict[str, Any]]) -> None:
    documented = documented_columns("manifest.json")
    for outputs in runs.values():
        assert set(outputs["manifest"]) == documented


def test_the_docs_name_the_modules_that_compute_the_outputs() -> None:
    """The opening paragraph's module paths (below ``src/agentsim/``, or the repository's) exist: they moved
    once."""
    opening = METRICS.read_text().split("\n## ")[0]
    paths = re.findall(r"`([\w/]+\.py)`", opening)
    assert len(paths) >= 4
    src = Path(agentsim.__file__).parent
    assert [p for p in paths if not (src / p).is_file() and not (METRICS.parents[1] / p).is_file()] == []


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib: agentsim[report]")
def test_every_report_figure_is_documented_and_drawn(runs: dict[str, dict[str, Any]]) -> None:
    """The figures METRICS.md lists under `agentsim report` are those the reports draw: a run report of the default
    and the hybrid run (several pools: the pool cost figure), their comparison, a sweep and a plan (the last two
    from minimal inputs: which figures exist does not depend on the values)."""
    from agentsim import report

    documented = {n for row in table_rows(sections()["agentsim report"]) for n in names(row[0])}
    paths = [runs["default"]["path"], runs["hybrid"]["path"]]
    drawn = {f.name for p in paths for f in report.run_figures(report.load_run(p))}
    drawn |= {f.name for f in report.compare_figures(report.load_runs(paths))}
    sweep = pa.table({"point": [0, 1], "x": [1.0, 2.0], "replications": [1, 1]})
    drawn |= {f.name for f in report.sweep_figures(report.SweepData(Path("sweep"), sweep, {}, ["x"]))}
    plan = PlanResult(slos={}, attainment=0.95, replications=1, max_replications=1, max_replicas=1, seeds=[], rows=[])
    drawn |= {f.name for f in report.plan_figures(plan, "plan")}
    assert drawn - documented == set(), "figures missing from METRICS.md"
    assert documented - drawn == set(), "METRICS.md names figures no report draws"
