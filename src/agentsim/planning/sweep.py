"""Sweeps: one scenario run over a grid of parameter values, with replications, on any executor.

::

    import agentsim
    base = agentsim.load_scenario("coding.yaml")
    table = agentsim.sweep(base, {"cluster.pools[0].replicas": [4, 8, 16],
                                  "cluster.router.kind": ["round-robin", "prefix-aware"]},
                           replications=5, out="sweeps/s1")

**Points.** ``axes`` maps a dotted scenario path (as ``--set`` writes it) to the values it takes. The points
are the cross product of the axes in the order given, the first axis varying slowest, or with ``zip=True`` the
axes paired element by element (all of one length). A point's values are set on the fully resolved base
scenario; setting a ``kind`` to a different variant starts that object afresh from the new variant's
defaults (``cluster.router.kind: round-robin`` on a ``prefix-aware`` router drops ``balance_tokens``), and
``kind`` paths are applied before the other paths, so a second axis may fill the new variant's fields. Every
point is validated, and checked against the catalog, before anything runs.

**Replications and seeds.** The ``R`` replications of a point use the seeds
``SeedSequence(seed).spawn(R)[r].generate_state(1, uint32)[0]`` for ``r = 0..R-1``, where ``seed`` is the
point's scenario seed, i.e. the base seed unless ``seed`` itself is an axis. So every point runs with the *same*
``R`` seeds: common random numbers. Since agentsim draws each workload's tasks and arrivals from named streams
of the seed, points that differ only in the cluster see identical tasks arriving at identical times, and
differences between points are not drowned in sampling noise.

**Results.** One row per point: ``point`` (its index), one column per axis named by its path, ``replications``,
then for every numeric leaf of the run summary, flattened with dots (``ttft_s.p99``, ``usd_per_mtok_output``,
``slo_attainment.calls``, ``slo_attainment.by_workload.<w>.targets_met.ttft_p99_s`` with booleans as 0/1; of
``accuracy``, per pool with public figures, the run's ``accuracy.<pool>.regime.prompt_per_output`` and the model
error its regime is judged on, ``accuracy.<pool>.model_error_pct.<metric>`` and ``accuracy.<pool>.model_bias_pct``:
:func:`accuracy_leaves`), the
mean over the replications and, in ``<name>.ci95``, the half-width of its two-sided 95% Student-t confidence
interval ``t(0.975, R-1) * s / sqrt(R)`` (null when ``R = 1``). A replication whose value is null (no finished
task, say) is left out of that metric's mean and interval. Last, ``run_ids`` and ``seeds``: the point's runs.

**Storage and resuming.** A run's id is the first 16 hex digits of the SHA-256 of its resolved scenario (seed
included) as canonical JSON. With ``out``, each finished run is written atomically to
``out/runs/<run_id>/`` (``summary.json`` and ``manifest.json``; the four Parquet tables too with
``keep_tables=True``) as soon as it finishes, and runs found there are read instead of recomputed: running
the same sweep again with the same ``out`` resumes an interrupted one, and never recomputes or loses a finished
run. The table is written to ``out/sweep.parquet`` and the sweep's definition to ``out/sweep.json``, both
atomically. Ids do not include the agentsim version (each run's ``manifest.json`` records it): after an upgrade
that changes results, start a new ``out``.

**Executors.** ``executor`` is any :class:`concurrent.futures.Executor` (the caller keeps ownership: it is not
shut down here) or a ``dask.distributed.Client`` (its ``get_executor()`` is used). ``None``: a local process
pool of ``workers`` processes (default ``os.cpu_count()``), or everything inline in this process when
``workers == 1``. Workers run :func:`run_point`, a top-level function of a scenario's JSON and a seed that
returns the summary (and the tables, when kept); the results are stored by the calling process, so Dask
workers need no shared file system.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import ctypes.util
import hashlib
import importlib
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agentsim import api, preflight, spec, store
from agentsim._version import __version__
from agentsim.analysis.accuracy import figures_of, has_figures
from agentsim.analysis.batches import t975
from agentsim.errors import ScenarioError
from agentsim.files import OutputExistsError, atomic_path, check_output, write_text
from agentsim.resolve import resolve

__all__ = [
    "ProgressFn",
    "Run",
    "apply_values",
    "executor_session",
    "flatten_summary",
    "grid",
    "map_unordered",
    "open_executor",
    "plan_runs",
    "replication_seeds",
    "run_id",
    "run_point",
    "scenario_json",
    "sweep",
    "t975",
]

ProgressFn = Callable[[int, int], None]
"""``progress(points_done, points_total)``: called once at the start and after every finished point."""

RUN_ID_HEX = 16

zip_ = zip  # the builtin: ``zip`` is also a keyword argument of this module's functions


# --------------------------------------------------------------------------------------------- points


def grid(axes: Mapping[str, Sequence[Any]], *, zip: bool = False) -> list[dict[str, Any]]:
    """The points of ``axes``: the cross product (first axis slowest), or the axes paired with ``zip``."""
    names = list(axes)
    columns = [list(axes[n]) for n in names]
    for n, c in zip_(names, columns):
        if not c:
            raise ValueError(f"axis {n!r} has no values")
        api.parse_path(n)  # raises ValueError on a malformed path
    if zip:
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            sizes = ", ".join(f"{n}: {len(c)}" for n, c in zip_(names, columns))
            raise ValueError(f"zipped axes must have the same number of values ({sizes})")
        rows: Iterable[tuple[Any, ...]] = zip_(*columns)
    else:
        rows = itertools.product(*columns)
    return [dict(zip_(names, r)) for r in rows] if names else [{}]


def apply_values(base: spec.Scenario, values: Mapping[str, Any], *, source: str = "sweep point") -> spec.Scenario:
    """``base`` with each ``path: value`` of ``values`` set (``kind`` paths first) and validated."""
    data = base.model_dump(mode="json")
    ordered = sorted(values.items(), key=lambda kv: api.parse_path(kv[0])[-1] != "kind")
    for path, value in ordered:
        api.set_path(data, path, value, "sweep axis")
    return api.validate_data(data, source)


def replication_seeds(seed: int, replications: int) -> list[int]:
    """The seeds of ``replications`` runs spawned from ``seed`` (``numpy.random.SeedSequence.spawn``)."""
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    children = np.random.SeedSequence(seed).spawn(replications)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def scenario_json(scenario: spec.Scenario) -> str:
    """The canonical JSON of a resolved scenario: sorted keys, no whitespace."""
    return json.dumps(scenario.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def run_id(scenario: spec.Scenario) -> str:
    """A run's id: the first 16 hex digits of the SHA-256 of its resolved scenario's canonical JSON."""
    return hashlib.sha256(scenario_json(scenario).encode()).hexdigest()[:RUN_ID_HEX]


@dataclass(frozen=True)
class Run:
    """One simulation of a sweep: a replication of a point."""

    point: int
    replication: int
    seed: int
    scenario: spec.Scenario
    run_id: str


# --------------------------------------------------------------------------------------------- workers


def run_point(
    scenario_json: str, seed: int, keep_tables: bool = False, max_memory_mb: float | None = None
) -> dict[str, Any]:
    """Worker function: simulate the scenario given as JSON with ``seed``; return ``{"summary", "manifest"}``
    (plus ``"tables"``, the four Arrow tables, with ``keep_tables``). Top-level, so executors can pickle it.
    ``max_memory_mb``: see :func:`agentsim.api.run` (:func:`sweep` checks every run before it starts any)."""
    scenario = api.validate_data(json.loads(scenario_json), "sweep run")
    result = api.simulate(scenario, seed=seed, max_memory_mb=max_memory_mb)
    out: dict[str, Any] = {"summary": result.summary, "manifest": result.manifest}
    if keep_tables:
        out["tables"] = {
            "calls": result.calls,
            "tasks": result.tasks,
            "replicas": result.replicas,
            "pools": result.pools,
        }
    return out


def die_with_parent() -> None:
    """Initializer of every local worker process: the worker ends when the process that started it ends, even
    when that one is killed (SIGKILL leaves no chance to shut a pool down), instead of living on forever.
    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere, and as a backstop, a daemon thread that exits the
    worker once its parent process id changes (the orphan was re-parented)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="agentsim-parent-watch", daemon=True).start()


