"""Tables: canonical traces as Arrow tables, built from tasks and turned back into checked tasks.

A trace's rows are its tasks' calls (:mod:`agentsim.traces.schema`). :class:`TableBuilder` is the one place
tasks become rows: it collects tasks cheaply and computes the columns with numpy per batch.
:func:`single_call_table` builds rows for single-call tasks column-wise, without task objects (the fast path of
importers and of fixed-profile generation). The way back, :class:`TaskAssembler`, turns record batches into
:class:`~agentsim.traces.schema.TraceTask` objects while checking every file-level rule of the schema column-wise,
so a bad row is named without a per-row Python loop; :func:`table_to_tasks` and
:func:`~agentsim.traces.io.read_trace` both use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import chain, pairwise
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa

from agentsim.traces.schema import (
    BATCH_ROWS,
    COLUMN_NAMES,
    DEFAULT_BLOCK_SIZE,
    TraceError,
    TraceTask,
    check_columns,
    schema_block_size,
    trace_schema,
)
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate

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


class TaskAssembler:
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
        before_zero = np.zeros(n, dtype=bool)
        before_zero[firsts] = start < 0
        self._check(
            before_zero,
            row0,
            lambda i: (
                f"task {tid[i]} starts at {release[i] - gap[i]} s (its first call's release_s {release[i]} minus its "
                f"gap_s {gap[i]}): a task cannot start before time 0"
            ),
        )
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
            block_size_tokens = schema_block_size(table.schema)
    asm = TaskAssembler(block_size_tokens, where)
    batches: Iterable[Any] = table.to_batches(max_chunksize=BATCH_ROWS) if isinstance(table, pa.Table) else table
    if isinstance(table, pa.Table):
        check_columns(table.schema, where)
    for batch in batches:
        check_columns(batch.schema, where)
        yield from asm.feed(batch)
    yield from asm.end()
