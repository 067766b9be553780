"""Traces: workloads as files, one row per LLM call.

A *trace* is a recorded (or synthesized) workload: which tasks started when, and for each task the calls it
made, how they depended on each other, how many tokens each sent and received, and which part of each prompt
was a prefix some earlier call had already sent. agentsim keeps every trace in one **canonical schema**
(``traces/SCHEMA.md``), written as Parquet, whatever it came from: a profile (``agentsim trace generate``),
Mooncake or Azure production logs, BurstGPT, agent-session logs (:mod:`agentsim.traces.importers`). Because
generation and import write through the same :class:`TraceWriter` and replay reads through the same
:func:`read_trace`, a synthetic trace and a production trace are interchangeable downstream.

**Tasks are DAGs, rows are calls.** A task is what :mod:`agentsim.workload.taskgraph` calls a
:class:`~agentsim.workload.taskgraph.TaskTemplate`: calls in topological order, each waiting for its
dependencies (``deps``), then for ``gap_s`` (tool time, think time), then sent. In the file each call is a
row; its dependencies are the ``call_id`` values of the calls it waits for; ``gap_is_tool`` says whether the gap
is a tool call (which may queue on the cluster's tool workers) or think time. ``release_s`` is the time the call
was (or, in open-loop replay, will be) sent, when that is known independently of the serving system: always
for a task's first call (the task start is ``release_s - gap_s`` of its first call), and for every call of a
timestamped production log; ``null`` for later calls of a synthetic task, whose send time depends on how
fast the cluster answers.

**Prefix identity, two ways.**

* *Links* (what profiles produce): ``prefix_call_id`` names the earlier call of the same task whose **whole
  prompt** is the cacheable prefix of this call (``TaskTemplate``'s ``prefix_parent``), and
  ``prefix_tokens`` is its length, i.e. that call's ``prompt_tokens``. A call without a link
  (``prefix_call_id`` null) shares only the workload's shared system prompt, ``prefix_tokens`` long (0 for
  none); every such call of a task carries the same value (``TaskTemplate.shared_prefix_tokens``).
* *Block hashes* (what Mooncake-style logs carry): ``hash_ids`` lists one id per ``block_size_tokens``-token
  block of the prompt, exactly ``ceil(prompt_tokens / block_size_tokens)`` of them, where each id stands for
  the block *and everything before it*: two prompts share their first ``k`` blocks iff their first ``k`` ids
  are equal. This captures sharing across tasks (a popular document, a common system prompt) that links
  cannot. When present they are authoritative for cache identity; the block size is in the file metadata.

**File-level rules** (checked by :func:`read_trace`): rows of a task are contiguous and in ``call_index``
order ``0, 1, ...``; ``task_id`` and ``call_id`` increase strictly through the file (so ids are unique
without a global index); tasks are sorted by start time. Files carry schema metadata
``agentsim_trace_version``, ``block_size_tokens`` and ``source``.

Everything streams: :class:`TraceWriter` appends record batches through ``pyarrow.parquet.ParquetWriter``,
:func:`read_trace` walks ``iter_batches``, so memory is bounded by the batch size, not the file.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import chain, pairwise
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agentsim.rng import Streams
from agentsim.spec import AgentProfile, FixedProfile, GammaArrivals, Poisson
from agentsim.workload.arrivals import OpenArrivals
from agentsim.workload.distributions import BLOCK, sample
from agentsim.workload.profiles import TaskFactory
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate

TRACE_VERSION = "1"
"""Version of the canonical schema, stored as ``agentsim_trace_version`` in every file."""

DEFAULT_BLOCK_SIZE = 512
"""Tokens per hash block when a source does not say (Mooncake's block size)."""

BATCH_ROWS = 65_536
"""Rows per record batch written or read: the unit of memory for streaming."""

META_VERSION = "agentsim_trace_version"
META_BLOCK = "block_size_tokens"
META_SOURCE = "source"

COLUMNS: tuple[tuple[str, Any, bool], ...] = (
    ("task_id", pa.int64(), False),
    ("call_id", pa.int64(), False),
    ("call_index", pa.int32(), False),
    ("workload", pa.string(), False),
    ("deps", pa.list_(pa.field("item", pa.int64(), nullable=False)), False),
    ("gap_s", pa.float64(), False),
    ("gap_is_tool", pa.bool_(), False),
    ("release_s", pa.float64(), True),
    ("prompt_tokens", pa.int64(), False),
    ("output_tokens", pa.int64(), False),
    ("prefix_call_id", pa.int64(), True),
    ("prefix_tokens", pa.int64(), False),
    ("hash_ids", pa.list_(pa.field("item", pa.int64(), nullable=False)), True),
)
"""``(name, Arrow type, nullable)`` of each column, in file order (documented in ``traces/SCHEMA.md``)."""

COLUMN_NAMES = tuple(c[0] for c in COLUMNS)

OPTIONAL_COLUMNS = ("gap_is_tool",)
"""Columns a reader fills with their default (``False``) when a file lacks them."""


def trace_schema(*, source: str = "", block_size_tokens: int = DEFAULT_BLOCK_SIZE) -> pa.Schema:
    """The canonical Arrow schema with its file metadata."""
    fields = [pa.field(name, typ, nullable=nullable) for name, typ, nullable in COLUMNS]
    meta = {META_VERSION: TRACE_VERSION, META_BLOCK: str(int(block_size_tokens)), META_SOURCE: source}
    return pa.schema(fields, metadata=meta)


class TraceError(ValueError):
    """A trace or a trace source that cannot be used; the message names the file and the row or line."""


class OutputExistsError(TraceError):
    """The output path exists and overwriting was not asked for."""


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True, slots=True)
class TraceMeta:
    """What a trace file says about itself."""

    version: str
    block_size_tokens: int
    source: str
    rows: int