def _is_dask_client(executor: object) -> bool:
    return not isinstance(executor, cf.Executor) and callable(getattr(executor, "get_executor", None))


@contextlib.contextmanager
def open_executor(executor: Any = None, workers: int | None = None) -> Iterator[cf.Executor | None]:
    """The executor to use: the one given (a Dask client becomes its ``get_executor()``; neither is shut down
    here), ``None`` for inline execution when ``workers == 1``, else a process pool of ``workers`` processes
    (default ``os.cpu_count()``) that is shut down on exit. The pool uses the platform's default start
    method (``fork`` on Linux before Python 3.14: no re-import, and scripts need no ``__main__`` guard; with
    ``spawn`` or ``forkserver`` a script must guard its sweep with ``if __name__ == "__main__":``)."""
    if executor is not None:
        yield executor.get_executor() if _is_dask_client(executor) else executor
        return
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {n}")
    if n == 1:
        yield None
        return
    pool = cf.ProcessPoolExecutor(max_workers=n, initializer=die_with_parent)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def executor_session(dask: str | None = None, workers: int | None = None) -> Iterator[tuple[Any, int | None]]:
    """``(executor, workers)`` to pass to :func:`sweep` or :func:`agentsim.planning.plan.plan`, for a command line: a
    ``dask.distributed.Client`` connected to the scheduler at ``dask`` (closed on exit), else a local process
    pool whose workers are started at once, before the caller starts any thread such as a progress bar (forking
    a process that has threads is unsafe), else ``(None, 1)`` to run inline when ``workers == 1``. Raises
    ``ImportError`` when Dask is asked for but not installed, ``OSError`` when the scheduler cannot be reached."""
    if dask:
        try:
            distributed: Any = importlib.import_module("distributed")
        except ImportError:
            raise ImportError("--dask needs the dask extra: pip install 'agentsim[dask]'") from None
        try:
            client = distributed.Client(dask, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise OSError(f"cannot connect to the Dask scheduler at {dask}: {e}") from None
        try:
            yield client, None
        finally:
            client.close()
        return
    with open_executor(None, workers) as ex:
        if isinstance(ex, cf.ProcessPoolExecutor):
            ex.submit(int).result()  # start (fork) the workers now, while this process has a single thread
        yield ex, (1 if ex is None else workers)  # the pool's size: its runs share this machine's memory


def runs_at_once(executor: Any, workers: int | None) -> int:
    """How many runs share this machine's memory at once: the local process pool's (``workers``, default one per
    core) unless the runs go to a Dask cluster, whose workers have their own memory (then one at a time here)."""
    if executor is not None and _is_dask_client(executor):
        return 1
    return workers if workers is not None else (os.cpu_count() or 1)


def map_unordered(
    fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], executor: cf.Executor | None
) -> Iterator[tuple[int, Any]]:
    """``(index, fn(*jobs[index]))`` as each job finishes: inline in order when ``executor`` is None, else
    submitted all at once and yielded in completion order. An exception (in a job or in the consumer)
    cancels the jobs not yet started."""
    if executor is None:
        for i, args in enumerate(jobs):
            yield i, fn(*args)
        return
    futures = {executor.submit(fn, *args): i for i, args in enumerate(jobs)}
    try:
        for fut in cf.as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        for fut in futures:
            fut.cancel()


