"""Row buffers that pack each row into a binary record at once, handed on as Arrow record batches as they fill.

A run records a million rows or more. Keeping them as Python objects (one list per column) and converting at
the end costs far more than it seems: every value is a boxed object, allocated when recorded, and read and
freed again at conversion long after it left the CPU caches. Instead each row is packed on the spot, with one
``struct.Struct.pack_into`` call, into a fixed-layout record in a preallocated buffer; a full buffer becomes an
Arrow record batch through a numpy structured view (vectorized, no per-value work). Unset times are ``None``
(null in Parquet), never 0: a nullable column carries a validity byte in the record. Strings are stored as
codes into a per-column list of words.

A full buffer goes to the table's *sink* (:data:`Sink`): during a run, a Parquet writer that stores it as one row
group of a spill file (:mod:`agentsim.spill`), so the rows of a long run never accumulate in memory; without a
sink the batches are kept and :meth:`Rows.table` joins them (tests, small tools).

The columns are those declared in :mod:`agentsim.columns` (the contract ``docs/METRICS.md`` documents): the
schemas, the record layout and the nullable columns all derive from that declaration. Rows are written *by
name*: :meth:`Recorder.call`, :meth:`Recorder.task` and :meth:`Recorder.replica_sample` take one keyword
argument per column, named as the column; inside each, the values are packed in the declared order (a test
writes distinct values by name and reads every column back by name).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentsim import columns
from agentsim.serving.call import Call

CALLS_SCHEMA = columns.schema(tuple(c for c in columns.CALLS if c.source == "engine"))
"""What the engine records per call (the call table before costs)."""

TASKS_SCHEMA = columns.schema(tuple(c for c in columns.TASKS if c.source != "cost"))
"""The task table before costs: the recorded columns and the sums over each task's calls."""

TASK_SUMS = columns.names(columns.TASKS, "task_sum")
"""Task columns that sum the task's rows of the call table: not recorded per task, added by
:meth:`Recorder.tasks_table` (``calls`` counts them; ``busy_s`` sums ``busy_s + prefill_busy_s``)."""

TASK_RECORD_SCHEMA = columns.schema(tuple(c for c in columns.TASKS if c.source == "engine")).append(
    pa.field("recorded_s", pa.float64())
)
"""What is recorded per task: its engine columns, and when its row was recorded (``recorded_s``, not an output
column: the simulated time its task finished, failed, or the horizon; rows are recorded in that order, so the
tasks table can be finished with the call file read alongside, :mod:`agentsim.analysis.task_sums`)."""

REPLICAS_SCHEMA = columns.schema(columns.REPLICAS)


UNIFIED_CONSTANT: dict[str, Any] = {
    "prefill_pool": None,
    "prefill_replica": None,
    "decode_replica": None,
    "kv_transfer_s": None,
    "prefill_busy_s": 0.0,
    "prefill_busy_prompt_steps_s": 0.0,
}
"""The call table's hand-off columns in a run without a prefill pool (see :class:`Recorder`): its last six."""
assert CALLS_SCHEMA.names[-len(UNIFIED_CONSTANT) :] == list(UNIFIED_CONSTANT), "packed as the record's tail"


CALL_STATUS: Final = ("finished", "unfinished", "rejected")
"""The words of the call table's ``status`` (codes 0, 1, 2)."""

TASK_STATUS: Final = ("finished", "unfinished", "failed")
"""The words of the task table's ``status``."""

CALLS_NULLABLE = tuple(c.name for c in columns.CALLS if c.nullable)
"""Call-table columns that may be null: never routed, not there yet, or no hand-off."""

TASKS_NULLABLE = tuple(c.name for c in columns.TASKS if c.nullable)
"""Task-table columns that may be null: open-loop tasks have no agent; unfinished ones no end."""

_CODES: dict[pa.DataType, tuple[str, str]] = {  # Arrow type -> (struct format, numpy dtype) of its record field
    pa.int64(): ("q", "<i8"),
    pa.int32(): ("i", "<i4"),
    pa.float64(): ("d", "<f8"),
    pa.string(): ("i", "<i4"),  # a code into the column's words
    pa.bool_(): ("?", "?"),
}


def _constant(value: Any, n: int, typ: pa.DataType) -> pa.Array:
    """``n`` copies of ``value`` (``None``: nulls) as one Arrow array, built whole."""
    return pa.nulls(n, typ) if value is None else pa.array(np.full(n, value), type=typ)