@dataclass(frozen=True, slots=True)
class TraceTask:
    """One task of a trace, ready to replay.

    ``template`` holds the DAG (deps as indices within the task, gaps, tokens, ``prefix_parent`` indices:
    the ``prefix_call_id`` column mapped to positions). The per-call tuples run parallel to
    ``template.calls``: ``call_ids`` (the file's ids), ``release_s`` (open-loop send time or ``None``) and
    ``hash_ids`` (block hashes or ``None``). ``start_s`` is when the task starts (its first call's
    ``release_s - gap_s``).

    Tasks read from a file are ready for the engine as they are: each call template also carries its
    ``hash_ids`` and ``gap_is_tool``, and ``template.block_tokens`` is the file's block size when any call
    has hash ids (0 otherwise).
    """

    task_id: int
    start_s: float
    template: TaskTemplate
    call_ids: tuple[int, ...]
    release_s: tuple[float | None, ...]
    hash_ids: tuple[tuple[int, ...] | None, ...]

    @property
    def workload(self) -> str:
        """The workload label of the task (every call of a task has the same one)."""
        return self.template.workload

    def validate(self, block_size_tokens: int) -> None:
        """Raise ``ValueError`` if the task breaks a rule of the schema (see the module docstring)."""
        self.template.validate()
        n = len(self.template.calls)
        if not (len(self.call_ids) == len(self.release_s) == len(self.hash_ids) == n):
            raise ValueError("call_ids, release_s and hash_ids must have one entry per call")
        if any(b <= a for a, b in zip(self.call_ids, self.call_ids[1:], strict=False)):
            raise ValueError("call ids must increase within a task")
        first = self.release_s[0]
        if first is None or not math.isfinite(first):
            raise ValueError("the first call needs a finite release_s (it defines the task start)")
        if not math.isfinite(self.start_s) or abs(first - self.template.calls[0].gap_s - self.start_s) > 1e-9 * max(
            1.0, abs(self.start_s)
        ):
            raise ValueError("start_s must equal the first call's release_s - gap_s")
        for i, (c, r, h) in enumerate(zip(self.template.calls, self.release_s, self.hash_ids, strict=True)):
            if r is not None and not math.isfinite(r):
                raise ValueError(f"call {i}: release_s must be finite or null")
            if not math.isfinite(c.gap_s):
                raise ValueError(f"call {i}: gap_s must be finite")
            if h is not None and len(h) != -(-c.prompt_tokens // block_size_tokens):
                raise ValueError(
                    f"call {i}: {len(h)} hash ids for {c.prompt_tokens} prompt tokens; expected "
                    f"ceil({c.prompt_tokens}/{block_size_tokens}) = {-(-c.prompt_tokens // block_size_tokens)}"
                )


def trace_task(
    template: TaskTemplate,
    task_id: int,
    start_s: float,
    first_call_id: int,
    *,
    release_s: Iterable[float | None] | None = None,
    hash_ids: Iterable[tuple[int, ...] | None] | None = None,
) -> TraceTask:
    """A :class:`TraceTask` around ``template`` with consecutive call ids from ``first_call_id``.

    Without ``release_s``, calls with no dependencies are released at ``start_s + gap_s`` and the others get
    ``None`` (their send time depends on the cluster), which is how synthetic tasks are stored.
    """
    calls = template.calls
    rel = tuple(start_s + c.gap_s if not c.deps else None for c in calls) if release_s is None else tuple(release_s)
    hashes = tuple(c.hash_ids for c in calls) if hash_ids is None else tuple(hash_ids)
    ids = tuple(range(first_call_id, first_call_id + len(calls)))
    return TraceTask(task_id, float(start_s), template, ids, rel, hashes)


# --------------------------------------------------------------------------- tasks -> columns


class TableBuilder:
    """Accumulates tasks as canonical columns and hands them out as Arrow tables of ~``batch_rows`` rows.

    The one place tasks become rows: generation, importers and :func:`tasks_to_table` all go through it.
    Adding a task only extends a few lists (its calls, ids, releases, hash ids); the columns are computed
    with numpy when a batch is taken, so a million calls cost well under a second.
    """

    def __init__(self, batch_rows: int = BATCH_ROWS) -> None:
        self.batch_rows = max(int(batch_rows), 1)
        self._schema = trace_schema()
        self._reset()

    def _reset(self) -> None:
        self._calls: list[CallTemplate] = []  # every call, in row order
        self._rows = 0
        # Per task.
        self._task: list[int] = []
        self._n: list[int] = []
        self._start: list[float] = []
        self._shared: list[int] = []
        self._workload: list[str] = []
        self._base: list[int] = []  # first call id of a synthetic task (ids consecutive), -1 otherwise
        # Tasks with their own ids and releases: (first row, call ids, releases).
        self._explicit: list[tuple[int, tuple[int, ...], tuple[float | None, ...]]] = []

    def __len__(self) -> int:
        return self._rows

    def add_template(self, template: TaskTemplate, task_id: int, start_s: float, first_call_id: int) -> int:
        """Append a synthetic task: consecutive call ids from ``first_call_id``, calls without dependencies
        released at ``start_s + gap_s``, the others ``null`` (as :func:`trace_task`), hash ids from the
        calls. Returns the next free call id."""
        calls = template.calls
        n = len(calls)
        self._calls.extend(calls)
        self._rows += n
        self._task.append(task_id)
        self._n.append(n)
        self._start.append(start_s)
        self._shared.append(template.shared_prefix_tokens)
        self._workload.append(template.workload)
        self._base.append(first_call_id)
        return first_call_id + n

    def add_task(self, task: TraceTask) -> None:
        """Append a task with its own call ids, releases and hash ids (``task.hash_ids`` wins over the
        calls')."""
        t = task.template
        calls = t.calls
        if any(c.hash_ids != h for c, h in zip(calls, task.hash_ids, strict=True)):
            calls = tuple(replace(c, hash_ids=h) for c, h in zip(calls, task.hash_ids, strict=True))
        self._explicit.append((self._rows, task.call_ids, task.release_s))
        self._calls.extend(calls)
        self._rows += len(calls)
        self._task.append(task.task_id)
        self._n.append(len(calls))
        self._start.append(task.start_s)
        self._shared.append(t.shared_prefix_tokens)
        self._workload.append(t.workload)
        self._base.append(-1)

    def full(self) -> bool:
        """Whether a batch's worth of rows is waiting."""
        return len(self._calls) >= self.batch_rows

    def take(self) -> pa.Table:
        """Everything accumulated so far as one canonical table (possibly empty); the builder is reset."""
        table = self._table()
        self._reset()
        return table

    def _table(self) -> pa.Table:
        calls = self._calls
        rows = len(calls)
        n = np.asarray(self._n, dtype=np.int64)
        first_row = np.repeat(np.cumsum(n) - n, n)
        index = np.arange(rows) - first_row
        base = np.repeat(np.asarray(self._base, dtype=np.int64), n)
        call_id = base + index
        prompt = np.fromiter(map(attrgetter("prompt_tokens"), calls), np.int64, rows)
        output = np.fromiter(map(attrgetter("output_tokens"), calls), np.int64, rows)
        gap = np.fromiter(map(attrgetter("gap_s"), calls), np.float64, rows)
        tool = np.fromiter(map(attrgetter("gap_is_tool"), calls), np.bool_, rows)
        parent = np.fromiter(map(attrgetter("prefix_parent"), calls), np.int64, rows)
        deps = list(map(attrgetter("deps"), calls))
        dep_len = np.fromiter(map(len, deps), np.int64, rows)
        dep_idx = np.fromiter(chain.from_iterable(deps), np.int64, int(dep_len.sum()))
        # Synthetic tasks: calls without dependencies released at start + gap, the others null.
        release = np.where(dep_len == 0, np.repeat(np.asarray(self._start, dtype=np.float64), n) + gap, np.nan)
        for row, ids, rel in self._explicit:
            k = len(ids)
            call_id[row : row + k] = ids
            release[row : row + k] = [math.nan if r is None else r for r in rel]
        dep_ids = call_id[np.repeat(first_row, dep_len) + dep_idx]
        linked = parent >= 0
        parent_row = first_row + np.maximum(parent, 0)
        prefix = np.where(linked, call_id[parent_row] if rows else parent, -1)
        prefix_tokens = np.where(linked, prompt[parent_row] if rows else parent, np.repeat(self._shared, n))
        hashes = list(map(attrgetter("hash_ids"), calls))
        if hashes.count(None) == rows:
            hash_len = np.full(rows, -1, dtype=np.int64)
            hash_val = np.zeros(0, dtype=np.int64)
        else:
            hash_len = np.fromiter((-1 if h is None else len(h) for h in hashes), np.int64, rows)
            hash_val = np.fromiter(
                chain.from_iterable(h for h in hashes if h is not None), np.int64, int(np.maximum(hash_len, 0).sum())
            )
        codes: dict[str, int] = {}
        task_code = np.fromiter((codes.setdefault(w, len(codes)) for w in self._workload), np.int32, len(n))
        workload = pa.DictionaryArray.from_arrays(
            pa.array(np.repeat(task_code, n)), pa.array(list(codes), pa.string())
        ).cast(pa.string())
        arrays = [
            pa.array(np.repeat(np.asarray(self._task, dtype=np.int64), n)),
            pa.array(call_id),
            pa.array(index.astype(np.int32)),
            workload,
            _list_array(dep_len, dep_ids),
            pa.array(gap),
            pa.array(tool),
            pa.array(release, mask=np.isnan(release)),
            pa.array(prompt),
            pa.array(output),
            pa.array(prefix, mask=~linked),
            pa.array(prefix_tokens.astype(np.int64)),
            _list_array(hash_len, hash_val),
        ]
        return pa.Table.from_arrays(arrays, schema=self._schema)


def _list_array(lengths: np.ndarray, values: np.ndarray) -> pa.Array:
    """A list<int64> array from lengths (``-1`` = null) and the flattened values."""
    mask = lengths < 0
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(np.maximum(lengths, 0), out=offsets[1:])
    vals = pa.array(np.asarray(values, dtype=np.int64), type=pa.int64())
    if mask.any():
        return pa.ListArray.from_arrays(pa.array(offsets), vals, mask=pa.array(mask))
    return pa.ListArray.from_arrays(pa.array(offsets), vals)


def single_call_table(
    task_ids: np.ndarray,
    call_ids: np.ndarray,
    release_s: np.ndarray,
    prompt: np.ndarray,
    output: np.ndarray,
    workload: str | list[str],
    hash_ids: pa.Array | None = None,
) -> pa.Table:
    """Canonical rows for single-call tasks (no dependencies, no links, released at their start), built
    column-wise: the fast path of importers and of generation from a :class:`~agentsim.spec.FixedProfile`."""
    n = len(task_ids)
    wl = pa.array([workload] * n if isinstance(workload, str) else workload, type=pa.string())
    hashes = pa.nulls(n, pa.list_(pa.int64())) if hash_ids is None else hash_ids
    arrays = [
        pa.array(np.asarray(task_ids, dtype=np.int64)),
        pa.array(np.asarray(call_ids, dtype=np.int64)),
        pa.array(np.zeros(n, dtype=np.int32)),
        wl,
        _list_array(np.zeros(n, dtype=np.int64), np.zeros(0, dtype=np.int64)),
        pa.array(np.zeros(n)),
        pa.array(np.zeros(n, dtype=np.bool_)),
        pa.array(np.asarray(release_s, dtype=np.float64)),
        pa.array(np.asarray(prompt, dtype=np.int64)),
        pa.array(np.asarray(output, dtype=np.int64)),
        pa.nulls(n, pa.int64()),
        pa.array(np.zeros(n, dtype=np.int64)),
        hashes,
    ]
    return pa.Table.from_arrays(arrays, names=list(COLUMN_NAMES)).cast(trace_schema())


def tasks_to_table(tasks: Iterable[TraceTask]) -> pa.Table:
    """Tasks as one canonical table (in memory; use :class:`TraceWriter` for large outputs)."""
    b = TableBuilder(batch_rows=1 << 62)
    for t in tasks:
        b.add_task(t)
    return b.take()


# --------------------------------------------------------------------------- columns -> tasks


class _TaskAssembler:
    """Turns canonical record batches into :class:`TraceTask` objects, checking the file-level rules.

    The checks run column-wise with numpy on each batch (a violation names the first bad row); only the
    construction of the call templates is a Python loop. Rows of a task may straddle batches: the rows of
    the last task of a batch wait for the next one.
    """

    def __init__(self, block_size: int, where: str) -> None:
        self.block = block_size
        self.where = where
        self.row = 0  # file row of the first pending row
        self.pending: pa.Table | None = None
        self.last_task: int | None = None
        self.last_call: int | None = None
        self.last_start = -math.inf

    def feed(self, batch: pa.RecordBatch) -> Iterator[TraceTask]:
        """Tasks completed by ``batch`` (the last task of the batch waits for the next batch or :meth:`end`)."""
        if batch.num_rows == 0:
            return
        table = pa.Table.from_batches([batch])
        if self.pending is not None:
            table = pa.concat_tables([self.pending, table.cast(self.pending.schema)])
        tid = table.column("task_id").to_numpy()
        change = np.flatnonzero(tid[1:] != tid[:-1])
        if len(change) == 0:
            self.pending = table
            return
        cut = int(change[-1]) + 1
        self.pending = table.slice(cut)
        yield from self._tasks(table.slice(0, cut).combine_chunks())

    def end(self) -> Iterator[TraceTask]:
        """The last task, once the input is exhausted."""
        if self.pending is not None and self.pending.num_rows:
            table = self.pending.combine_chunks()
            self.pending = None
            yield from self._tasks(table)

    def _fail(self, row: int, msg: str) -> TraceError:
        return TraceError(f"{self.where}: row {row}: {msg}")

    def _check(self, bad: np.ndarray, row0: int, message: Callable[[int], str]) -> None:
        """Raise for the first row where ``bad`` holds; ``message(i)`` words it for batch row ``i``."""
        if bad.any():
            i = int(np.argmax(bad))
            raise self._fail(row0 + i, message(i))

    def _tasks(self, table: pa.Table) -> Iterator[TraceTask]:
        n = table.num_rows
        row0 = self.row
        self.row += n
        col = table.column
        names = table.schema.names

        def arr(name: str) -> Any:
            c = col(name)
            return c.chunk(0) if c.num_chunks == 1 else c.combine_chunks()

        tid = arr("task_id").to_numpy()
        cid = arr("call_id").to_numpy()
        cidx = arr("call_index").to_numpy()
        gap = arr("gap_s").to_numpy()
        tool = arr("gap_is_tool").to_numpy(zero_copy_only=False) if "gap_is_tool" in names else np.zeros(n, bool)
        release = arr("release_s").to_numpy(zero_copy_only=False).astype(np.float64)
        has_release = ~arr("release_s").is_null().to_numpy(zero_copy_only=False)
        prompt = arr("prompt_tokens").to_numpy()
        output = arr("output_tokens").to_numpy()
        prefix_col = arr("prefix_call_id")
        linked = ~prefix_col.is_null().to_numpy(zero_copy_only=False)
        prefix = prefix_col.fill_null(-1).to_numpy()
        ptok = arr("prefix_tokens").to_numpy()
        wl = arr("workload").dictionary_encode()
        wcode = wl.indices.to_numpy(zero_copy_only=False)
        labels = wl.dictionary.to_pylist()
        deps = arr("deps")
        dep_off = deps.offsets.to_numpy()
        dep_val = deps.values.to_numpy()[dep_off[0] : dep_off[-1]] if len(deps.values) else np.zeros(0, np.int64)
        dep_off = dep_off - dep_off[0]
        hashes = arr("hash_ids")
        hashed = ~hashes.is_null().to_numpy(zero_copy_only=False)
        h_off = hashes.offsets.to_numpy()
        h_val = hashes.values.to_numpy()[h_off[0] : h_off[-1]] if len(hashes.values) else np.zeros(0, np.int64)
        h_off = h_off - h_off[0]

        new = np.ones(n, dtype=bool)
        new[1:] = tid[1:] != tid[:-1]
        firsts = np.flatnonzero(new)
        counts = np.diff(np.append(firsts, n))
        first_row = np.repeat(firsts, counts)
        k = np.arange(n) - first_row

        # Ids: tasks and calls increase through the file (rows of a task are contiguous).
        prev_tid = np.concatenate([[-np.inf if self.last_task is None else self.last_task], tid[firsts][:-1]])
        bad_tid = np.zeros(n, dtype=bool)
        bad_tid[firsts] = tid[firsts] <= prev_tid
        last_task = self.last_task
        self._check(
            bad_tid,
            row0,
            lambda i: (
                f"task_id {tid[i]} after task {tid[i - 1] if i else last_task}: task ids must increase and a "
                "task's rows must be contiguous"
            ),
        )
        prev_cid = np.concatenate([[-np.inf if self.last_call is None else self.last_call], cid[:-1]])
        self._check(
            cid <= prev_cid,
            row0,
            lambda i: f"call_id {cid[i]} after {prev_cid[i]:.0f}: call ids must increase through the file",
        )
        self._check(cidx != k, row0, lambda i: f"call_index {cidx[i]} but this is call {k[i]} of task {tid[i]}")
        self._check(
            wcode != wcode[first_row],
            row0,
            lambda i: f"workload {labels[wcode[i]]!r} differs from the task's {labels[wcode[first_row[i]]]!r}",
        )
        # Dependencies and prefix links: earlier calls of the same task (call ids are sorted: binary search).
        owner = np.repeat(np.arange(n), np.diff(dep_off))
        dep_row = np.minimum(np.searchsorted(cid, dep_val), max(n - 1, 0))
        dep_ok = (cid[dep_row] == dep_val) & (dep_row >= first_row[owner]) & (dep_row < owner)
        bad_dep = np.zeros(n, dtype=bool)
        bad_dep[owner[~dep_ok]] = True

        def bad_dep_message(i: int) -> str:
            mine = slice(dep_off[i], dep_off[i + 1])
            return f"dependency {dep_val[mine][~dep_ok[mine]][0]} is not an earlier call of task {tid[i]}"

        self._check(bad_dep, row0, bad_dep_message)
        p_row = np.minimum(np.searchsorted(cid, prefix), max(n - 1, 0))
        p_ok = (cid[p_row] == prefix) & (p_row >= first_row) & (p_row < np.arange(n))
        self._check(
            linked & ~p_ok, row0, lambda i: f"prefix_call_id {prefix[i]} is not an earlier call of task {tid[i]}"
        )
        self._check(
            linked & (ptok != prompt[p_row]),
            row0,
            lambda i: f"prefix_tokens {ptok[i]} but prefix call {prefix[i]} has {prompt[p_row[i]]} prompt tokens",
        )
        self._check(
            ~linked & (ptok != ptok[first_row]),
            row0,
            lambda i: (
                f"prefix_tokens {ptok[i]} without a prefix call, but the task's shared prefix is "
                f"{ptok[first_row[i]]} tokens"
            ),
        )

        def task_of(i: int) -> str:
            return f"task {tid[i]}: call {k[i]}"

        self._check((prompt < 1) | (output < 1), row0, lambda i: f"{task_of(i)}: prompt and output tokens must be >= 1")
        self._check(ptok > prompt, row0, lambda i: f"{task_of(i)}: its prefix ({ptok[i]}) is longer than its prompt")
        self._check(~(gap >= 0) | ~np.isfinite(gap), row0, lambda i: f"{task_of(i)}: gap_s must be finite and >= 0")
        self._check(
            has_release & ~np.isfinite(release), row0, lambda i: f"{task_of(i)}: release_s must be finite or null"
        )
        self._check(
            (k == 0) & ~has_release,
            row0,
            lambda i: f"task {tid[i]}: the first call needs a finite release_s (it defines the task start)",
        )
        h_len = np.diff(h_off)
        want = -(-prompt // self.block)
        self._check(
            hashed & (h_len != want),
            row0,
            lambda i: (
                f"{task_of(i)}: {h_len[i]} hash ids for {prompt[i]} prompt tokens; expected "
                f"ceil({prompt[i]}/{self.block}) = {want[i]}"
            ),
        )
        start = release[firsts] - gap[firsts]
        prev_start = np.concatenate([[self.last_start], start[:-1]])
        bad_start = np.zeros(n, dtype=bool)
        bad_start[firsts] = start < prev_start
        self._check(
            bad_start,
            row0,
            lambda i: (
                f"task {tid[i]} starts at {release[i] - gap[i]} s, before the previous task: tasks must be "
                "sorted by start time"
            ),
        )

        # Construction.
        self.last_task = int(tid[-1])
        self.last_call = int(cid[-1])
        self.last_start = float(start[-1])
        dep_idx = (dep_row - first_row[owner]).tolist()
        d_off = dep_off.tolist()
        dep_t = [tuple(dep_idx[x:y]) for x, y in pairwise(d_off)]
        h_val_l = h_val.tolist()
        h_off_l = h_off.tolist()
        hash_t = [
            tuple(h_val_l[x:y]) if h else None
            for x, y, h in zip(h_off_l[:-1], h_off_l[1:], hashed.tolist(), strict=True)
        ]
        p_idx = np.where(linked, p_row - first_row, ROOT).tolist()
        rel_l = [r if h else None for r, h in zip(release.tolist(), has_release.tolist(), strict=True)]
        calls = list(
            map(CallTemplate, prompt.tolist(), output.tolist(), dep_t, gap.tolist(), p_idx, hash_t, tool.tolist())
        )
        cid_l = cid.tolist()
        ptok_l = ptok.tolist()
        any_hash = np.add.reduceat(hashed.astype(np.int64), firsts) > 0 if n else np.zeros(0, dtype=bool)
        for t, (a, c) in enumerate(zip(firsts.tolist(), counts.tolist(), strict=True)):
            b = a + c
            template = TaskTemplate(labels[wcode[a]], tuple(calls[a:b]), ptok_l[a], self.block if any_hash[t] else 0)
            yield TraceTask(
                int(tid[a]), float(start[t]), template, tuple(cid_l[a:b]), tuple(rel_l[a:b]), tuple(hash_t[a:b])
            )


def table_to_tasks(
    table: pa.Table | Iterable[pa.RecordBatch], *, block_size_tokens: int | None = None, where: str = "trace"
) -> Iterator[TraceTask]:
    """The tasks of a canonical table (or of a stream of record batches), checked as :func:`read_trace` does.

    ``block_size_tokens`` defaults to the table's schema metadata (else :data:`DEFAULT_BLOCK_SIZE`).
    """
    if block_size_tokens is None:
        block_size_tokens = DEFAULT_BLOCK_SIZE
        if isinstance(table, pa.Table):
            block_size_tokens = _meta_block(table.schema)
    asm = _TaskAssembler(block_size_tokens, where)
    batches: Iterable[Any] = table.to_batches(max_chunksize=BATCH_ROWS) if isinstance(table, pa.Table) else table
    if isinstance(table, pa.Table):
        _check_columns(table.schema, where)
    for batch in batches:
        _check_columns(batch.schema, where)
        yield from asm.feed(batch)
    yield from asm.end()


def _check_columns(schema: pa.Schema, where: str) -> None:
    missing = [n for n in COLUMN_NAMES if n not in schema.names and n not in OPTIONAL_COLUMNS]
    if missing:
        raise TraceError(f"{where}: not an agentsim trace: missing column(s) {', '.join(missing)}")


def _meta_block(schema: pa.Schema) -> int:
    meta = schema.metadata or {}
    raw = meta.get(META_BLOCK.encode())
    try:
        return int(raw) if raw is not None else DEFAULT_BLOCK_SIZE
    except ValueError:
        return DEFAULT_BLOCK_SIZE


# --------------------------------------------------------------------------- files


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """A temporary path next to ``path`` that becomes ``path`` (by rename) only if the block succeeds.

    Refuses (:class:`OutputExistsError`) when ``path`` exists and ``overwrite`` is false; readers never see a
    half-written file and a failed write leaves nothing behind.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; choose another output or pass --overwrite")
    if target.exists() and target.is_dir():
        raise OutputExistsError(f"{target} is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise TraceError(f"{parent} is not a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


class TraceWriter:
    """Writes a canonical trace file record batch by record batch, atomically.

    Use as a context manager; the file appears at ``path`` when the block exits without an exception::

        with TraceWriter("t.parquet", source="mooncake:conversation_trace.jsonl", block_size_tokens=512) as w:
            w.write_tasks(tasks)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        block_size_tokens: int = DEFAULT_BLOCK_SIZE,
        overwrite: bool = False,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        if block_size_tokens < 1:
            raise TraceError(f"block_size_tokens must be >= 1, got {block_size_tokens}")
        self.path = Path(path)
        self.schema = trace_schema(source=source, block_size_tokens=block_size_tokens)
        self.block_size_tokens = int(block_size_tokens)
        self.rows = 0
        self._builder = TableBuilder(batch_rows)
        self._ctx = atomic_output(self.path, overwrite=overwrite)
        self._tmp: Path | None = None
        self._writer: Any = None

    def __enter__(self) -> TraceWriter:
        self._tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="zstd")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._flush()
            if self._writer is not None:
                self._writer.close()
        finally:
            self._ctx.__exit__(exc_type, exc, tb)

    def write_table(self, table: pa.Table | pa.RecordBatch) -> None:
        """Append canonical rows (columns by name; cast to the canonical types)."""
        self._flush()
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        _check_columns(table.schema, str(self.path))
        for name in OPTIONAL_COLUMNS:
            if name not in table.schema.names:
                table = table.append_column(name, pa.array(np.zeros(table.num_rows, dtype=np.bool_)))
        table = table.select(list(COLUMN_NAMES)).cast(self.schema)
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def write_task(self, task: TraceTask) -> None:
        """Append one task."""
        self._builder.add_task(task)
        if self._builder.full():
            self._flush()

    def write_tasks(self, tasks: Iterable[TraceTask]) -> None:
        """Append tasks."""
        for t in tasks:
            self.write_task(t)

    def add_template(self, template: TaskTemplate, task_id: int, start_s: float, first_call_id: int) -> int:
        """Append a synthetic task (see :meth:`TableBuilder.add_template`); returns the next free call id."""
        nxt = self._builder.add_template(template, task_id, start_s, first_call_id)
        if self._builder.full():
            self._flush()
        return nxt

    def _flush(self) -> None:
        if len(self._builder):
            table = self._builder.take().replace_schema_metadata(self.schema.metadata)
            self._writer.write_table(table)
            self.rows += table.num_rows


def write_trace(
    path: str | os.PathLike[str],
    tasks: Iterable[TraceTask] | pa.Table,
    *,
    source: str = "",
    block_size_tokens: int = DEFAULT_BLOCK_SIZE,
    overwrite: bool = False,
) -> int:
    """Write tasks (or a canonical table) to ``path`` atomically; returns the number of rows."""
    with TraceWriter(path, source=source, block_size_tokens=block_size_tokens, overwrite=overwrite) as w:
        if isinstance(tasks, pa.Table):
            w.write_table(tasks)
        else:
            w.write_tasks(tasks)
    return w.rows


def _open(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: no such file")
    try:
        f = pq.ParquetFile(str(p))
    except Exception as e:  # pyarrow raises several types for a non-Parquet file
        raise TraceError(f"{p}: not a Parquet file ({e})") from None
    schema = f.schema_arrow
    _check_columns(schema, str(p))
    return f


def read_trace_meta(path: str | os.PathLike[str]) -> TraceMeta:
    """The metadata of a trace file: version, block size, source, rows."""
    f = _open(path)
    meta = f.schema_arrow.metadata or {}
    version = meta.get(META_VERSION.encode(), b"").decode()
    if version and version != TRACE_VERSION:
        raise TraceError(f"{path}: trace version {version}, this agentsim reads version {TRACE_VERSION}")
    return TraceMeta(
        version or TRACE_VERSION,
        _meta_block(f.schema_arrow),
        meta.get(META_SOURCE.encode(), b"").decode(),
        int(f.metadata.num_rows),
    )


def iter_trace_batches(
    path: str | os.PathLike[str], *, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The raw canonical record batches of a trace file (optionally only some columns)."""
    f = _open(path)
    yield from f.iter_batches(batch_size=batch_rows, columns=columns)


def read_trace(path: str | os.PathLike[str], *, batch_rows: int = BATCH_ROWS) -> Iterator[TraceTask]:
    """The tasks of a trace file in file order, which is start order, streaming.

    This is the replay entry point: each :class:`TraceTask` carries ``start_s``, the workload label, the
    DAG (``template``) and per call its ``call_ids``, ``release_s`` and ``hash_ids``; the block size of the
    hash ids is :func:`read_trace_meta` ``(path).block_size_tokens``. Every rule of the schema is checked as
    the file is read; a violation raises :class:`TraceError` naming the file and row.
    """
    meta = read_trace_meta(path)
    asm = _TaskAssembler(meta.block_size_tokens, str(path))
    for batch in iter_trace_batches(path, batch_rows=batch_rows):
        yield from asm.feed(batch)
    yield from asm.end()


def read_table_columns(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a trace file."""
    names: list[str] = list(_open(path).schema_arrow.names)
    return names


def read_table(path: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """A whole trace file as one Arrow table (metadata kept). For small traces and analysis."""
    f = _open(path)
    return f.read(columns=columns)


# --------------------------------------------------------------------------- generation


def generate_tasks(
    profile: AgentProfile | FixedProfile,
    n_tasks: int,
    *,
    arrivals: Poisson | GammaArrivals,
    seed: int = 0,
    workload: str = "default",
) -> Iterator[TraceTask]:
    """``n_tasks`` synthetic tasks of ``profile`` starting at the times of ``arrivals``.

    Randomness comes from ``rng.Streams(seed)``, streams ``tasks/<workload>`` (the :class:`TaskFactory`) and
    ``arrivals/<workload>`` (an :class:`~agentsim.workload.arrivals.OpenArrivals` process, the one behind
    ``arrival_array``), the names the simulator uses: a generated trace holds exactly the tasks a simulation
    of that workload with that seed would start.
    """
    streams = Streams(seed)
    factory = TaskFactory(profile, workload, streams.get(f"tasks/{workload}"))
    times = OpenArrivals(arrivals, streams.get(f"arrivals/{workload}"))
    call_id = 0
    for task_id in range(n_tasks):
        t = trace_task(factory.next(), task_id, times.next(), call_id)
        call_id += len(t.call_ids)
        yield t


def generate_trace(
    path: str | os.PathLike[str],
    profile: AgentProfile | FixedProfile,
    n_tasks: int,
    *,
    arrivals: Poisson | GammaArrivals,
    seed: int = 0,
    workload: str = "default",
    source: str = "",
    overwrite: bool = False,
) -> int:
    """Write the tasks of :func:`generate_tasks` to ``path`` (the same rows, built without intermediate
    objects); returns the number of calls."""
    if n_tasks < 1:
        raise TraceError(f"the number of tasks must be >= 1, got {n_tasks}")
    streams = Streams(seed)
    src = source or f"generated:{workload}:seed={seed}"
    times = OpenArrivals(arrivals, streams.get(f"arrivals/{workload}"))
    with TraceWriter(path, source=src, overwrite=overwrite) as w:
        if isinstance(profile, FixedProfile):
            _generate_fixed(w, profile, n_tasks, streams.get(f"tasks/{workload}"), times, workload)
            return n_tasks
        factory = TaskFactory(profile, workload, streams.get(f"tasks/{workload}"))
        call_id = 0
        for task_id in range(n_tasks):
            call_id = w.add_template(factory.next(), task_id, times.next(), call_id)
    return call_id


def _generate_fixed(
    w: TraceWriter, profile: FixedProfile, n_tasks: int, rng: np.random.Generator, times: OpenArrivals, workload: str
) -> None:
    """Single-call tasks of a :class:`FixedProfile`, column-wise.

    Draws exactly what :class:`TaskFactory` draws from the same generator (its two
    :class:`~agentsim.workload.distributions.IntSampler` refill ``BLOCK`` prompt draws, then ``BLOCK`` output
    draws, every ``BLOCK`` tasks; values rounded half-to-even and raised to at least 1), so the rows equal
    those of :func:`generate_tasks`; the tests check it.
    """
    done = 0
    while done < n_tasks:
        m = min(BLOCK, n_tasks - done)
        prompt = np.maximum(np.rint(sample(profile.prompt_tokens, rng, BLOCK)), 1).astype(np.int64)[:m]
        output = np.maximum(np.rint(sample(profile.output_tokens, rng, BLOCK)), 1).astype(np.int64)[:m]
        start = np.fromiter((times.next() for _ in range(m)), np.float64, m)
        ids = np.arange(done, done + m, dtype=np.int64)
        w.write_table(single_call_table(ids, ids, start, prompt, output, workload))
        done += m
