"""The output tables' columns, declared once: name, Arrow type, unit, whether null is allowed, and who fills it.

A run writes four tables (``docs/METRICS.md`` defines every column): ``calls`` and ``tasks``, recorded row by
row as the simulation goes (:mod:`agentsim.engine.records`); ``replicas``, sampled on a time grid; ``pools``,
computed at the end (:mod:`agentsim.analysis.costs`). Each is declared here, in table order, and everything else
derives from the declaration: the Arrow schemas, the binary record layout of the row buffers, which columns may
be null, and the check that ``docs/METRICS.md`` documents exactly these columns with these types and units
(``tests/test_docs.py``).

``source`` says which layer fills a column: ``engine`` (recorded by the engine as it runs), ``task_sum`` (a
task's sum over its calls, computed from the call table at the end of the run) or ``cost`` (added by the
analysis from the resolved prices and power). Null means "did not happen" or "undefined", never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

Source = Literal["engine", "task_sum", "cost"]

_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an output table."""

    name: str
    type: str  # "int64" | "int32" | "float64" | "string" | "bool" (the Arrow type, as docs/METRICS.md writes it)
    unit: str  # "" for identifiers and counts of things, else "s", "tokens", "$", "J", ...
    nullable: bool = False
    source: Source = "engine"

    @property
    def arrow(self) -> pa.DataType:
        return _TYPES[self.type]


def schema(columns: tuple[Column, ...]) -> pa.Schema:
    """The Arrow schema of a table's columns (non-null columns marked not nullable only in the docs: Arrow
    fields stay nullable, as Parquet readers expect)."""
    return pa.schema([(c.name, c.arrow) for c in columns])


def names(columns: tuple[Column, ...], source: Source | None = None) -> tuple[str, ...]:
    """Names of ``columns`` (those filled by ``source``, if given), in table order."""
    return tuple(c.name for c in columns if source is None or c.source == source)


CALLS: tuple[Column, ...] = (
    Column("task_id", "int64", ""),
    Column("call_id", "int64", ""),
    Column("call_index", "int32", ""),
    Column("workload", "string", ""),
    Column("model", "string", ""),  # the model it called (a pool's deployment.model)
    Column("pool", "string", "", nullable=True),
    Column("replica", "int32", "", nullable=True),
    Column("issue_s", "float64", "s"),
    Column("admitted_s", "float64", "s", nullable=True),
    Column("first_token_s", "float64", "s", nullable=True),
    Column("done_s", "float64", "s", nullable=True),
    Column("status", "string", ""),  # finished | unfinished (at the horizon) | rejected (past the context window)
    Column("prompt_tokens", "int64", "tokens"),
    Column("compacted", "bool", ""),  # the agent compacted its context before this call
    Column("cached_tokens", "int64", "tokens"),
    Column("reloaded_dram_tokens", "int64", "tokens"),  # of cached_tokens: reloaded from host DRAM
    Column("reloaded_nvme_tokens", "int64", "tokens"),  # ... from local NVMe
    Column("reload_s", "float64", "s"),  # waiting for those reloads after admission
    Column("output_tokens", "int64", "tokens"),
    Column("reasoning_tokens", "int64", "tokens"),  # of output_tokens: reasoning, not delivered
    Column("generated_tokens", "int64", "tokens"),
    Column("preemptions", "int32", ""),
    Column("busy_s", "float64", "s"),
    Column("busy_prompt_steps_s", "float64", "s"),
    # The hand-off of a disaggregated call (prefill replica -> KV link -> decode replica); constant (null or 0)
    # in a run without a prefill pool, so the recorder builds them whole there (records.UNIFIED_CONSTANT).
    Column("prefill_pool", "string", "", nullable=True),
    Column("prefill_replica", "int32", "", nullable=True),
    Column("decode_replica", "int32", "", nullable=True),
    Column("kv_transfer_s", "float64", "s", nullable=True),
    Column("prefill_busy_s", "float64", "s"),
    Column("prefill_busy_prompt_steps_s", "float64", "s"),
    Column("usd", "float64", "$", source="cost"),
    Column("energy_j", "float64", "J", source="cost"),
)
"""``calls.parquet``: one row per call sent."""