CHUNK_ROWS: Final = 65_536
"""Rows packed into one buffer before it becomes an Arrow record batch (and, during a run, a Parquet row group)."""

Sink = Callable[[pa.RecordBatch], None]
"""Takes each record batch of a table as its buffer fills (and the last, partial one at :meth:`Rows.close`)."""


class Rows:
    """Rows of ``schema`` packed into fixed-layout binary records, in buffers of :data:`CHUNK_ROWS` rows that
    become Arrow record batches when full.

    The record of a row has, in schema order, one field per column (``int64`` and ``float64``: 8 bytes,
    ``int32`` and string codes: 4, ``bool``: 1), each preceded by a validity byte if the column is in
    ``nullable`` (writers pack ``False, 0`` for a null). ``words`` gives a string column its words up front (a
    writer then packs the index of its word); otherwise :meth:`code` numbers them as they come. :meth:`append`
    takes a row of plain values; the hot writers (:class:`Recorder`) pack theirs with ``pack_into(buf, slot(),
    ...)``.

    ``constant`` maps column names to a value every row of this run has (``None``: null). Such a column is not
    in the record: it is built whole at each flush (the call table's six hand-off columns hold only nulls and
    zeros when there is no prefill pool).

    ``sink``: where full buffers go as record batches (:data:`Sink`); without one they are kept for
    :meth:`table`."""

    def __init__(
        self,
        schema: pa.Schema,
        constant: dict[str, Any] | None = None,
        nullable: Iterable[str] = (),
        words: dict[str, list[str]] | None = None,
        sink: Sink | None = None,
    ) -> None:
        self.schema = schema
        self.sink = sink
        fixed = constant or {}
        may_be_null = set(nullable)
        given = words or {}
        unknown = (set(fixed) | may_be_null | set(given)) - set(schema.names)
        if unknown:
            raise ValueError(f"columns not in the schema: {sorted(unknown)}")
        self.constant: dict[int, Any] = {schema.get_field_index(k): v for k, v in fixed.items()}
        self.nullable = [f.name in may_be_null for f in schema]
        self.strings = [f.type == pa.string() for f in schema]
        self.words: list[list[str]] = [list(given.get(f.name, [])) for f in schema]
        self.codes: list[dict[str, int]] = [{w: i for i, w in enumerate(ws)} for ws in self.words]
        self.formats: list[str] = []  # per column: its part of the record's struct format ("" if constant)
        fields: list[tuple[str, str]] = []
        for i, f in enumerate(schema):
            if i in self.constant:
                self.formats.append("")
                continue
            if f.type not in _CODES:
                raise ValueError(f"column {f.name}: type {f.type} cannot be packed")
            code, dtype = _CODES[f.type]
            if self.nullable[i]:
                fields.append((f"{f.name}?", "?"))  # no column name ends in "?"
            fields.append((f.name, dtype))
            self.formats.append(("?" if self.nullable[i] else "") + code)
        packer = struct.Struct("<" + "".join(self.formats))
        # Bound once: calling it skips looking the method up by name on every row.
        self.pack_into: Callable[..., None] = packer.pack_into
        self.dtype = np.dtype(fields)  # packed like the struct ("<": no padding)
        assert self.dtype.itemsize == packer.size
        self.record_bytes = packer.size
        self.buf = bytearray(self.record_bytes * CHUNK_ROWS)
        self.n = 0  # rows in the buffer
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0

    def split(self, column: str) -> tuple[Callable[..., None], Callable[..., None], int]:
        """Pack a record in two parts: ``(head, tail, offset)``, where ``head(buf, off, ...)`` packs the columns
        before ``column`` and ``tail(buf, off + offset, ...)`` the rest (for a writer whose later columns are
        only sometimes recorded)."""
        i = self.schema.get_field_index(column)
        head = struct.Struct("<" + "".join(self.formats[:i]))
        tail = struct.Struct("<" + "".join(self.formats[i:]))
        assert head.size + tail.size == self.record_bytes
        return head.pack_into, tail.pack_into, head.size

    def slot(self) -> int:
        """Byte offset of the next row's record in :attr:`buf` (the row is counted; the writer packs it)."""
        if self.n == CHUNK_ROWS:
            self._flush()
        off = self.n * self.record_bytes
        self.n += 1
        self.rows += 1
        return off

    def code(self, column: int, word: str) -> int:
        """The code of ``word`` in string column ``column`` (numbered on first sight)."""
        codes = self.codes[column]
        c = codes.get(word)
        if c is None:
            c = len(codes)
            codes[word] = c
            self.words[column].append(word)
        return c

    def append(self, row: tuple[Any, ...]) -> None:
        """Add one row, its values in the order of ``schema``'s columns (constant columns' values ignored)."""
        values: list[Any] = []
        for i, (f, value) in enumerate(zip(self.schema, row, strict=True)):
            if i in self.constant:
                continue
            if self.nullable[i]:
                values.append(value is not None)
            elif value is None:
                raise ValueError(f"column {f.name} is not nullable")
            if value is None:
                value = 0
            elif self.strings[i]:
                value = self.code(i, value)
            values.append(value)
        self.pack_into(self.buf, self.slot(), *values)

    def _flush(self) -> None:
        n = self.n
        records = np.frombuffer(self.buf, dtype=self.dtype, count=n)
        arrays: list[pa.Array] = []
        for i, f in enumerate(self.schema):
            if i in self.constant:
                arrays.append(_constant(self.constant[i], n, f.type))
                continue
            values = np.array(records[f.name])  # a copy: the buffer is reused
            mask = ~records[f"{f.name}?"] if self.nullable[i] else None
            if self.strings[i]:
                codes = pa.array(values, mask=mask)
                arrays.append(pc.take(pa.array(self.words[i], type=pa.string()), codes))
            else:
                arrays.append(pa.array(values, type=f.type, mask=mask))
        del records  # release the buffer view
        self.n = 0
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        if self.sink is None:
            self.batches.append(batch)
        else:
            self.sink(batch)

    def close(self) -> None:
        """Hand the rows still in the buffer on (with a sink: the last batch; otherwise kept for :meth:`table`)."""
        if self.n:
            self._flush()

    def table(self) -> pa.Table:
        """The rows as an Arrow table of ``schema`` (one contiguous chunk per column); without a sink only."""
        if self.sink is not None:
            raise ValueError("the rows went to a sink; read them from there")
        self.close()
        if not self.batches:
            return self.schema.empty_table()
        return pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()

    def __len__(self) -> int:
        return self.rows


