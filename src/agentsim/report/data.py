"""What reports read: a run directory or a sweep directory, read back into tables, and the series the figures draw.

A run directory (``agentsim run --out``) is read with :func:`agentsim.store.read_run` into a :class:`RunData`;
from it come the window latencies per workload (calls issued and tasks started at or after ``warmup_s``, as in
``summary.json``, with the unfinished ones counted apart) and each pool's samples as (time × replica) matrices. A
sweep directory (``agentsim sweep --out``) holds ``sweep.parquet``, one row per point (the axes by dotted path,
each summary metric's mean over the replications and its ``<name>.ci95`` half-width), and ``sweep.json``; it is
read into a :class:`SweepData`. Nothing here draws or formats.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from agentsim import spec, store
from agentsim.analysis.rows import call_latencies, col
from agentsim.report.errors import ReportError

SWEEP_FILE = "sweep.parquet"


@dataclass(frozen=True)
class Workload:
    """A workload's label (as in the tables) and its SLO fields (``None`` when unset)."""

    label: str
    slo: dict[str, float | None]


@dataclass(frozen=True)
class RunData:
    """One run directory, read back."""

    path: Path
    label: str
    calls: pa.Table
    tasks: pa.Table
    replicas: pa.Table
    pools: pa.Table | None
    summary: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def scenario(self) -> dict[str, Any]:
        """The resolved scenario as stored in the manifest (raw JSON)."""
        s = self.manifest.get("scenario")
        return s if isinstance(s, dict) else {}

    @property
    def warmup_s(self) -> float:
        return float(self.scenario.get("warmup_s", 0.0))

    @property
    def horizon_s(self) -> float:
        h = self.scenario.get("horizon_s")
        if h is not None:
            return float(h)
        t = col(self.replicas, "t_s")
        return float(t.max()) if t.size else 0.0

    @property
    def title(self) -> str:
        """``"<scenario name> (seed N)"``."""
        return f"{self.scenario.get('name', self.path.name)} (seed {self.manifest.get('seed', '?')})"

    def workloads(self) -> list[Workload]:
        """The scenario's workloads, labelled like the tables (:attr:`agentsim.spec.WorkloadSpec.label`)."""
        try:
            sc = spec.Scenario.model_validate(self.scenario)
        except ValidationError:
            sc = None  # written by another version: read the raw fields
        if sc is not None:
            return [Workload(w.label, w.slo.model_dump()) for w in sc.workload]
        out = []
        for w in self.scenario.get("workload", []):
            prof = w.get("profile")
            if w.get("name"):
                label = w["name"]
            elif w.get("kind") == "trace":
                label = PurePath(str(w.get("path", "trace"))).stem
            else:
                label = prof if isinstance(prof, str) else (prof or {}).get("kind", "workload")
            slo = {k: (float(v) if isinstance(v, int | float) else None) for k, v in (w.get("slo") or {}).items()}
            out.append(Workload(str(label), slo))
        return out


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read a run directory; :class:`ReportError` if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"{p}: no such run directory")
    missing = [
        f
        for f in ("summary.json", "manifest.json", "calls.parquet", "tasks.parquet", "replicas.parquet")
        if not (p / f).is_file()
    ]
    if missing:
        raise ReportError(f"{p}: not a run directory (missing {', '.join(missing)})")
    try:
        r = store.read_run(p)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ReportError(f"{p}: cannot read the run: {e}") from e
    return RunData(
        path=p,
        label=label or p.resolve().name,
        calls=r["calls"],
        tasks=r["tasks"],
        replicas=r["replicas"],
        pools=r.get("pools"),
        summary=r["summary"],
        manifest=r["manifest"],
    )


def load_runs(run_dirs: Sequence[str | Path]) -> list[RunData]:
    """Read several run directories, labelled by directory name (made unique with ``#i`` when names repeat)."""
    paths = [Path(p) for p in run_dirs]
    names = [p.resolve().name for p in paths]
    labels = [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]
    return [load_run(p, label) for p, label in zip(paths, labels, strict=True)]


def strings(table: pa.Table, name: str) -> np.ndarray:
    """A string column as an object array (``None`` kept), for comparisons with ``==``."""
    return np.asarray(table.column(name).to_pylist(), dtype=object)


# ------------------------------------------------------------------------------------------------ latencies


@dataclass(frozen=True)
class Latency:
    """Finished values of a latency, and how many were not finished (counted beyond the right edge of a CDF)."""

    values: np.ndarray
    censored: int


