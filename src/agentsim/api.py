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

import copy
import functools
import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from pydantic import ValidationError

from agentsim import spec, store
from agentsim._version import __version__
from agentsim.analysis.costs import attach_call_costs, attach_task_costs, pools_table
from agentsim.analysis.metrics import summarize
from agentsim.build import compiled_modules
from agentsim.catalog import Catalog
from agentsim.engine.sim import ProgressFn, simulate_resolved
from agentsim.errors import ScenarioError
from agentsim.resolve import resolve

__all__ = ["RunResult", "ScenarioError", "default_scenario", "load_scenario", "run", "save_run", "simulate"]


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




_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> list[str | int]:
    """``"cluster.pools[0].replicas"`` -> ``["cluster", "pools", 0, "replicas"]``."""
    parts: list[str | int] = []
    pos = 0
    for m in _TOKEN.finditer(path):
        gap = path[pos : m.start()]
        if gap not in ("", "."):
            raise ValueError(f"cannot parse path {path!r}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or path[pos:] not in ("",):
        raise ValueError(f"cannot parse path {path!r}")
    return parts


def format_path(loc: Iterable[str | int]) -> str:
    """``["cluster", "pools", 0, "replicas"]`` -> ``"cluster.pools[0].replicas"``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def set_path(data: dict[str, Any], path: str, value: Any, source: str = "--set") -> None:
    """Set ``dotted.path[i]`` in raw scenario data to ``value``; missing mappings along the path are created.

    Setting a ``kind`` to another variant clears that object first, so the new variant starts from its own
    defaults instead of failing on the old variant's fields (``cluster.router.kind=round-robin`` on a
    prefix-aware router with a ``balance_tokens``).
    """
    try:
        keys = parse_path(path.strip())
    except ValueError as e:
        raise ScenarioError([(path, str(e))], source) from None
    node: Any = data
    for i, k in enumerate(keys[:-1]):
        here = format_path(keys[: i + 1])
        if isinstance(k, int):
            if not isinstance(node, list) or not -len(node) <= k < len(node):
                raise ScenarioError([(here, "no such list element")], source)
            node = node[k]
        else:
            if not isinstance(node, dict):
                raise ScenarioError([(here, "not a mapping")], source)
            node = node.setdefault(k, {})
    last = keys[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise ScenarioError([(path, "no such list element")], source)
        node[last] = value
        return
    if not isinstance(node, dict):
        raise ScenarioError([(path, "not a mapping")], source)
    if last == "kind" and "kind" in node and node["kind"] != value:
        node.clear()
    node[last] = value


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.path[i]=value`` to raw scenario data; the value is read as YAML (``16``, ``true``,
    ``{kind: poisson, rate_per_s: 2}``). See :func:`set_path`."""
    if "=" not in assignment:
        raise ScenarioError([(assignment, "an override must look like path.to.field=value")], "--set")
    path, _, raw = assignment.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError as e:
        raise ScenarioError([(path, str(e))], "--set") from None
    set_path(data, path, value)


def _clean_loc(loc: tuple[str | int, ...], data: Any) -> list[str | int] | None:
    """Drop the union-tag segments pydantic inserts (``perf.roofline.mfu`` -> ``perf.mfu``). ``None`` for an
    error about a union branch that does not apply (the ``str`` branch of ``profile`` when a mapping was
    given): reporting it would only mislead."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part == "str" and "str" not in node:
            return None
        if isinstance(node, dict) and part == "synthetic" and "synthetic" not in node:
            continue  # the tag of a synthetic workload, which files need not write
        if isinstance(node, dict) and isinstance(part, str) and part not in node and node.get("kind") == part:
            continue
        if isinstance(node, dict) and isinstance(part, str) and part not in node and "[" in part:
            continue  # pydantic's 'function-after[...]' style segments
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return out


def validate_data(data: Any, source: str = "scenario") -> spec.Scenario:
    """Validate raw data as a :class:`~agentsim.spec.Scenario`, raising :class:`ScenarioError` with paths."""
    if not isinstance(data, Mapping):
        raise ScenarioError([("", f"expected a mapping at the top level, got {type(data).__name__}")], source)
    try:
        return spec.Scenario.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = _clean_loc(tuple(err["loc"]), data)
            if loc is not None:
                errors.append((format_path(loc), str(err["msg"]).removeprefix("Value error, ")))
        raise ScenarioError(errors, source) from None


def load_scenario(
    source: str | Path | Mapping[str, Any] | spec.Scenario,
    overrides: Iterable[str] = (),
    *,
    name: str | None = None,
) -> spec.Scenario:
    """A validated scenario from a YAML file, a mapping or a Scenario, with ``path=value`` overrides applied
    and validated like the file. Raises :class:`ScenarioError` naming each bad field; ``name`` labels the
    source in messages."""
    label = name
    if isinstance(source, spec.Scenario):
        data: Any = source.model_dump(mode="json")
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        label = label or str(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ScenarioError([("", f"cannot read: {e.strerror or e}")], label) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ScenarioError([("", f"not valid YAML: {e}")], label) from None
    label = label or "scenario"
    overrides = list(overrides)
    raw = copy.deepcopy(data)
    for o in overrides:
        apply_override(raw, o)
    try:
        return validate_data(raw, label)
    except ScenarioError as first:
        if not overrides:
            raise
        # An override may reach into a part the file left to its defaults (``cluster.pools[0].perf.mfu`` with
        # no ``perf`` written): apply it to the fully resolved scenario instead, when the file alone is valid.
        try:
            full = validate_data(copy.deepcopy(data), label).model_dump(mode="json")
            for o in overrides:
                apply_override(full, o)
            return validate_data(full, label)
        except ScenarioError:
            raise first from None


def example_text(name: str = "default") -> str:
    """The text of a built-in, commented example scenario."""
    f = resources.files("agentsim") / "examples" / f"{name}.yaml"
    if not f.is_file():
        known = ", ".join(example_names())
        raise ScenarioError([("", f"no built-in example {name!r}; known: {known}")], "example")
    return f.read_text()


def example_names() -> list[str]:
    """Names of the built-in example scenarios."""
    d = resources.files("agentsim") / "examples"
    return sorted(p.name.removesuffix(".yaml") for p in d.iterdir() if p.name.endswith(".yaml"))


def default_scenario() -> spec.Scenario:
    """The built-in default scenario (``agentsim example``): what ``agentsim run`` runs with no file."""
    return validate_data(yaml.safe_load(example_text("default")), "built-in default scenario")


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
