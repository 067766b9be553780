"""Traces: workloads as files, one row per LLM call.

A *trace* is a recorded (or synthesized) workload: which tasks started when, and for each task the calls it
made, how they depended on each other, how many tokens each sent and received, and which part of each prompt
was a prefix some earlier call had already sent. agentsim keeps every trace in one **canonical schema**
(``traces/SCHEMA.md``), written as Parquet, whatever it came from: a profile (``agentsim trace generate``),
Mooncake or Azure production logs, BurstGPT, agent-session logs (:mod:`agentsim.workload.importers`). Because
generation and import write through the same :class:`TraceWriter` and replay reads through the same
:func:`read_trace`, a synthetic trace and a production trace are interchangeable downstream.

**Tasks are DAGs, rows are calls.** A task is what :mod:`agentsim.workload.taskgraph` calls a
:class:`~agentsim.workload.taskgraph.TaskTemplate`: calls in topological order, each waiting for its
dependencies (``deps``), then for ``gap_s`` (tool time, think time), then sent. In the file each call is a
row; its dependencies are the ``call_id`` values of the calls it waits for. ``release_s`` is the time the call
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agentsim.rng import Streams
from agentsim.spec import AgentProfile, FixedProfile, GammaArrivals, Poisson
from agentsim.workload.arrivals import OpenArrivals
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
    ("release_s", pa.float64(), True),
    ("prompt_tokens", pa.int64(), False),
    ("output_tokens", pa.int64(), False),
    ("prefix_call_id", pa.int64(), True),
    ("prefix_tokens", pa.int64(), False),
    ("hash_ids", pa.list_(pa.field("item", pa.int64(), nullable=False)), True),
)
"""``(name, Arrow type, nullable)`` of each column, in file order (documented in ``traces/SCHEMA.md``)."""

COLUMN_NAMES = tuple(c[0] for c in COLUMNS)


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
    rel = (
        tuple(start_s + c.gap_s if not c.deps else None for c in calls) if release_s is None else tuple(release_s)
    )
    hashes = (None,) * len(calls) if hash_ids is None else tuple(hash_ids)
    ids = tuple(range(first_call_id, first_call_id + len(calls)))
    return TraceTask(task_id, float(start_s), template, ids, rel, hashes)


# --------------------------------------------------------------------------- tasks -> columns


class TableBuilder:
    """Accumulates tasks as canonical columns and hands them out as Arrow tables of ~``batch_rows`` rows.

    The one place tasks become rows: generation, importers and :func:`tasks_to_table` all go through it.
    Per task it does one list comprehension per column, so a million calls cost about a second.
    """

    def __init__(self, batch_rows: int = BATCH_ROWS) -> None:
        self.batch_rows = max(int(batch_rows), 1)
        self._schema = trace_schema()
        self._reset()

    def _reset(self) -> None:
        self._task: list[int] = []
        self._call: list[int] = []
        self._index: list[int] = []
        self._workload: list[str] = []
        self._dep_len: list[int] = []
        self._dep_val: list[int] = []
        self._gap: list[float] = []
        self._release: list[float] = []  # NaN = null
        self._prompt: list[int] = []
        self._output: list[int] = []
        self._prefix: list[int] = []  # -1 = null
        self._prefix_tokens: list[int] = []
        self._hash_len: list[int] = []  # -1 = null
        self._hash_val: list[int] = []

    def __len__(self) -> int:
        return len(self._call)

    def add_template(self, template: TaskTemplate, task_id: int, start_s: float, first_call_id: int) -> int:
        """Append a synthetic task (releases as in :func:`trace_task`, no hash ids); returns the next free call
        id."""
        calls = template.calls
        n = len(calls)
        base = first_call_id
        shared = template.shared_prefix_tokens
        self._task.extend([task_id] * n)
        self._call.extend(range(base, base + n))
        self._index.extend(range(n))
        self._workload.extend([template.workload] * n)
        self._dep_len.extend([len(c.deps) for c in calls])
        self._dep_val.extend([base + d for c in calls for d in c.deps])
        self._gap.extend([c.gap_s for c in calls])
        nan = math.nan
        self._release.extend([nan if c.deps else start_s + c.gap_s for c in calls])
        prompts = [c.prompt_tokens for c in calls]
        self._prompt.extend(prompts)
        self._output.extend([c.output_tokens for c in calls])
        self._prefix.extend([base + c.prefix_parent if c.prefix_parent >= 0 else -1 for c in calls])
        self._prefix_tokens.extend([prompts[c.prefix_parent] if c.prefix_parent >= 0 else shared for c in calls])
        self._hash_len.extend([-1] * n)
        return base + n

    def add_task(self, task: TraceTask) -> None:
        """Append a task with its own call ids, releases and hash ids."""
        t = task.template
        calls = t.calls
        n = len(calls)
        ids = task.call_ids
        self._task.extend([task.task_id] * n)
        self._call.extend(ids)
        self._index.extend(range(n))
        self._workload.extend([t.workload] * n)
        self._dep_len.extend([len(c.deps) for c in calls])
        self._dep_val.extend([ids[d] for c in calls for d in c.deps])
        self._gap.extend([c.gap_s for c in calls])
        self._release.extend([math.nan if r is None else r for r in task.release_s])
        prompts = [c.prompt_tokens for c in calls]
        self._prompt.extend(prompts)
        self._output.extend([c.output_tokens for c in calls])
        self._prefix.extend([ids[c.prefix_parent] if c.prefix_parent >= 0 else -1 for c in calls])
        shared = t.shared_prefix_tokens
        self._prefix_tokens.extend([prompts[c.prefix_parent] if c.prefix_parent >= 0 else shared for c in calls])
        self._hash_len.extend([-1 if h is None else len(h) for h in task.hash_ids])
        for h in task.hash_ids:
            if h is not None:
                self._hash_val.extend(h)

    def full(self) -> bool:
        """Whether a batch's worth of rows is waiting."""
        return len(self._call) >= self.batch_rows

    def take(self) -> pa.Table:
        """Everything accumulated so far as one canonical table (possibly empty); the builder is reset."""
        table = self._table()
        self._reset()
        return table

    def _table(self) -> pa.Table:
        def lists(lengths: list[int], values: list[int], nullable: bool) -> pa.Array:
            lens = np.asarray(lengths, dtype=np.int64)
            mask = lens < 0
            offsets = np.zeros(len(lens) + 1, dtype=np.int32)
            np.cumsum(np.maximum(lens, 0), out=offsets[1:])
            vals = pa.array(np.asarray(values, dtype=np.int64), type=pa.int64())
            if nullable and mask.any():
                return pa.ListArray.from_arrays(pa.array(offsets), vals, mask=pa.array(mask))
            return pa.ListArray.from_arrays(pa.array(offsets), vals)

        release = np.asarray(self._release, dtype=np.float64)
        prefix = np.asarray(self._prefix, dtype=np.int64)
        arrays = [
            pa.array(np.asarray(self._task, dtype=np.int64)),
            pa.array(np.asarray(self._call, dtype=np.int64)),
            pa.array(np.asarray(self._index, dtype=np.int32)),
            pa.array(self._workload, type=pa.string()),
            lists(self._dep_len, self._dep_val, False),
            pa.array(np.asarray(self._gap, dtype=np.float64)),
            pa.array(release, mask=np.isnan(release)),
            pa.array(np.asarray(self._prompt, dtype=np.int64)),
            pa.array(np.asarray(self._output, dtype=np.int64)),
            pa.array(prefix, mask=prefix < 0),
            pa.array(np.asarray(self._prefix_tokens, dtype=np.int64)),
            lists(self._hash_len, self._hash_val, True),
        ]
        return pa.Table.from_arrays(arrays, schema=self._schema)


