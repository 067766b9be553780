"""The Python API: load a scenario (with overrides), simulate it, save the result.

The CLI is a thin shell over these functions, so a notebook or a script can do everything the command line
does::

    import agentsim
    s = agentsim.load_scenario("coding.yaml", overrides=["cluster.pools[0].replicas=16"])
    r = agentsim.simulate(s, seed=3)
    print(r.summary["usd_per_mtok_output"])
    agentsim.save_run(r, "runs/a")
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from agentsim import spec, store
from agentsim._version import __version__
from agentsim.analysis.costs import attach_call_costs, attach_task_costs, pools_table
from agentsim.analysis.metrics import summarize
from agentsim.analysis.warnings import collect as collect_warnings
from agentsim.build import compiled_modules
from agentsim.catalog import Catalog
from agentsim.engine.sim import ProgressFn, simulate_resolved
from agentsim.errors import ScenarioError
from agentsim.resolve import resolve
from agentsim.spec.load import (
    apply_override,
    default_scenario,
    example_names,
    example_text,
    format_path,
    load_scenario,
    parse_path,
    set_path,
    validate_data,
)

# Loading lives in agentsim.spec.load; it is re-exported here so that the API is one module for scripts.
__all__ = [
    "RunResult",
    "ScenarioError",
    "apply_override",
    "default_scenario",
    "example_names",
    "example_text",
    "format_path",
    "load_scenario",
    "parse_path",
    "run",
    "save_run",
    "set_path",
    "simulate",
    "validate_data",
]


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced: Arrow tables, the summary, and where it came from."""

    scenario: spec.Scenario
    calls: pa.Table
    tasks: pa.Table
    replicas: pa.Table
    pools: pa.Table
    summary: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)


def run(
    scenario: spec.Scenario,
    *,
    catalog: Catalog | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Simulate a validated ``scenario``: resolve it against ``catalog`` (default: the built-in one plus the
    scenario's catalog files), run the engine, then cost and summarize its tables. Deterministic for a given
    ``scenario.seed``; raises :class:`ScenarioError` when the scenario cannot run on its cluster."""
    wall0 = time.perf_counter()
    resolved = resolve(scenario, catalog)
    raw = simulate_resolved(resolved, progress)
    rates = resolved.rates
    calls = attach_call_costs(raw.calls, rates)
    tasks = attach_task_costs(raw.tasks, calls, resolved.tools)
    pools = pools_table(rates, raw.replicas, calls, scenario.horizon_s)
    summary = summarize(scenario, calls, tasks, raw.replicas, rates)
    summary["steps_skipped_fraction"] = raw.steps_skipped_fraction
    if raw.autoscale:
        summary["autoscale"] = raw.autoscale
    summary["warnings"] = collect_warnings(summary, scenario, calls, tasks, raw.replicas)
    wall = time.perf_counter() - wall0
    manifest = {
        "agentsim_version": __version__,
        "source_sha256": source_digest(),
        "compiled_modules": list(compiled_modules()),  # mypyc-compiled hot path (setup.py); [] = pure Python
        "seed": scenario.seed,
        "scenario": scenario.model_dump(mode="json"),
        "wall_s": wall,
        "calls": calls.num_rows,
        "calls_per_wall_s": calls.num_rows / wall if wall > 0 else None,
    }
    return RunResult(scenario, calls, tasks, raw.replicas, pools, summary, manifest)


@functools.cache
def source_digest() -> str:
    """SHA-256 of agentsim's own source and data files: which code made a run, even between releases."""
    root = Path(__file__).parent  # the agentsim package
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.suffix in (".py", ".yaml") and f.is_file():
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def simulate(
    scenario: spec.Scenario | str | Path | None = None,
    *,
    seed: int | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Run a scenario (a Scenario, a YAML path, or ``None`` for the default) and return its result.

    Raises :class:`ScenarioError` when the scenario cannot run on its cluster (unknown model, does not fit).
    """
    if scenario is None:
        s = default_scenario()
    elif isinstance(scenario, spec.Scenario):
        s = scenario
    else:
        s = load_scenario(scenario)
    if seed is not None:
        s = load_scenario(s, [f"seed={seed}"])
    return run(s, progress=progress)


def save_run(result: RunResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write a result's tables, summary and manifest into ``out`` (atomic; refuses to overwrite by default)."""
    tables = {
        "calls": result.calls,
        "tasks": result.tasks,
        "replicas": result.replicas,
        "pools": result.pools,
    }
    return store.write_run(Path(out), tables, result.summary, result.manifest, overwrite=overwrite)
