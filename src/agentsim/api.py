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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from agentsim import columns, spec, store
from agentsim._version import __version__
from agentsim.analysis.accuracy import prompt_per_output, resolved_accuracy
from agentsim.analysis.costs import COST_SUMS, attach_call_costs, attach_task_costs, pools_table
from agentsim.analysis.metrics import summarize
from agentsim.analysis.tables import ParquetColumns, Table, batches
from agentsim.analysis.task_sums import StreamedTaskSums
from agentsim.analysis.warnings import collect as collect_warnings
from agentsim.analysis.warnings import kv_short_of_window, pool_memory
from agentsim.build import compiled_modules
from agentsim.catalog import Catalog
from agentsim.engine.records import REPLICAS_SCHEMA, TASK_RECORD_SCHEMA, with_task_sums
from agentsim.engine.sim import ProgressFn, simulate_resolved
from agentsim.errors import ScenarioError
from agentsim.preflight import check as check_memory
from agentsim.preflight import check_disk, default_limit_mb
from agentsim.resolve import PoolRates, Resolved, resolve
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
from agentsim.spill import ParquetSink, SpillDir, read_table

CALLS_SCHEMA = columns.schema(columns.CALLS)
"""The call table as written: the engine's columns and the costs."""

TASKS_SCHEMA = columns.schema(columns.TASKS)
"""The task table as written: recorded, summed over the task's calls, and costed."""

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


TABLE_FILES = ("calls", "tasks", "replicas")
"""The tables a run streams to files as it goes (the pools table is computed at the end, a row per pool)."""


class RunResult:
    """Everything a run produced: the Arrow tables, the summary, and where it came from.

    ``calls``, ``tasks`` and ``replicas`` of a simulated run live in Parquet files (its spill files, moved into
    the run directory by :func:`save_run`): each is read whole when first asked for, and kept.
    :meth:`columns` reads one a column at a time instead, for a run too large to hold."""

    def __init__(
        self,
        scenario: spec.Scenario,
        calls: pa.Table | Path,
        tasks: pa.Table | Path,
        replicas: pa.Table | Path,
        pools: pa.Table,
        summary: dict[str, Any],
        manifest: dict[str, Any] | None = None,
        *,
        spill: SpillDir | None = None,
    ) -> None:
        self.scenario = scenario
        self.pools = pools
        self.summary = summary
        self.manifest = manifest if manifest is not None else {}
        self._paths: dict[str, Path] = {}
        self._loaded: dict[str, pa.Table] = {}
        for name, t in (("calls", calls), ("tasks", tasks), ("replicas", replicas)):
            if isinstance(t, Path):
                self._paths[name] = t
            else:
                self._loaded[name] = t
        self._spill = spill  # owns the files until save_run moves them; removed with this result

    def _table(self, name: str) -> pa.Table:
        if name not in self._loaded:
            self._loaded[name] = read_table(self._paths[name])
        return self._loaded[name]

    @property
    def calls(self) -> pa.Table:
        """One row per LLM call (docs/METRICS.md)."""
        return self._table("calls")

    @property
    def tasks(self) -> pa.Table:
        """One row per task."""
        return self._table("tasks")

    @property
    def replicas(self) -> pa.Table:
        """The replicas' time series."""
        return self._table("replicas")

    def columns(self, name: str) -> Table:
        """Table ``name`` (calls, tasks, replicas) to read a column at a time (``.column(name)``) without
        loading it whole: its file's :class:`~agentsim.analysis.tables.ParquetColumns`, or the table in memory."""
        if name in self._paths:
            return ParquetColumns(self._paths[name])
        return self._loaded[name]

    def files(self) -> dict[str, Path]:
        """Where the tables' Parquet files are now (a simulated run's; none for tables given in memory)."""
        return dict(self._paths)

    def __repr__(self) -> str:
        return f"RunResult({self.scenario.name!r}, calls={self.manifest.get('calls')}, files={self.files()})"


def run(
    scenario: spec.Scenario,
    *,
    catalog: Catalog | None = None,
    progress: ProgressFn | None = None,
    workdir: str | Path | None = None,
    max_memory_mb: float | None = None,
) -> RunResult:
    """Simulate a validated ``scenario``: resolve it against ``catalog`` (default: the built-in one plus the
    scenario's catalog files), run the engine, then cost and summarize its tables. Deterministic for a given
    ``scenario.seed``; raises :class:`ScenarioError` when the scenario cannot run on its cluster.

    The tables are streamed to Parquet files as the run goes (:mod:`agentsim.spill`) in a temporary directory
    in ``workdir`` (default: the system's temporary directory; give the directory the run will be saved in, so
    that :func:`save_run` moves the files rather than copying them).

    Before it starts, the run's memory is estimated (:mod:`agentsim.preflight`): above ``max_memory_mb``
    (default: half the machine's memory; 0: no limit) it raises :class:`~agentsim.preflight.MemoryLimitError`,
    a :class:`ScenarioError` with the estimate, the limit and what to change; a run whose tables would not fit
    the free disk space there raises :class:`~agentsim.preflight.DiskSpaceError`, with the numbers."""
    wall0 = time.perf_counter()
    resolved = resolve(scenario, catalog)
    size = check_memory(resolved, default_limit_mb() if max_memory_mb is None else max_memory_mb)
    spill = SpillDir(Path(workdir) if workdir is not None else None)
    try:
        # where the files go: a workdir not there yet is made by SpillDir, one that cannot be written falls back
        check_disk(size, spill.path)
        return _run(resolved, spill, progress, wall0)
    except BaseException:
        spill.remove()
        raise


