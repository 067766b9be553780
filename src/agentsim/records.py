"""Row buffers, column-wise, turned into Arrow tables once at the end of a run.

Appending to Python lists per column is the cheapest way to record a million rows from a simulation; the
conversion to Arrow happens once. Unset times are ``None`` (null in Parquet), never 0. The schemas below are
the contract documented in ``docs/METRICS.md``.
"""

from __future__ import annotations

from typing import Any

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
        ("output_tokens", pa.int64()),
        ("prefill_tokens", pa.int64()),
    ]
)


class Columns:
    """Lists of values, one per column of ``schema``."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.cols: dict[str, list[Any]] = {name: [] for name in schema.names}

    def table(self) -> pa.Table:
        """The buffered rows as an Arrow table of ``schema``."""
        return pa.Table.from_pydict(self.cols, schema=self.schema)

    def __len__(self) -> int:
        return len(next(iter(self.cols.values())))


class Recorder:
    """Buffers call, task and replica-sample rows during a run."""

    def __init__(self, workload_labels: list[str]) -> None:
        self.labels = workload_labels
        self.calls = Columns(CALLS_SCHEMA)
        self.tasks = Columns(TASKS_SCHEMA)
        self.replicas = Columns(REPLICAS_SCHEMA)
        c = self.calls.cols
        # Bound appenders: the per-call hot path does no dict lookups.
        self._call_appenders = [c[name].append for name in CALLS_SCHEMA.names]

    def call(self, call: Call) -> None:
        """Record one call (finished, or in flight at the end of the run)."""
        r = call.replica
        task: TaskRun = call.owner
        values = (
            task.id,
            call.id,
            call.index,
            self.labels[call.workload],
            None if r is None else r.pool,
            None if r is None else r.index,
            call.issue_s,
            call.first_token_s,
            call.done_s,
            call.prompt,
            call.cached,
            call.output,
            call.generated,
            call.preemptions,
            call.busy_share_s,
        )
        for append, v in zip(self._call_appenders, values, strict=True):
            append(v)

    def task(self, task: TaskRun) -> None:
        """Record one task (finished, or in flight at the end of the run)."""
        issued = [c for c in task.calls if c is not None]
        gaps = task.template.calls
        t = self.tasks.cols
        t["task_id"].append(task.id)
        t["workload"].append(self.labels[task.stream.index])
        t["agent"].append(task.agent)
        t["start_s"].append(task.start_s)
        t["done_s"].append(task.done_s)
        t["calls"].append(len(issued))
        t["calls_planned"].append(len(gaps))
        t["prompt_tokens"].append(sum(c.prompt for c in issued))
        t["cached_tokens"].append(sum(c.cached for c in issued))
        t["output_tokens"].append(sum(c.output for c in issued))
        t["tool_s"].append(sum(gaps[c.index].gap_s for c in issued))
        t["busy_s"].append(sum(c.busy_share_s for c in issued))

    def sample(self, t_s: float, pool: str, replica: int, state: tuple[int, int, int, float, int, int],
               capacity: int) -> None:
        """Record one time-series row of a replica."""
        running, waiting, held, busy, out, prefill = state
        r = self.replicas.cols
        r["t_s"].append(t_s)
        r["pool"].append(pool)
        r["replica"].append(replica)
        r["running"].append(running)
        r["waiting"].append(waiting)
        r["kv_used_tokens"].append(held)
        r["kv_capacity_tokens"].append(capacity)
        r["busy_s"].append(busy)
        r["output_tokens"].append(out)
        r["prefill_tokens"].append(prefill)
