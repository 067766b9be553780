"""Traces: workloads as files, one row per LLM call.

A *trace* is a recorded (or synthesized) workload: which tasks started when, and for each task the calls it
made, how they depended on each other, how many tokens each sent and received, and which part of each prompt
was a prefix some earlier call had already sent. agentsim keeps every trace in one **canonical schema**
(``traces/SCHEMA.md``), written as Parquet, whatever it came from: a profile (``agentsim trace generate``),
Mooncake or Azure production logs, BurstGPT, agent-session logs (:mod:`agentsim.traces.importers`). Because
generation and import build their rows with the same :class:`~agentsim.traces.tables.TableBuilder` and replay
reads through the same :func:`~agentsim.traces.io.read_trace`, a synthetic trace and a production trace are
interchangeable downstream.

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

**File-level rules** (checked by :func:`~agentsim.traces.io.read_trace`): rows of a task are contiguous and in
``call_index`` order ``0, 1, ...``; ``task_id`` and ``call_id`` increase strictly through the file (so ids are
unique without a global index); tasks are sorted by start time. Files carry schema metadata
``agentsim_trace_version``, ``block_size_tokens`` and ``source``.

This module holds the format itself: columns, metadata keys, version, :class:`TraceTask`, the errors. The
package around it: :mod:`~agentsim.traces.tables` (tasks <-> Arrow tables, with the rule checks),
:mod:`~agentsim.traces.io` (streaming files), :mod:`~agentsim.traces.generate` (traces from profiles),
:mod:`~agentsim.traces.importers` (other formats in), :mod:`~agentsim.traces.export` (JSONL out),
:mod:`~agentsim.traces.stats`, :mod:`~agentsim.traces.fit` and :mod:`~agentsim.traces.chains` (summaries,
look-alike profiles, sessions recovered from block hashes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from agentsim.workload.taskgraph import TaskTemplate

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


# --------------------------------------------------------------------------- Arrow schemas


def check_columns(schema: pa.Schema, where: str) -> None:
    """Raise :class:`TraceError` (naming ``where``) unless ``schema`` has every required canonical column."""
    missing = [n for n in COLUMN_NAMES if n not in schema.names and n not in OPTIONAL_COLUMNS]
    if missing:
        raise TraceError(f"{where}: not an agentsim trace: missing column(s) {', '.join(missing)}")
    canonical = trace_schema()
    for name in COLUMN_NAMES:
        if name not in schema.names:
            continue
        got, want = schema.field(name).type, canonical.field(name).type
        if got != want and not _compatible(got, want):
            raise TraceError(f"{where}: not an agentsim trace: column {name} holds {got}, expected {want}")


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    """Whether a column of type ``got`` reads as ``want`` (integers as integers, numbers as floats, lists of
    those alike, strings of any width as strings)."""
    t = pa.types
    if t.is_integer(want):
        return bool(t.is_integer(got))
    if t.is_floating(want):
        return bool(t.is_integer(got) or t.is_floating(got))
    if t.is_string(want) or t.is_large_string(want) or t.is_dictionary(want):
        return bool(t.is_string(got) or t.is_large_string(got) or t.is_dictionary(got))
    if pa.types.is_list(want) or pa.types.is_large_list(want):
        return (pa.types.is_list(got) or pa.types.is_large_list(got)) and _compatible(got.value_type, want.value_type)
    return bool(got == want)


def schema_block_size(schema: pa.Schema) -> int:
    """The ``block_size_tokens`` of a schema's metadata (:data:`DEFAULT_BLOCK_SIZE` when absent or unreadable)."""
    meta = schema.metadata or {}
    raw = meta.get(META_BLOCK.encode())
    try:
        return int(raw) if raw is not None else DEFAULT_BLOCK_SIZE
    except ValueError:
        return DEFAULT_BLOCK_SIZE
