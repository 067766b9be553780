"""Trace statistics: what a workload looks like, as numbers that can be compared across traces.

:func:`trace_stats` summarises a canonical trace (:mod:`agentsim.traces.schema`) as a table with one row
per statistic (``statistic``, ``value``, ``unit``), in this order:

=========================== ===============================================================================
statistic                   definition
=========================== ===============================================================================
calls, tasks, workloads     counts (a task is a session: all calls of one agent run or conversation)
span_s                      last task start minus first task start
task_rate_per_s             arrival rate of tasks: ``1 / mean(inter-arrival)`` = ``(tasks - 1) / span_s``
call_rate_per_s             ``task_rate_per_s * calls / tasks``
interarrival_cv             coefficient of variation (std / mean, population std) of the gaps between
                            consecutive task starts: 1 for Poisson arrivals, > 1 bursty
prompt_tokens_{mean,p50,p90,p99}   per call
output_tokens_{mean,p50,p90,p99}   per call
calls_per_task_{mean,p50,p90,p99}  steps per task / session
gap_s_mean                  mean ``gap_s`` of calls that wait for another call (tool or think time);
                            NaN when no call does
prefix_reuse                fraction of all prompt tokens that an unbounded prefix cache would have
                            served (defined below)
hashed_calls                fraction of calls that carry block hash ids
=========================== ===============================================================================

Percentiles use linear interpolation between order statistics (numpy's default).

**Prefix reuse with an unbounded cache.** Calls are visited in release order (``release_s``; a call without
one takes its task's start time; ties in file order) and every prompt block ever sent stays cached.

* A call with ``hash_ids``: block ``k`` is a hit if its id was seen in an *earlier* call; a hit counts the
  tokens the block holds, ``min(block, prompt - k * block)`` (the last block is usually partial). This is
  the definition that reproduces the published Mooncake figures: 37.4% for the conversation trace and 65.1%
  for the synthetic one (counting every hit block as a full 512 tokens gives 37.4% and 65.2%; counting
  blocks rather than tokens gives 36.6% and 64.0%).
* A call without hash ids: its linked prefix (``prefix_tokens`` when ``prefix_call_id`` is set: the earlier
  call it extends was cached), or its workload's shared prefix (``prefix_tokens`` of an unlinked call) when
  an earlier call of the same workload already sent a shared prefix of that length.

The statistic is the hit tokens over all prompt tokens.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentsim.traces.io import read_table, read_table_columns
from agentsim.traces.schema import DEFAULT_BLOCK_SIZE, META_BLOCK

STAT_COLUMNS = ("statistic", "value", "unit")

_COLUMNS = [
    "task_id",
    "call_id",
    "call_index",
    "workload",
    "deps",
    "gap_s",
    "gap_is_tool",
    "release_s",
    "prompt_tokens",
    "output_tokens",
    "prefix_call_id",
    "prefix_tokens",
    "hash_ids",
]


def block_size_of(table: pa.Table) -> int:
    """The ``block_size_tokens`` of a canonical table's metadata (default 512)."""
    raw = (table.schema.metadata or {}).get(META_BLOCK.encode())
    try:
        return int(raw) if raw else DEFAULT_BLOCK_SIZE
    except ValueError:
        return DEFAULT_BLOCK_SIZE


def load_for_stats(source: str | os.PathLike[str] | pa.Table) -> pa.Table:
    """The columns the statistics need, from a path or a canonical table."""
    if isinstance(source, pa.Table):
        table = source
    else:
        table = read_table(source, columns=[c for c in _COLUMNS if c in read_table_columns(source)])
    if "gap_is_tool" not in table.schema.names:  # an optional column (older files)
        table = table.append_column("gap_is_tool", pa.array(np.zeros(table.num_rows, dtype=np.bool_)))
    return table.select(_COLUMNS).combine_chunks()