class Recorder:
    """Records call, task and replica-sample rows during a run, each row written by column name (told of
    finished calls and tasks by the agents, and of in-flight ones at the end by the run).

    ``disaggregated=False`` (no prefill pool: no call is ever handed from a prefill to a decode replica) makes
    the call table's six hand-off columns constant -- null, or 0 seconds -- so they are built whole, not
    recorded call by call (the hand-off arguments of :meth:`call` are then ignored).

    ``sinks`` maps ``"calls"``, ``"tasks"`` and ``"replicas"`` to where each table's record batches go as they
    fill (:data:`Sink`; a run streams them to Parquet); a table without one keeps its rows for ``.table()``.
    :meth:`close` hands on the last rows."""

    def __init__(
        self,
        workload_labels: list[str],
        *,
        disaggregated: bool = True,
        models: list[str] | None = None,
        sinks: Mapping[str, Sink] | None = None,
    ) -> None:
        self.disaggregated = disaggregated
        words = {"workload": workload_labels}  # a call's or task's workload index is its code
        constant = None if disaggregated else UNIFIED_CONSTANT
        to = sinks or {}
        unknown = set(to) - {"calls", "tasks", "replicas"}
        if unknown:
            raise ValueError(f"no table named {sorted(unknown)}")
        # A call's model index is its code (resolve.py's order of the models the pools serve).
        call_words = words | {"status": list(CALL_STATUS), "model": list(models or [""])}
        self.calls = Rows(CALLS_SCHEMA, constant, CALLS_NULLABLE, call_words, to.get("calls"))
        self.tasks = Rows(
            TASK_RECORD_SCHEMA, None, TASKS_NULLABLE, words | {"status": list(TASK_STATUS)}, to.get("tasks")
        )
        self.replicas = Rows(REPLICAS_SCHEMA, sink=to.get("replicas"))
        self._call_status = {w: i for i, w in enumerate(CALL_STATUS)}
        self._task_status = {w: i for i, w in enumerate(TASK_STATUS)}
        self._failure = TASK_RECORD_SCHEMA.get_field_index("failure")
        self._pool = CALLS_SCHEMA.get_field_index("pool")
        self._prefill_pool = CALLS_SCHEMA.get_field_index("prefill_pool")
        # A call's record: the head always, the hand-off columns (the tail) only when disaggregated.
        self._pack_head: Callable[..., None] = self.calls.pack_into
        self._pack_tail: Callable[..., None] = self.calls.pack_into
        self._tail_offset = 0
        if disaggregated:
            self._pack_head, self._pack_tail, self._tail_offset = self.calls.split(next(iter(UNIFIED_CONSTANT)))

    def close(self) -> None:
        """The end of the run: every table's last rows go to its sink (or stay for ``.table()``)."""
        self.calls.close()
        self.tasks.close()
        self.replicas.close()

    def call(
        self,
        *,
        task_id: int,
        call_id: int,
        call_index: int,
        workload: int,
        model: int,
        pool: str | None,
        replica: int | None,
        issue_s: float,
        admitted_s: float | None,
        first_token_s: float | None,
        done_s: float | None,
        status: str,
        prompt_tokens: int,
        compacted: bool,
        cached_tokens: int,
        reloaded_dram_tokens: int,
        reloaded_nvme_tokens: int,
        reload_s: float,
        output_tokens: int,
        reasoning_tokens: int,
        generated_tokens: int,
        preemptions: int,
        busy_s: float,
        busy_prompt_steps_s: float,
        prefill_pool: str | None = None,
        prefill_replica: int | None = None,
        decode_replica: int | None = None,
        kv_transfer_s: float | None = None,
        prefill_busy_s: float = 0.0,
        prefill_busy_prompt_steps_s: float = 0.0,
    ) -> None:
        """Record one call row (``workload``: the workload's index, the order of ``workload_labels``; ``model``:
        the model's index, the order of ``models``)."""
        rows = self.calls
        off = rows.slot()
        # In CALLS_SCHEMA order, a validity flag before each nullable value. Arguments written out, not a
        # tuple spread with *: a spread builds two tuples per row.
        self._pack_head(
            rows.buf,
            off,
            task_id,
            call_id,
            call_index,
            workload,
            model,
            pool is not None,
            0 if pool is None else rows.code(self._pool, pool),
            replica is not None,
            0 if replica is None else replica,
            issue_s,
            admitted_s is not None,
            0.0 if admitted_s is None else admitted_s,
            first_token_s is not None,
            0.0 if first_token_s is None else first_token_s,
            done_s is not None,
            0.0 if done_s is None else done_s,
            self._call_status[status],
            prompt_tokens,
            compacted,
            cached_tokens,
            reloaded_dram_tokens,
            reloaded_nvme_tokens,
            reload_s,
            output_tokens,
            reasoning_tokens,
            generated_tokens,
            preemptions,
            busy_s,
            busy_prompt_steps_s,
        )
        if not self.disaggregated:  # the rest are the hand-off columns, constant in this run (UNIFIED_CONSTANT)
            return
        self._pack_tail(
            rows.buf,
            off + self._tail_offset,
            prefill_pool is not None,
            0 if prefill_pool is None else rows.code(self._prefill_pool, prefill_pool),
            prefill_replica is not None,
            0 if prefill_replica is None else prefill_replica,
            decode_replica is not None,
            0 if decode_replica is None else decode_replica,
            kv_transfer_s is not None,
            0.0 if kv_transfer_s is None else kv_transfer_s,
            prefill_busy_s,
            prefill_busy_prompt_steps_s,
        )

    def on_call_done(self, call: Call, task_id: int, compacted: bool, rejected: bool = False) -> None:
        """Record one call of task ``task_id`` (finished, in flight at the end of the run, or ``rejected`` by the
        server when sent: its prompt + output passed the context window, so it was never routed and its fields
        keep their initial values: nothing cached, generated or busy); ``compacted``: the agent compacted its
        context before it."""
        r = call.replica
        pr = call.prefill_replica
        decoded = pr is not None and r is not None and r is not pr  # null while the KV is in transit
        reloaded = call.reloaded
        self.call(
            task_id=task_id,
            call_id=call.id,
            call_index=call.index,
            workload=call.workload,
            model=call.model,
            pool=None if r is None else r.pool,
            replica=None if r is None else r.index,
            issue_s=call.issue_s,
            admitted_s=call.admitted_s,
            first_token_s=call.first_token_s,
            done_s=call.done_s,
            status="rejected" if rejected else "unfinished" if call.done_s is None else "finished",
            prompt_tokens=call.prompt,
            compacted=compacted,
            cached_tokens=call.cached,
            reloaded_dram_tokens=0 if reloaded is None else reloaded[0],
            reloaded_nvme_tokens=0 if reloaded is None else reloaded[1],
            reload_s=call.reload_s,
            output_tokens=call.output,
            reasoning_tokens=call.reasoning,
            generated_tokens=call.generated,
            preemptions=call.preemptions,
            busy_s=call.busy_share_s,
            busy_prompt_steps_s=call.mixed_share_s,
            prefill_pool=None if pr is None else pr.pool,
            prefill_replica=None if pr is None else pr.index,
            decode_replica=r.index if decoded and r is not None else None,
            kv_transfer_s=call.kv_transfer_s,
            prefill_busy_s=call.prefill_busy_s,
            prefill_busy_prompt_steps_s=call.prefill_mixed_s,
        )

    def task(
        self,
        *,
        task_id: int,
        workload: int,
        agent: int | None,
        start_s: float,
        done_s: float | None,
        status: str,
        failure: str | None,
        calls_planned: int,
        tool_s: float,
        tool_busy_s: float,
        tool_wait_s: float,
        recorded_s: float,
    ) -> None:
        """Record one task (finished, failed, or in flight at the end of the run) at simulated time
        ``recorded_s``. Its sums over its calls come from the call table at the end (:meth:`tasks_table`)."""
        rows = self.tasks
        rows.pack_into(  # in TASK_RECORD_SCHEMA order, a validity flag before each nullable value
            rows.buf,
            rows.slot(),
            task_id,
            workload,
            agent is not None,
            0 if agent is None else agent,
            start_s,
            done_s is not None,
            0.0 if done_s is None else done_s,
            self._task_status[status],
            failure is not None,
            0 if failure is None else rows.code(self._failure, failure),
            calls_planned,
            tool_s,
            tool_busy_s,
            tool_wait_s,
            recorded_s,
        )

    def tasks_table(self, calls: pa.Table) -> pa.Table:
        """The tasks table (:data:`TASKS_SCHEMA`): the recorded tasks, with their :data:`TASK_SUMS` over
        ``calls`` (the call table of the same run: every call sent, finished or not)."""
        recorded = self.tasks.table()
        return with_task_sums(recorded, TaskSums(calls, recorded.column("task_id").to_numpy()))

    def replica_sample(
        self,
        *,
        t_s: float,
        pool: str,
        replica: int,
        running: int,
        waiting: int,
        kv_used_tokens: int,
        kv_capacity_tokens: int,
        kv_dram_tokens: int,
        kv_nvme_tokens: int,
        busy_s: float,
        busy_prompt_steps_s: float,
        provisioned_s: float,
        output_tokens: int,
        prefill_tokens: int,
        state: str,
        steps: int,
        kv_cached_tokens: int,
        preemptions: int,
        evicted_tokens: int,
    ) -> None:
        """Record one time-series row of a replica (or of the tool pool)."""
        values = {
            "t_s": t_s,
            "pool": pool,
            "replica": replica,
            "running": running,
            "waiting": waiting,
            "kv_used_tokens": kv_used_tokens,
            "kv_capacity_tokens": kv_capacity_tokens,
            "kv_dram_tokens": kv_dram_tokens,
            "kv_nvme_tokens": kv_nvme_tokens,
            "busy_s": busy_s,
            "busy_prompt_steps_s": busy_prompt_steps_s,
            "provisioned_s": provisioned_s,
            "output_tokens": output_tokens,
            "prefill_tokens": prefill_tokens,
            "state": state,
            "steps": steps,
            "kv_cached_tokens": kv_cached_tokens,
            "preemptions": preemptions,
            "evicted_tokens": evicted_tokens,
        }
        self.replicas.append(tuple(values[name] for name in REPLICAS_SCHEMA.names))