# --------------------------------------------------------------------------------------------- statistics


def accuracy_leaves(accuracy: Mapping[str, Any]) -> dict[str, float | None]:
    """What a run decides of each pool's accuracy entry (a summary's ``accuracy``), for pools with public figures:
    the prompt tokens it computed per output token (``accuracy.<pool>.regime.prompt_per_output``, the summary's path;
    null for a pool that only prefills) and the figures that regime is judged on
    (``accuracy.<pool>.model_error_pct.<metric>`` and ``accuracy.<pool>.model_bias_pct``, throughput's signed error,
    named apart from the summary's class figures ``mape_pct``/``bias_pct``: its regime's rows where they apply, else
    its class's,
    :func:`agentsim.analysis.accuracy.figures_of`). Along a sweep the ratio moves with the load and the cache, and
    with it the error that speaks for the point: a point whose replications fall in different regimes averages
    their figures (its ratio says where it sits). Nothing for a pool the figures do not cover."""
    out: dict[str, float | None] = {}
    for pool, entry in accuracy.items():
        if not has_figures(entry):
            continue
        key = f"accuracy.{pool}."
        regime = entry.get("regime")
        if regime is not None:
            out[key + "regime.prompt_per_output"] = regime["prompt_per_output"]
        figures = figures_of(entry)
        for metric, value in figures.mape_pct.items():
            out[f"{key}model_error_pct.{metric}"] = value
        out[key + "model_bias_pct"] = figures.bias_pct.get("output_tok_s")
    return out


