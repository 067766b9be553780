"""Row buffers, column-wise, turned into Arrow tables once at the end of a run.

Appending to one Python list per column is a cheap way to record a million rows from a simulation (the module
is compiled, see ``setup.py``); the conversion to Arrow happens once, a column at a time. Unset times are
``None`` (null in Parquet), never 0. The schemas below are the contract documented in ``docs/METRICS.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from agentsim.agents import TaskRun
from agentsim.serving.call import Call

CALLS_SCHEMA = pa.schema(
    [
        ("task_id", pa.int64()),
        ("call_id", pa.int64()),
        ("call_index", pa.int32()),
        ("workload", pa.string()),
        ("pool", pa.string()),
        ("replica", pa.int32()),
        ("issue_s", pa.float64()),
        ("first_token_s", pa.float64()),
        ("done_s", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("generated_tokens", pa.int64()),
        ("preemptions", pa.int32()),
        ("busy_s", pa.float64()),
        ("busy_prompt_steps_s", pa.float64()),
        ("prefill_pool", pa.string()),
        ("prefill_replica", pa.int32()),
        ("decode_replica", pa.int32()),
        ("kv_transfer_s", pa.float64()),
        ("prefill_busy_s", pa.float64()),
        ("prefill_busy_prompt_steps_s", pa.float64()),
    ]
)

TASKS_SCHEMA = pa.schema(
    [
        ("task_id", pa.int64()),
        ("workload", pa.string()),
        ("agent", pa.int64()),
        ("start_s", pa.float64()),
        ("done_s", pa.float64()),
        ("calls", pa.int32()),
        ("calls_planned", pa.int32()),
        ("prompt_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("tool_s", pa.float64()),
        ("busy_s", pa.float64()),
        ("tool_busy_s", pa.float64()),
        ("tool_wait_s", pa.float64()),
    ]
)

REPLICAS_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("pool", pa.string()),
        ("replica", pa.int32()),
        ("running", pa.int32()),
        ("waiting", pa.int32()),
        ("kv_used_tokens", pa.int64()),
        ("kv_capacity_tokens", pa.int64()),
        ("busy_s", pa.float64()),
        ("busy_prompt_steps_s", pa.float64()),
        ("provisioned_s", pa.float64()),
        ("output_tokens", pa.int64()),
        ("prefill_tokens", pa.int64()),
        ("state", pa.string()),
    ]
)


UNIFIED_CONSTANT: dict[str, Any] = {
    "prefill_pool": None,
    "prefill_replica": None,
    "decode_replica": None,
    "kv_transfer_s": None,
    "prefill_busy_s": 0.0,
    "prefill_busy_prompt_steps_s": 0.0,
}
"""The call table's hand-off columns in a run without a prefill pool (see :class:`Recorder`): its last six."""
assert CALLS_SCHEMA.names[-len(UNIFIED_CONSTANT) :] == list(UNIFIED_CONSTANT), "Recorder.call relies on it"


def _to_arrow(col: list[Any], typ: pa.DataType) -> pa.Array:
    """One column chunk as Arrow. Integer columns without nulls go through numpy (``np.fromiter`` is ~3x faster
    than Arrow's per-object conversion); a null makes it raise and Arrow converts the column instead."""
    if pa.types.is_integer(typ):
        try:
            return pa.array(np.fromiter(col, dtype=typ.to_pandas_dtype(), count=len(col)), type=typ)
        except (TypeError, ValueError, OverflowError):
            pass
    return pa.array(col, type=typ)


def _constant(value: Any, n: int, typ: pa.DataType) -> pa.Array:
    """``n`` copies of ``value`` (``None``: nulls) as one Arrow array, built whole."""
    return pa.nulls(n, typ) if value is None else pa.array(np.full(n, value), type=typ)


CHUNK_ROWS = 65_536
"""Rows buffered as Python objects before they move into an Arrow record batch (~8 bytes a value instead of
~32: a run of a million calls keeps its rows in a few hundred MB, not gigabytes)."""


