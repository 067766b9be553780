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

from pathlib import Path

from agentsim import spec, store
from agentsim.engine.sim import ProgressFn, RunResult, run
from agentsim.errors import ScenarioError
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
    "save_run",
    "set_path",
    "simulate",
    "validate_data",
]


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