def number_tasks(task_ids: np.ndarray, call_task_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Number the task ids of a tasks table and of a calls table alike (0 .. ``size`` - 1), for per-task sums
    with ``np.bincount(of_call, weights, minlength=size)[of_task]``: sums over each task's call rows, in row
    order, read back in the tasks' row order (0 for a task without calls). Task ids are counters from 0, so
    they are their own numbers (``size``: the largest id + 1)."""
    of_task = np.asarray(task_ids, dtype=np.int64)
    of_call = np.asarray(call_task_ids, dtype=np.int64)
    size = 1 + max(int(of_task.max(initial=-1)), int(of_call.max(initial=-1)))
    if (of_task.size and of_task.min() < 0) or (of_call.size and of_call.min() < 0):
        raise ValueError("task ids must be >= 0")
    return of_task, of_call, size


class TaskSums:
    """Each task's sums over its rows of a call table (:data:`TASK_SUMS`, and the call columns ``extra``), for
    tasks looked up by id (:meth:`of`): a run's task table is finished from its spill file batch by batch.

    ``calls``: an Arrow table, or the call table's record batches in row order (a run's call file read a row
    group at a time: the sums are then the only arrays of the run's length, one float per task and sum);
    ``task_ids``: those of the task table (they size the sums). Each sum adds a task's calls in row order
    starting from 0.0, as one ``np.bincount`` over the whole table would (:func:`number_tasks`): batch after
    batch, ``np.add.at`` does the same additions in the same order, whatever the batches' boundaries."""

    def __init__(
        self, calls: pa.Table | Iterable[pa.RecordBatch | pa.Table], task_ids: np.ndarray, extra: tuple[str, ...] = ()
    ) -> None:
        of_task = np.asarray(task_ids, dtype=np.int64)
        if of_task.size and of_task.min() < 0:
            raise ValueError("task ids must be >= 0")
        size = 1 + int(of_task.max(initial=-1))
        names = ("prompt_tokens", "cached_tokens", "output_tokens", *extra)
        self.count = np.zeros(size, dtype=np.int64)
        self.sums: dict[str, np.ndarray] = {name: np.zeros(size) for name in (*names, "busy_s")}
        for batch in calls.to_batches() if isinstance(calls, pa.Table) else calls:
            of_call = np.asarray(batch.column("task_id").to_numpy(), dtype=np.int64)
            if not of_call.size:
                continue
            if of_call.min() < 0:
                raise ValueError("task ids must be >= 0")
            top = int(of_call.max()) + 1
            if top > size:  # a call of a task the task table does not have: sums up to its id too
                self.count = np.concatenate([self.count, np.zeros(top - size, dtype=np.int64)])
                self.sums = {k: np.concatenate([v, np.zeros(top - size)]) for k, v in self.sums.items()}
                size = top
            self.count += np.bincount(of_call, minlength=size)  # integers: exact in any order
            for name in names:
                # float64 sums of token counts are exact below 2**53 tokens per task
                np.add.at(self.sums[name], of_call, np.asarray(batch.column(name).to_numpy(), dtype=np.float64))
            busy = np.array(batch.column("busy_s").to_numpy(), dtype=np.float64)  # a copy: added to in place
            busy += batch.column("prefill_busy_s").to_numpy()
            np.add.at(self.sums["busy_s"], of_call, busy)
        self.size = size

    def _rows(self, task_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(task_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError("task ids outside the sums")
        return ids

    def of(self, name: str, task_ids: np.ndarray) -> np.ndarray:
        """Sum ``name`` of the tasks ``task_ids`` (0 for a task without calls)."""
        picked: np.ndarray = self.sums[name][self._rows(task_ids)]
        return picked

    def counts(self, task_ids: np.ndarray) -> np.ndarray:
        """How many call rows each of the tasks ``task_ids`` has."""
        picked: np.ndarray = self.count[self._rows(task_ids)]
        return picked


class PerTaskSums(Protocol):
    """Sums over each task's call rows, looked up by task id: :class:`TaskSums`, or the streamed ones of
    :mod:`agentsim.analysis.task_sums`."""

    def of(self, name: str, task_ids: np.ndarray) -> np.ndarray: ...

    def counts(self, task_ids: np.ndarray) -> np.ndarray: ...


def with_task_sums(recorded: pa.Table, sums: PerTaskSums) -> pa.Table:
    """Recorded task rows (:data:`TASK_RECORD_SCHEMA`) completed into the tasks table (:data:`TASKS_SCHEMA`) with
    their sums over their calls."""
    ids = np.asarray(recorded.column("task_id").to_numpy(), dtype=np.int64)
    columns: dict[str, pa.Array] = {"calls": pa.array(sums.counts(ids), pa.int32())}
    for name in ("prompt_tokens", "cached_tokens", "output_tokens"):
        columns[name] = pa.array(sums.of(name, ids).astype(np.int64))
    columns["busy_s"] = pa.array(sums.of("busy_s", ids))
    return pa.table([columns[f.name] if f.name in columns else recorded.column(f.name) for f in TASKS_SCHEMA],
                    schema=TASKS_SCHEMA)  # fmt: skip