class Rows:
    """Rows buffered column by column (one Python list per column of ``schema``), moved into Arrow record
    batches every :data:`CHUNK_ROWS` rows, so the conversion is one ``pa.array`` per column and chunk with no
    transposition.

    ``constant`` maps column names to a value every row of this run has (``None``: null). Such a column is not
    buffered: writers leave its list empty and it is built whole at each flush. Converting a value to Arrow
    costs 200-300 instructions, so a unified cluster (no prefill pool) saves six of the call table's columns
    per row this way: they hold only nulls and zeros."""

    def __init__(self, schema: pa.Schema, constant: dict[str, Any] | None = None) -> None:
        self.schema = schema
        self.columns: list[list[Any]] = [[] for _ in schema.names]
        fixed = constant or {}
        unknown = set(fixed) - set(schema.names)
        if unknown:
            raise ValueError(f"constant columns not in the schema: {sorted(unknown)}")
        self.constant: dict[int, Any] = {schema.get_field_index(k): v for k, v in fixed.items()}
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0

    def append(self, row: tuple[Any, ...]) -> None:
        """Add one row, its values in the order of ``schema``'s columns (constant columns' values ignored)."""
        for i, (col, value) in enumerate(zip(self.columns, row, strict=True)):
            if i not in self.constant:
                col.append(value)
        self.added()

    def added(self) -> None:
        """Count a row its writer appended to :attr:`columns` directly (the hot path: no row tuple)."""
        self.rows += 1
        if len(self.columns[0]) >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        n = len(self.columns[0])
        arrays = [
            _to_arrow(col, field.type) if i not in self.constant else _constant(self.constant[i], n, field.type)
            for i, (col, field) in enumerate(zip(self.columns, self.schema, strict=True))
        ]
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        for col in self.columns:
            col.clear()  # in place: writers hold references to these lists

    def table(self) -> pa.Table:
        """The buffered rows as an Arrow table of ``schema`` (one contiguous chunk per column)."""
        if self.columns[0]:
            self._flush()
        if not self.batches:
            return self.schema.empty_table()
        return pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()

    def __len__(self) -> int:
        return self.rows


class Recorder:
    """Buffers call, task and replica-sample rows during a run.

    ``disaggregated=False`` (no prefill pool: no call is ever handed from a prefill to a decode replica) makes
    the call table's six hand-off columns constant -- null, or 0 seconds -- so they are built whole, not
    recorded call by call."""

    def __init__(self, workload_labels: list[str], *, disaggregated: bool = True) -> None:
        self.labels = workload_labels
        self.disaggregated = disaggregated
        self.calls = Rows(CALLS_SCHEMA, None if disaggregated else UNIFIED_CONSTANT)
        self.tasks = Rows(TASKS_SCHEMA)
        self.replicas = Rows(REPLICAS_SCHEMA)

    def call(self, call: Call) -> None:
        """Record one call (finished, or in flight at the end of the run)."""
        r = call.replica
        pr = call.prefill_replica
        task: TaskRun = call.owner
        c = self.calls.columns  # one append per column, in CALLS_SCHEMA order (no row tuple on the hot path)
        c[0].append(task.id)
        c[1].append(call.id)
        c[2].append(call.index)
        c[3].append(self.labels[call.workload])
        c[4].append(None if r is None else r.pool)
        c[5].append(None if r is None else r.index)
        c[6].append(call.issue_s)
        c[7].append(call.first_token_s)
        c[8].append(call.done_s)
        c[9].append(call.prompt)
        c[10].append(call.cached)
        c[11].append(call.output)
        c[12].append(call.generated)
        c[13].append(call.preemptions)
        c[14].append(call.busy_share_s)
        c[15].append(call.mixed_share_s)
        if not self.disaggregated:  # the rest are the hand-off columns, constant in this run (UNIFIED_CONSTANT)
            self.calls.added()
            return
        c[16].append(None if pr is None else pr.pool)
        c[17].append(None if pr is None else pr.index)
        c[18].append(None if pr is None or r is None or r is pr else r.index)  # null while the KV is in transit
        c[19].append(call.kv_transfer_s)
        c[20].append(call.prefill_busy_s)
        c[21].append(call.prefill_mixed_s)
        self.calls.added()

    def task(self, task: TaskRun) -> None:
        """Record one task (finished, or in flight at the end of the run)."""
        gaps = task.template.calls
        n = prompt = cached = output = 0
        tool = busy = 0.0
        for c in task.calls:
            if c is not None:
                n += 1
                prompt += c.prompt
                cached += c.cached
                output += c.output
                tool += gaps[c.index].gap_s
                busy += c.busy_share_s + c.prefill_busy_s
        t = self.tasks.columns  # in TASKS_SCHEMA order
        t[0].append(task.id)
        t[1].append(self.labels[task.stream.index])
        t[2].append(task.agent)
        t[3].append(task.start_s)
        t[4].append(task.done_s)
        t[5].append(n)
        t[6].append(len(gaps))
        t[7].append(prompt)
        t[8].append(cached)
        t[9].append(output)
        t[10].append(tool)
        t[11].append(busy)
        t[12].append(task.tool_busy_s)
        t[13].append(task.tool_wait_s)
        self.tasks.added()

    def sample(
        self,
        t_s: float,
        pool: str,
        replica: int,
        state: tuple[int, int, int, float, int, int],
        capacity: int,
        provisioned_s: float,
        status: str,
        busy_prompt_steps_s: float,
    ) -> None:
        """Record one time-series row of a replica (or of the tool pool)."""
        running, waiting, held, busy, out, prefill = state
        self.replicas.append(
            (
                t_s,
                pool,
                replica,
                running,
                waiting,
                held,
                capacity,
                busy,
                busy_prompt_steps_s,
                provisioned_s,
                out,
                prefill,
                status,
            )
        )