def task_starts(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``(start time per task, task index per row)`` in file order (tasks are contiguous)."""
    tid = table.column("task_id").to_numpy()
    n = len(tid)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = tid[1:] != tid[:-1]
    task_of_row = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    release = table.column("release_s").to_numpy(zero_copy_only=False).astype(np.float64)
    gap = table.column("gap_s").to_numpy()
    starts = release[first] - gap[first]
    return starts, task_of_row


def _pcts(x: np.ndarray) -> tuple[float, float, float, float]:
    if len(x) == 0:
        return (math.nan,) * 4
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return float(np.mean(x)), float(p50), float(p90), float(p99)


def prefix_reuse(table: pa.Table, block_size: int | None = None) -> tuple[float, int, int]:
    """``(fraction, hit tokens, prompt tokens)`` of prefix reuse with an unbounded cache (module docstring)."""
    block = block_size_of(table) if block_size is None else block_size
    n = table.num_rows
    prompt = table.column("prompt_tokens").to_numpy()
    total = int(prompt.sum())
    if n == 0 or total == 0:
        return math.nan, 0, total
    starts, task_of_row = task_starts(table)
    release = table.column("release_s").to_numpy(zero_copy_only=False).astype(np.float64)
    eff = np.where(np.isnan(release), starts[task_of_row], release)
    order = np.argsort(eff, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # position of each row in release order

    hits = 0
    hashes = table.column("hash_ids").combine_chunks() if table.num_rows else None
    hashed = ~hashes.is_null().to_numpy(zero_copy_only=False) if hashes is not None else np.zeros(n, dtype=bool)
    if hashed.any():
        assert hashes is not None
        lengths = pc.list_value_length(hashes).fill_null(0).to_numpy()
        values = pc.list_flatten(hashes).to_numpy()
        row_of = np.repeat(np.arange(n), lengths)
        k_in_row = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        pos = rank[row_of]
        _, inv = np.unique(values, return_inverse=True)
        first_pos = np.full(int(inv.max()) + 1 if len(inv) else 0, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_pos, inv, pos)
        hit = first_pos[inv] < pos
        tokens = np.minimum(block, prompt[row_of] - k_in_row * block)
        hits += int(tokens[hit].sum())

    linked = ~hashed
    if linked.any():
        prefix = table.column("prefix_call_id")
        has_link = ~prefix.is_null().to_numpy(zero_copy_only=False)
        ptok = table.column("prefix_tokens").to_numpy()
        hits += int(ptok[linked & has_link].sum())
        shared_rows = np.flatnonzero(linked & ~has_link & (ptok > 0))
        if len(shared_rows):
            wl = table.column("workload").to_pylist()
            seen: set[tuple[str, int]] = set()
            for r in shared_rows[np.argsort(rank[shared_rows], kind="stable")]:
                key = (wl[r], int(ptok[r]))
                if key in seen:
                    hits += int(ptok[r])
                else:
                    seen.add(key)
    return hits / total, hits, total


def stats_dict(source: str | os.PathLike[str] | pa.Table) -> dict[str, float]:
    """The statistics of :func:`trace_stats` as an ordered ``{statistic: value}`` mapping."""
    table = load_for_stats(source)
    n = table.num_rows
    starts, task_of_row = task_starts(table)
    tasks = len(starts)
    s = np.sort(starts)
    span = float(s[-1] - s[0]) if tasks else math.nan
    gaps = np.diff(s)
    rate = (tasks - 1) / span if tasks > 1 and span > 0 else math.nan
    cv = float(np.std(gaps) / np.mean(gaps)) if tasks > 2 and np.mean(gaps) > 0 else math.nan
    prompt = table.column("prompt_tokens").to_numpy()
    output = table.column("output_tokens").to_numpy()
    per_task = np.bincount(task_of_row) if n else np.zeros(0, dtype=np.int64)
    dep_len = pc.list_value_length(table.column("deps")).to_numpy(zero_copy_only=False) if n else np.zeros(0)
    gap = table.column("gap_s").to_numpy()
    waits = gap[dep_len > 0]
    reuse, _, _ = prefix_reuse(table)
    hashed = float(1.0 - table.column("hash_ids").null_count / n) if n else math.nan
    out: dict[str, float] = {
        "calls": float(n),
        "tasks": float(tasks),
        "workloads": float(len(pc.unique(table.column("workload")))) if n else 0.0,
        "span_s": span,
        "task_rate_per_s": rate,
        "call_rate_per_s": rate * n / tasks if tasks else math.nan,
        "interarrival_cv": cv,
    }
    for name, arr in (("prompt_tokens", prompt), ("output_tokens", output), ("calls_per_task", per_task)):
        m, p50, p90, p99 = _pcts(arr)
        out[f"{name}_mean"] = m
        out[f"{name}_p50"] = p50
        out[f"{name}_p90"] = p90
        out[f"{name}_p99"] = p99
    out["gap_s_mean"] = float(np.mean(waits)) if len(waits) else math.nan
    out["prefix_reuse"] = reuse
    out["hashed_calls"] = hashed
    return out


_UNITS = {
    "calls": "calls",
    "tasks": "tasks",
    "workloads": "workloads",
    "span_s": "s",
    "task_rate_per_s": "tasks/s",
    "call_rate_per_s": "calls/s",
    "interarrival_cv": "ratio",
    "gap_s_mean": "s",
    "prefix_reuse": "fraction",
    "hashed_calls": "fraction",
}


def unit_of(statistic: str) -> str:
    """The unit of a statistic's value."""
    if statistic in _UNITS:
        return _UNITS[statistic]
    if statistic.startswith("calls_per_task"):
        return "calls"
    return "tokens"


def trace_stats(source: str | os.PathLike[str] | pa.Table) -> pa.Table:
    """Statistics of a trace (a path or a canonical table): one row per statistic, columns ``statistic``
    (string), ``value`` (float64, NaN when undefined) and ``unit`` (string). See the module docstring."""
    d = stats_dict(source)
    return pa.table(
        {
            "statistic": pa.array(list(d), pa.string()),
            "value": pa.array(list(d.values()), pa.float64()),
            "unit": pa.array([unit_of(k) for k in d], pa.string()),
        }
    )


def stats_json(d: dict[str, float]) -> dict[str, Any]:
    """``d`` with NaN as ``None`` (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