TASKS: tuple[Column, ...] = (
    Column("task_id", "int64", ""),
    Column("workload", "string", ""),
    Column("agent", "int64", "", nullable=True),
    Column("start_s", "float64", "s"),
    Column("done_s", "float64", "s", nullable=True),
    Column("status", "string", ""),  # finished | unfinished (at the horizon) | failed
    Column("failure", "string", "", nullable=True),  # why it failed (context_window); null unless failed
    Column("calls", "int32", "", source="task_sum"),
    Column("calls_planned", "int32", ""),
    Column("prompt_tokens", "int64", "tokens", source="task_sum"),
    Column("cached_tokens", "int64", "tokens", source="task_sum"),
    Column("output_tokens", "int64", "tokens", source="task_sum"),
    Column("tool_s", "float64", "s"),
    Column("busy_s", "float64", "s", source="task_sum"),
    Column("tool_busy_s", "float64", "worker-s"),
    Column("tool_wait_s", "float64", "s"),
    Column("tool_usd", "float64", "$", source="cost"),
    Column("tool_energy_j", "float64", "J", source="cost"),
    Column("usd", "float64", "$", source="cost"),
    Column("energy_j", "float64", "J", source="cost"),
)
"""``tasks.parquet``: one row per task started before the horizon."""

REPLICAS: tuple[Column, ...] = (
    Column("t_s", "float64", "s"),
    Column("pool", "string", ""),
    Column("replica", "int32", ""),
    Column("running", "int32", "calls"),
    Column("waiting", "int32", "calls"),
    Column("kv_used_tokens", "int64", "tokens"),
    Column("kv_capacity_tokens", "int64", "tokens"),
    Column("kv_dram_tokens", "int64", "tokens"),  # KV held in the replica's host-DRAM tier
    Column("kv_nvme_tokens", "int64", "tokens"),  # ... in its NVMe tier
    Column("busy_s", "float64", "s"),
    Column("busy_prompt_steps_s", "float64", "s"),
    Column("provisioned_s", "float64", "s"),
    Column("output_tokens", "int64", "tokens"),
    Column("prefill_tokens", "int64", "tokens"),
    Column("state", "string", ""),
    Column("steps", "int64", "steps"),
    Column("kv_cached_tokens", "int64", "tokens"),
    Column("preemptions", "int64", ""),
    Column("evicted_tokens", "int64", "tokens"),
)
"""``replicas.parquet``: one row per replica (and the tool pool) per sample time."""

POOLS: tuple[Column, ...] = (
    Column("pool", "string", "", source="cost"),
    Column("role", "string", "", source="cost"),
    Column("model", "string", "", nullable=True, source="cost"),
    Column("replicas", "int64", "", source="cost"),
    Column("gpus", "int64", "GPUs", source="cost"),
    Column("usd_per_gpu_hour", "float64", "$/GPU-h", nullable=True, source="cost"),
    Column("provisioned_usd", "float64", "$", source="cost"),
    Column("calls_usd", "float64", "$", source="cost"),
    Column("idle_usd", "float64", "$", source="cost"),
    Column("busy_s", "float64", "replica-s", source="cost"),
    Column("idle_s", "float64", "replica-s", source="cost"),
    Column("busy_energy_j", "float64", "J", source="cost"),
    Column("idle_energy_j", "float64", "J", source="cost"),
    Column("kv_tier_usd", "float64", "$", source="cost"),
    Column("kv_tier_energy_j", "float64", "J", source="cost"),
)
"""``pools.parquet``: one row per pool over the whole run."""

TABLES: dict[str, tuple[Column, ...]] = {"calls": CALLS, "tasks": TASKS, "replicas": REPLICAS, "pools": POOLS}
"""Every output table's columns, by table name (the Parquet file's stem)."""