def _run(resolved: Resolved, spill: SpillDir, progress: ProgressFn | None, wall0: float) -> RunResult:
    scenario = resolved.scenario
    rates = resolved.rates
    sinks = {
        "calls": ParquetSink(spill.file("calls"), CALLS_SCHEMA, partial(_costed, rates=rates)),
        "tasks": ParquetSink(spill.file("tasks.recorded"), TASK_RECORD_SCHEMA),
        "replicas": ParquetSink(spill.file("replicas"), REPLICAS_SCHEMA),
    }
    try:
        raw = simulate_resolved(resolved, sinks, progress)
        for sink in sinks.values():
            sink.close()
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        raise
    calls = ParquetColumns(spill.file("calls"))
    _finish_tasks(spill.file("tasks.recorded"), spill.file("tasks"), calls, resolved.tools)
    tasks = ParquetColumns(spill.file("tasks"))
    replicas = ParquetColumns(spill.file("replicas"))
    pools = pools_table(rates, replicas, calls, scenario.horizon_s)
    summary = summarize(scenario, calls, tasks, replicas, rates)
    summary["steps_skipped_fraction"] = raw.steps_skipped_fraction
    if raw.autoscale:
        summary["autoscale"] = raw.autoscale
    # what public measurements say of each pool's step times (analysis.accuracy)
    ratios = prompt_per_output(calls, since_s=scenario.warmup_s)  # the summary's window
    summary["accuracy"], accuracy_warned = resolved_accuracy(resolved, ratios)
    summary["warnings"] = (
        collect_warnings(summary, scenario, calls, tasks, replicas)
        + kv_short_of_window([pool_memory(p) for p in resolved.pools])
        + accuracy_warned
    )
    wall = time.perf_counter() - wall0
    manifest = {
        "agentsim_version": __version__,
        "source_sha256": source_digest(),
        "compiled_modules": list(compiled_modules()),  # mypyc-compiled hot path (setup.py); [] = pure Python
        "seed": scenario.seed,
        "scenario": scenario.model_dump(mode="json"),
        "wall_s": wall,
        "calls": raw.calls,
        "calls_per_wall_s": raw.calls / wall if wall > 0 else None,
    }
    paths = {name: spill.file(name) for name in TABLE_FILES}
    return RunResult(scenario, paths["calls"], paths["tasks"], paths["replicas"], pools, summary, manifest, spill=spill)


def _costed(batch: pa.RecordBatch, rates: list[PoolRates]) -> pa.Table:
    """A batch of the engine's call rows with their dollars and joules (each row's own)."""
    return attach_call_costs(pa.Table.from_batches([batch]), rates)


def _finish_tasks(recorded: Path, out: Path, calls: ParquetColumns, tools: PoolRates | None) -> None:
    """The tasks table, from the recorded task rows (``recorded``, removed after) and the call table: each
    task's sums over its calls and its costs, written to ``out`` a batch at a time, the call file read alongside
    (:mod:`agentsim.analysis.task_sums`: only the tasks in flight have sums held)."""
    rows = ParquetColumns(recorded)
    needed = ["task_id", "issue_s", "done_s", "status", "prompt_tokens", "cached_tokens", "output_tokens",
              *COST_SUMS, "busy_s", "prefill_busy_s"]  # fmt: skip
    sums = StreamedTaskSums(batches(calls, needed), extra=COST_SUMS)

    def finished(batch: pa.RecordBatch) -> pa.Table:
        taken = sums.take(np.asarray(batch.column("task_id").to_numpy(), dtype=np.int64), _ended_by(batch))
        return attach_task_costs(with_task_sums(pa.Table.from_batches([batch]), taken), taken, tools)

    sink = ParquetSink(out, TASKS_SCHEMA, finished, threaded=False)
    try:
        for batch in batches(rows, rows.column_names):
            sink(batch)
    except BaseException:
        sink.abort()  # the run's directory is removed by the caller
        raise
    sink.close()
    sums.finish()
    recorded.unlink()


def _ended_by(batch: pa.RecordBatch) -> float:
    """The time the last of a batch of recorded task rows was recorded (``recorded_s``: rows are recorded in time
    order), by which every call of its tasks had ended."""
    t = np.asarray(batch.column("recorded_s").to_numpy(zero_copy_only=False), dtype=float)
    return float(t.max()) if t.size else -np.inf


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
    workdir: str | Path | None = None,
    max_memory_mb: float | None = None,
) -> RunResult:
    """Run a scenario (a Scenario, a YAML path, or ``None`` for the default) and return its result
    (``workdir`` and ``max_memory_mb``: see :func:`run`).

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
    return run(s, progress=progress, workdir=workdir, max_memory_mb=max_memory_mb)


def save_run(result: RunResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write a result's tables, summary and manifest into ``out`` (atomic; refuses to overwrite by default).

    A simulated run's table files are moved there (renamed, not copied, on the same file system) the first time
    it is saved, and read from there afterwards; a later save copies them."""
    files = result.files()
    tables = {name: t for name, t in result._loaded.items() if name not in files}
    tables["pools"] = result.pools
    path = store.write_run(Path(out), tables, result.summary, result.manifest, overwrite=overwrite, files=files)
    if result._spill is not None:  # the files were the spill's: read them from the run now, drop the spill
        result._paths = {name: path / f"{name}.parquet" for name in files}
        result._spill.remove()
        result._spill = None
    return path