def latencies(run: RunData, metric: str) -> dict[str, Latency]:
    """Window values of ``metric`` (``ttft``, ``tpot``, ``call_e2e``, ``task``) by workload label."""
    w0 = run.warmup_s
    out: dict[str, Latency] = {}
    if metric == "task":
        t = run.tasks.filter(pa.array(col(run.tasks, "start_s") >= w0))
        dur = col(t, "done_s") - col(t, "start_s")
        wl = strings(t, "workload")
        for w in dict.fromkeys(wl.tolist()):
            d = dur[wl == w]
            out[str(w)] = Latency(d[~np.isnan(d)], int(np.isnan(d).sum()))
        return out
    c = run.calls.filter(pa.array(col(run.calls, "issue_s") >= w0))
    lat = call_latencies(c)[f"{metric}_s"]
    wl = strings(c, "workload")
    for w in dict.fromkeys(wl.tolist()):
        d = lat[wl == w]
        # TPOT is undefined for unfinished calls and single-token outputs alike: finished values only.
        out[str(w)] = Latency(d[~np.isnan(d)], 0 if metric == "tpot" else int(np.isnan(d).sum()))
    return out


def pooled(by: dict[str, Latency]) -> Latency:
    """All workloads' latencies together."""
    if not by:
        return Latency(np.empty(0), 0)
    return Latency(np.concatenate([v.values for v in by.values()]), sum(v.censored for v in by.values()))


# ---------------------------------------------------------------------------------------------- pool series


@dataclass(frozen=True)
class PoolSeries:
    """A pool's samples: times ``t`` (n) and one (n, replicas) matrix per column."""

    t: np.ndarray
    m: dict[str, np.ndarray]

    def rate(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Pool total of a cumulative counter per second, per interval (interval end times, rates)."""
        tot = np.nansum(self.m[name], axis=1)
        dt = np.diff(self.t)
        ok = dt > 0
        return self.t[1:][ok], (np.diff(tot)[ok] / dt[ok])

    def per_replica(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, min and max over replicas of a level."""
        v = self.m[name]
        return np.nanmean(v, axis=1), np.nanmin(v, axis=1), np.nanmax(v, axis=1)


_REPLICA_COLUMNS = ("running", "waiting", "kv_used_tokens", "kv_capacity_tokens", "output_tokens", "prefill_tokens")
_OPTIONAL_COLUMNS = ("kv_cached_tokens", "preemptions", "evicted_tokens")  # runs written before these existed lack them


def pool_series(run: RunData) -> dict[str, PoolSeries]:
    """Each pool's samples from ``replicas.parquet``, in the order of ``pools.parquet``."""
    r = run.replicas
    if r.num_rows == 0:
        return {}
    t = col(r, "t_s")
    pool = strings(r, "pool")
    rep = col(r, "replica").astype(np.int64)
    order = list(run.pools.column("pool").to_pylist()) if run.pools is not None else []
    order += [p for p in dict.fromkeys(pool.tolist()) if p not in order]
    out: dict[str, PoolSeries] = {}
    for p in order:
        m = pool == p
        if not m.any():
            continue
        ts = np.unique(t[m])
        reps = np.unique(rep[m])
        ti = np.searchsorted(ts, t[m])
        ri = np.searchsorted(reps, rep[m])
        mats: dict[str, np.ndarray] = {}
        for name in (*_REPLICA_COLUMNS, *(c for c in _OPTIONAL_COLUMNS if c in r.column_names)):
            a = np.full((ts.size, reps.size), np.nan)
            a[ti, ri] = col(r, name)[m]
            mats[name] = a
        out[str(p)] = PoolSeries(ts, mats)
    return out


# ---------------------------------------------------------------------------------------------------- sweeps


@dataclass(frozen=True)
class SweepData:
    """One sweep directory, read back: its table, its definition (``{}`` without ``sweep.json``) and axis names."""

    path: Path
    table: pa.Table
    definition: dict[str, Any]
    axes: list[str]

    @property
    def title(self) -> str:
        base = self.definition.get("base")
        name = base.get("name") if isinstance(base, dict) else None
        return f"sweep of {name or self.path.resolve().name}"

    def values(self, name: str) -> np.ndarray:
        """A metric column as float (NaN for nulls or when the column is absent)."""
        if name not in self.table.column_names:
            return np.full(self.table.num_rows, np.nan)
        return col(self.table, name)

    def is_numeric(self, axis: str) -> bool:
        t = self.table.schema.field(axis).type
        return (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_boolean(t)


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep directory (holds ``sweep.parquet``)."""
    return (Path(path) / SWEEP_FILE).is_file()


def load_sweep(path: str | Path) -> SweepData:
    """Read a sweep directory; :class:`ReportError` if it is not one."""
    p = Path(path)
    if not is_sweep_dir(p):
        raise ReportError(f"{p}: not a sweep directory (missing {SWEEP_FILE})")
    try:
        table = pq.read_table(p / SWEEP_FILE)
        definition = json.loads((p / "sweep.json").read_text()) if (p / "sweep.json").is_file() else {}
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ReportError(f"{p}: cannot read the sweep: {e}") from e
    names = table.column_names
    declared = definition.get("axes") if isinstance(definition, dict) else None
    if isinstance(declared, dict):
        axes = [a for a in declared if a in names]
    else:  # the columns between ``point`` and ``replications``
        lo = names.index("point") + 1 if "point" in names else 0
        hi = names.index("replications") if "replications" in names else lo
        axes = names[lo:hi]
    return SweepData(p, table, definition if isinstance(definition, dict) else {}, axes)
