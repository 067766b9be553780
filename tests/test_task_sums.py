"""The tasks table finished from the call file read alongside it (agentsim.analysis.task_sums): the same sums as
over the whole call table, bit for bit, holding only the tasks in flight, and refusing rows out of order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import agentsim
from agentsim import api
from agentsim.analysis.task_sums import StreamedTaskSums
from agentsim.engine.records import TaskSums

EXTRA = ("usd", "energy_j")
SUMMED = ("prompt_tokens", "cached_tokens", "output_tokens", *EXTRA, "busy_s")


def engine_like(rng: np.random.Generator, tasks: int) -> tuple[pa.Table, pa.Table]:
    """Call and task rows as the engine writes them: tasks start over time with a few calls each, a call's row
    when it ends, a task's row when its last call has ended (or, still running at the horizon, last)."""
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, task)
    calls: list[dict[str, Any]] = []
    horizon = 0.6 * tasks
    for task in range(tasks):
        t = task * 0.5 + rng.uniform(0, 0.5)
        for _ in range(int(rng.integers(0, 6))):
            t += rng.exponential(1.0)
            row = {"task_id": task, "done_s": t if t <= horizon else np.nan}
            row |= {name: float(rng.integers(0, 1000)) for name in SUMMED[:3]}
            row |= {name: float(rng.uniform(0, 2)) for name in (*EXTRA, "busy_s", "prefill_busy_s")}
            calls.append(row)
            events.append((t if t <= horizon else np.inf, len(events), "call", len(calls) - 1))
        events.append((t if t <= horizon else np.inf, len(events), "task", task))
    events.sort(key=lambda e: (e[0], e[1]))
    call_rows = [calls[i] for _, _, kind, i in events if kind == "call"]
    task_rows = [{"task_id": i, "done_s": t if np.isfinite(t) else np.nan}
                 for t, _, kind, i in events if kind == "task"]  # fmt: skip
    for name in SUMMED[:3]:
        for row in call_rows:
            row[name] = int(row[name])
    return pa.Table.from_pylist(call_rows), pa.Table.from_pylist(task_rows)


@pytest.mark.parametrize("seed", range(6))
def test_streamed_sums_are_the_whole_tables_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    calls, tasks = engine_like(rng, 3000)
    whole = TaskSums(calls, tasks.column("task_id").to_numpy(), extra=EXTRA)
    streamed = StreamedTaskSums(calls.to_batches(max_chunksize=int(rng.integers(1, 500))), extra=EXTRA)
    held = 0
    for batch in tasks.to_batches(max_chunksize=int(rng.integers(1, 300))):
        ids = batch.column("task_id").to_numpy()
        done = batch.column("done_s").to_numpy(zero_copy_only=False)
        taken = streamed.take(ids, float(np.nanmax(done)) if not np.isnan(done).any() else np.inf)
        assert np.array_equal(taken.counts(ids), whole.counts(ids))
        for name in SUMMED:
            assert taken.of(name, ids).tolist() == whole.of(name, ids).tolist(), name
        held = max(held, streamed.held)
    assert streamed.held == 0
    assert held < 300 + 600  # tasks in flight and one batch of rows, not the 3,000 tasks


def test_rows_out_of_order_are_refused() -> None:
    calls, tasks = engine_like(np.random.default_rng(9), 200)
    done = calls.column("done_s").to_numpy(zero_copy_only=False)
    swapped = np.flatnonzero(~np.isnan(done))[[0, -1]]
    order = np.arange(calls.num_rows)
    order[swapped] = order[swapped[::-1]]
    streamed = StreamedTaskSums(calls.take(pa.array(order)).to_batches(max_chunksize=50), extra=EXTRA)
    with pytest.raises(RuntimeError, match="out of time order"):
        for batch in tasks.to_batches(max_chunksize=20):
            streamed.take(batch.column("task_id").to_numpy(), np.inf)


def test_a_run_with_failed_tasks_finishes_its_table_as_the_whole_call_table_would(tmp_path: Any) -> None:
    """Failed tasks have no done_s: their rows are finished by the next finished task's time. Every task row of
    a run with failures, finished tasks and tasks running at the horizon has the sums of TaskSums over the whole
    call table."""
    s = agentsim.load_scenario(agentsim.default_scenario(), [
        "horizon_s=1500", "warmup_s=0", "workload[0].overrides.on_context_limit=fail"])  # fmt: skip
    r = api.run(s)
    calls = pq.read_table(r.files()["calls"])
    tasks = pq.read_table(r.files()["tasks"])
    status = set(tasks.column("status").to_pylist())
    assert {"failed", "finished", "unfinished"} <= status
    ids = tasks.column("task_id").to_numpy()
    whole = TaskSums(calls, ids, extra=EXTRA)
    assert tasks.column("calls").to_numpy().tolist() == whole.counts(ids).tolist()
    for name in ("prompt_tokens", "cached_tokens", "output_tokens"):
        assert tasks.column(name).to_numpy().tolist() == whole.of(name, ids).astype(np.int64).tolist()
    assert tasks.column("busy_s").to_numpy().tolist() == whole.of("busy_s", ids).tolist()