def flatten_summary(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """The numeric leaves of a summary keyed by dotted path, booleans as 0/1, nulls kept as None; of its
    ``accuracy`` what a run decides (:func:`accuracy_leaves`: the rest is a constant of each pool's class, nothing to
    average over replications)."""
    out: dict[str, float | None] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if not prefix and k == "accuracy":
            out.update(accuracy_leaves(v))
            continue
        if isinstance(v, Mapping):
            out.update(flatten_summary(v, key + "."))
        elif isinstance(v, bool | int | float):
            out[key] = float(v)
        elif v is None:
            out[key] = None
    return out


def _mean_ci(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    mean = math.fsum(v) / len(v)
    if len(v) < 2:
        return mean, None
    var = math.fsum((x - mean) ** 2 for x in v) / (len(v) - 1)
    return mean, t975(len(v) - 1) * math.sqrt(var / len(v))


def _axis_array(values: list[Any]) -> pa.Array:
    if all(v is None or isinstance(v, bool | int | float | str) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pa.array([json.dumps(v, sort_keys=True) for v in values], type=pa.string())


def _table(
    points: list[dict[str, Any]], axis_names: list[str], runs: list[list[Run]], summaries: dict[str, dict[str, Any]]
) -> pa.Table:
    flat = [[flatten_summary(summaries[r.run_id]) for r in point_runs] for point_runs in runs]
    metrics: dict[str, None] = {}
    for point in flat:
        for f in point:
            metrics.update(dict.fromkeys(f))
    cols: dict[str, pa.Array] = {"point": pa.array(range(len(points)), type=pa.int64())}
    for name in axis_names:
        cols[name] = _axis_array([p[name] for p in points])
    cols["replications"] = pa.array([len(r) for r in runs], type=pa.int64())
    for m in metrics:
        stats = [_mean_ci([f.get(m) for f in point]) for point in flat]
        cols[m] = pa.array([s[0] for s in stats], type=pa.float64())
        cols[f"{m}.ci95"] = pa.array([s[1] for s in stats], type=pa.float64())
    cols["run_ids"] = pa.array([[r.run_id for r in rr] for rr in runs], type=pa.list_(pa.string()))
    cols["seeds"] = pa.array([[r.seed for r in rr] for rr in runs], type=pa.list_(pa.int64()))
    return pa.table(cols)


# --------------------------------------------------------------------------------------------- storage


def _read_finished(out: Path, rid: str) -> dict[str, Any] | None:
    f = out / "runs" / rid / "summary.json"
    if not f.is_file():
        return None
    summary: dict[str, Any] = json.loads(f.read_text())
    return summary


def _store(out: Path, run: Run, result: dict[str, Any]) -> None:
    manifest = dict(result["manifest"], run_id=run.run_id)
    # RunExistsError: finished meanwhile by another sweep sharing ``out``: same scenario and seed, same result.
    with contextlib.suppress(store.RunExistsError):
        store.write_run(out / "runs" / run.run_id, result.get("tables", {}), result["summary"], manifest)


# --------------------------------------------------------------------------------------------- sweep


def plan_runs(
    base: spec.Scenario, axes: Mapping[str, Sequence[Any]], replications: int, *, zip: bool = False
) -> tuple[list[dict[str, Any]], list[list[Run]]]:
    """The points of a sweep and, per point, its runs (validated and checked against the catalog)."""
    from agentsim.catalog import load_catalog
    from agentsim.resolve import resolve

    packaged = load_catalog()
    points = grid(axes, zip=zip)
    runs: list[list[Run]] = []
    for i, values in enumerate(points):
        label = f"sweep point {i} ({_describe(values)})"
        scenario = apply_values(base, values, source=label)
        try:
            resolve(scenario, packaged)
        except ScenarioError as e:
            raise ScenarioError(e.errors, label) from None
        point_runs = []
        for r, seed in enumerate(replication_seeds(scenario.seed, replications)):
            seeded = scenario.model_copy(update={"seed": seed})
            point_runs.append(Run(i, r, seed, seeded, run_id(seeded)))
        runs.append(point_runs)
    return points, runs


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "base"


def sweep(
    base: spec.Scenario,
    axes: Mapping[str, Sequence[Any]],
    *,
    replications: int = 1,
    zip: bool = False,
    executor: Any = None,
    workers: int | None = None,
    out: str | Path | None = None,
    keep_tables: bool = False,
    progress: ProgressFn | None = None,
    max_memory_mb: float | None = None,
) -> pa.Table:
    """Run ``base`` at every point of ``axes`` with ``replications`` seeds each; one row per point.

    See the module docstring for the points, the seeds, the columns, storage under ``out`` (resumable) and the
    executors. Raises :class:`ScenarioError` if a point is not a valid scenario, before running anything, and
    :class:`~agentsim.preflight.MemoryLimitError` if the largest run times the local workers running at once
    is estimated above ``max_memory_mb`` (default: half the machine's memory; 0: no limit).
    """
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        check_sweep_dir(out_dir, base, axes)
    points, runs = plan_runs(base, axes, replications, zip=zip)
    axis_names = list(axes)
    summaries: dict[str, dict[str, Any]] = {}
    todo: list[Run] = []
    seen: set[str] = set()
    for point_runs in runs:
        for run in point_runs:
            if run.run_id in seen:
                continue  # two points that resolve to the same scenario share their runs
            seen.add(run.run_id)
            found = _read_finished(out_dir, run.run_id) if out_dir is not None else None
            if found is not None:
                summaries[run.run_id] = found
            else:
                todo.append(run)
    if out_dir is not None:
        _write_definition(out_dir, base, axes, zip, replications, points, runs)

    def points_done() -> int:
        return sum(all(r.run_id in summaries for r in rr) for rr in runs)

    if progress is not None:
        progress(points_done(), len(points))
    if todo:
        limit = preflight.default_limit_mb() if max_memory_mb is None else max_memory_mb
        at_once = min(len(todo), runs_at_once(executor, workers))
        points_todo = {r.point: r.scenario for r in todo}.values()  # replications differ only in their seeds
        preflight.check_many((resolve(s) for s in points_todo), limit, at_once)
    jobs = [(scenario_json(r.scenario), r.seed, keep_tables, 0.0) for r in todo]  # checked above
    with open_executor(executor, workers) as ex:
        for i, result in map_unordered(run_point, jobs, ex):
            run = todo[i]
            if out_dir is not None:
                _store(out_dir, run, result)
            summaries[run.run_id] = result["summary"]
            if progress is not None:
                progress(points_done(), len(points))
    table = _table(points, axis_names, runs, summaries)
    if out_dir is not None:
        with atomic_path(out_dir / "sweep.parquet", overwrite=True) as tmp:  # rewritten on resume, by design
            pq.write_table(table, tmp, compression="zstd")
    return table


def _identity(base: spec.Scenario, axes: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """What makes two sweeps the same study: the base scenario and the axes' paths. Values, pairing and
    replications may change between runs into one directory (a grid extended, replications added: the runs
    already there are reused)."""
    doc = {"base": base.model_dump(mode="json"), "axes": list(axes)}
    same: dict[str, Any] = json.loads(json.dumps(doc, default=str))
    return same


def check_sweep_dir(out: Path, base: spec.Scenario, axes: Mapping[str, Sequence[Any]]) -> None:
    """Refuse, before running anything, an ``out`` that this sweep must not write into: a file, a directory
    that is not a sweep's (a run directory, say), or the directory of a *different* sweep (another base scenario
    or other axes, :func:`_identity`: its ``sweep.parquet`` would be replaced); and an ``out`` that cannot be
    written. The same sweep's directory is resumed (or extended).
    Raises :class:`OutputExistsError` or :class:`~agentsim.files.OutputPathError`."""
    out = Path(out)
    check_output(out, overwrite=True, directory=True)
    if not out.exists():
        return
    definition = out / "sweep.json"
    if not definition.is_file():
        if any(not p.name.startswith(".") for p in out.iterdir()):
            raise OutputExistsError(
                f"{out} exists and is not a sweep directory (no sweep.json); choose another --out"
            )
        return
    try:
        old = json.loads(definition.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OutputExistsError(f"{definition}: cannot read the sweep definition ({e}); choose another --out") from None
    new = _identity(base, axes)
    was = {"base": old.get("base"), "axes": list(old.get("axes") or {})}
    diff = [k for k in new if was.get(k) != new[k]]
    if diff:
        raise OutputExistsError(
            f"{out} holds a different sweep ({', '.join(diff)} differ); choose another --out to keep both, or "
            "rerun the same sweep there to resume it"
        )


def _write_definition(
    out: Path,
    base: spec.Scenario,
    axes: Mapping[str, Sequence[Any]],
    zip: bool,
    replications: int,
    points: list[dict[str, Any]],
    runs: list[list[Run]],
) -> None:
    doc = {
        "agentsim_version": __version__,
        "base": base.model_dump(mode="json"),
        "axes": {k: list(v) for k, v in axes.items()},
        "zip": zip,
        "replications": replications,
        "points": [
            {"values": p, "run_ids": [r.run_id for r in rr], "seeds": [r.seed for r in rr]}
            for p, rr in zip_(points, runs)
        ],
    }
    text = json.dumps(doc, indent=2, default=str) + "\n"
    write_text(out / "sweep.json", text, overwrite=True)  # rewritten on resume, by design