def tasks_to_table(tasks: Iterable[TraceTask]) -> pa.Table:
    """Tasks as one canonical table (in memory; use :class:`TraceWriter` for large outputs)."""
    b = TableBuilder(batch_rows=1 << 62)
    for t in tasks:
        b.add_task(t)
    return b.take()


# --------------------------------------------------------------------------- columns -> tasks


class _TaskAssembler:
    """Turns canonical record batches into :class:`TraceTask` objects, checking the file-level rules.

    Rows of a task may straddle batches: the rows after the last task boundary of a batch wait for the next.
    """

    def __init__(self, block_size: int, where: str) -> None:
        self.block = block_size
        self.where = where
        self.row = 0  # file row of the first pending row
        self.pending: dict[str, list[Any]] | None = None
        self.last_task: int | None = None
        self.last_call: int | None = None
        self.last_start = -math.inf

    @staticmethod
    def _columns(batch: pa.RecordBatch | pa.Table) -> dict[str, list[Any]]:
        if isinstance(batch, pa.Table):
            batch = batch.combine_chunks()
            cols = {name: batch.column(name).chunk(0) if batch.num_rows else batch.column(name) for name in COLUMN_NAMES}
        else:
            cols = {name: batch.column(name) for name in COLUMN_NAMES}
        out: dict[str, list[Any]] = {}
        for name in ("task_id", "call_id", "call_index", "gap_s", "prompt_tokens", "output_tokens", "prefix_tokens"):
            out[name] = cols[name].to_numpy(zero_copy_only=False).tolist()
        out["workload"] = cols["workload"].to_pylist()
        for name in ("release_s", "prefix_call_id"):
            out[name] = cols[name].to_pylist()
        out["deps"] = cols["deps"].to_pylist()
        out["hash_ids"] = cols["hash_ids"].to_pylist()
        return out

    def feed(self, batch: pa.RecordBatch | pa.Table) -> Iterator[TraceTask]:
        """Tasks completed by ``batch`` (the last task of the batch waits for the next batch or :meth:`end`)."""
        if batch.num_rows == 0:
            return
        cols = self._columns(batch)
        if self.pending is not None:
            cols = {k: self.pending[k] + v for k, v in cols.items()}
            self.pending = None
        tids = cols["task_id"]
        n = len(tids)
        start = 0
        for i in range(1, n):
            if tids[i] != tids[i - 1]:
                yield self._task(cols, start, i)
                start = i
        self.pending = {k: v[start:] for k, v in cols.items()}

    def end(self) -> Iterator[TraceTask]:
        """The last task, once the input is exhausted."""
        if self.pending is not None:
            cols = self.pending
            self.pending = None
            yield self._task(cols, 0, len(cols["task_id"]))

    def _fail(self, row: int, msg: str) -> TraceError:
        return TraceError(f"{self.where}: row {row}: {msg}")

    def _task(self, cols: dict[str, list[Any]], a: int, b: int) -> TraceTask:
        row0 = self.row
        self.row += b - a
        tid = cols["task_id"][a]
        if self.last_task is not None and tid <= self.last_task:
            raise self._fail(row0, f"task_id {tid} after task {self.last_task}: task ids must increase and a task's "
                             "rows must be contiguous")
        self.last_task = tid
        ids = cols["call_id"][a:b]
        pos: dict[int, int] = {}
        calls: list[CallTemplate] = []
        workload = cols["workload"][a]
        shared: int | None = None
        last_call = self.last_call
        for k in range(b - a):
            i = a + k
            row = row0 + k
            cid = ids[k]
            if last_call is not None and cid <= last_call:
                raise self._fail(row, f"call_id {cid} after {last_call}: call ids must increase through the file")
            last_call = cid
            if cols["call_index"][i] != k:
                raise self._fail(row, f"call_index {cols['call_index'][i]} but this is call {k} of task {tid}")
            if cols["workload"][i] != workload:
                raise self._fail(row, f"workload {cols['workload'][i]!r} differs from the task's {workload!r}")
            deps = []
            for d in cols["deps"][i]:
                j = pos.get(d)
                if j is None:
                    raise self._fail(row, f"dependency {d} is not an earlier call of task {tid}")
                deps.append(j)
            p = cols["prefix_call_id"][i]
            ptok = cols["prefix_tokens"][i]
            prompt = cols["prompt_tokens"][i]
            if p is None:
                parent = ROOT
                if shared is None:
                    shared = ptok
                elif ptok != shared:
                    raise self._fail(row, f"prefix_tokens {ptok} without a prefix call, but the task's shared prefix "
                                     f"is {shared} tokens")
            else:
                j = pos.get(p)
                if j is None:
                    raise self._fail(row, f"prefix_call_id {p} is not an earlier call of task {tid}")
                if ptok != calls[j].prompt_tokens:
                    raise self._fail(row, f"prefix_tokens {ptok} but prefix call {p} has {calls[j].prompt_tokens} "
                                     "prompt tokens")
                parent = j
            calls.append(CallTemplate(prompt, cols["output_tokens"][i], tuple(deps), cols["gap_s"][i], parent))
            pos[cid] = k
        self.last_call = last_call
        template = TaskTemplate(workload, tuple(calls), shared or 0)
        releases = tuple(cols["release_s"][a:b])
        hashes = tuple(None if h is None else tuple(h) for h in cols["hash_ids"][a:b])
        r0 = releases[0]
        start = math.nan if r0 is None else r0 - calls[0].gap_s
        task = TraceTask(tid, start, template, tuple(ids), releases, hashes)
        try:
            task.validate(self.block)
        except ValueError as e:
            raise self._fail(row0, f"task {tid}: {e}") from None
        if start < self.last_start:
            raise self._fail(row0, f"task {tid} starts at {start} s, before the previous task ({self.last_start} s): "
                             "tasks must be sorted by start time")
        self.last_start = start
        return task


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
    batches: Iterable[Any] = [table] if isinstance(table, pa.Table) else table
    for batch in batches:
        _check_columns(batch.schema, where)
        yield from asm.feed(batch)
    yield from asm.end()


def _check_columns(schema: pa.Schema, where: str) -> None:
    missing = [n for n in COLUMN_NAMES if n not in schema.names]
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
    factory = TaskFactory(profile, workload, streams.get(f"tasks/{workload}"))
    times = OpenArrivals(arrivals, streams.get(f"arrivals/{workload}"))
    call_id = 0
    src = source or f"generated:{workload}:seed={seed}"
    with TraceWriter(path, source=src, overwrite=overwrite) as w:
        for task_id in range(n_tasks):
            call_id = w.add_template(factory.next(), task_id, times.next(), call_id)
    return call_id
