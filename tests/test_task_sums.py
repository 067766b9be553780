"""The tasks table finished from the call file read alongside it (agentsim.analysis.task_sums): the same sums as
over the whole call table, bit for bit, holding only the tasks in flight, and refusing rows out of order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest

import agentsim
from agentsim import api
from agentsim.analysis import tables
from agentsim.analysis.task_sums import StreamedTaskSums
from agentsim.api import _ended_by
from agentsim.engine.records import TaskSums

EXTRA = ("usd", "energy_j")
SUMMED = ("prompt_tokens", "cached_tokens", "output_tokens", *EXTRA, "busy_s")


def engine_like(rng: np.random.Generator, tasks: int) -> tuple[pa.Table, pa.Table]:
    """Call and task rows as the engine writes them: tasks start over time with a few calls each; a call's row
    when it ends (a rejected one when it is sent: its task fails there, with no done_s), a task's row when its
    last call has ended, each with the time it was recorded; what is still running at the horizon comes last."""
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, task)
    failed: set[int] = set()
    calls: list[dict[str, Any]] = []
    horizon = 0.6 * tasks
    for task in range(tasks):
        t = task * 0.5 + rng.uniform(0, 0.5)
        n = int(rng.integers(0, 6))
        fails = n > 0 and rng.random() < 0.15
        for k in range(n):
            sent = t + rng.exponential(0.2)
            t = sent + rng.exponential(1.0)
            rejected = fails and k == n - 1
            if rejected:
                t = sent  # rejected when sent
            row = {"task_id": task, "issue_s": sent, "done_s": t if t <= horizon and not rejected else np.nan,
                   "status": "rejected" if rejected else "finished" if t <= horizon else "unfinished"}  # fmt: skip
            row |= {name: float(rng.integers(0, 1000)) for name in SUMMED[:3]}
            row |= {name: float(rng.uniform(0, 2)) for name in (*EXTRA, "busy_s", "prefill_busy_s")}
            calls.append(row)
            events.append((t if t <= horizon else np.inf, len(events), "call", len(calls) - 1))
        events.append((t if t <= horizon else np.inf, len(events), "task", task))
        if fails and t <= horizon:
            failed.add(task)
    events.sort(key=lambda e: (e[0], e[1]))
    call_rows = [calls[i] for _, _, kind, i in events if kind == "call"]
    task_rows = [{"task_id": i, "done_s": t if np.isfinite(t) and i not in failed else np.nan,
                  "recorded_s": t if np.isfinite(t) else horizon}
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
        taken = streamed.take(ids, _ended_by(batch))
        assert np.array_equal(taken.counts(ids), whole.counts(ids))
        for name in SUMMED:
            assert taken.of(name, ids).tolist() == whole.of(name, ids).tolist(), name
        held = max(held, streamed.held)
    streamed.finish()
    assert streamed.held == 0
    assert held < 300 + 600  # tasks in flight and one batch of rows, not the 3,000 tasks


def test_a_task_without_calls_sums_to_zero() -> None:
    streamed = StreamedTaskSums([], extra=EXTRA)
    taken = streamed.take(np.array([3, 7]), np.inf)
    assert taken.counts(np.array([3, 7])).tolist() == [0, 0] and taken.of("usd", np.array([3, 7])).tolist() == [0, 0]
    streamed.finish()


def test_a_call_row_after_its_tasks_row_is_refused_not_dropped() -> None:
    """One more call row of task 0 at the end of the call file, long after task 0's row was finished: its sums
    would miss it, and finish() says so rather than drop it."""
    calls, tasks = engine_like(np.random.default_rng(4), 50)
    late = calls.filter(pa.compute.equal(calls.column("task_id"), 0)).slice(0, 1)
    late = late.set_column(late.schema.get_field_index("done_s"), "done_s", pa.array([np.nan]))  # as at the horizon
    streamed = StreamedTaskSums([*calls.to_batches(max_chunksize=10), *late.to_batches()], extra=EXTRA)
    for batch in tasks.to_batches(max_chunksize=5):
        streamed.take(batch.column("task_id").to_numpy(), _ended_by(batch))
    with pytest.raises(RuntimeError, match="no task row after them"):
        streamed.finish()


def test_a_run_with_failed_tasks_finishes_its_table_as_the_whole_call_table_would(monkeypatch: Any) -> None:
    """Failed tasks have no done_s; each row carries when it was recorded. Every task row of a run with failures,
    finished tasks and tasks running at the horizon, read 97 rows at a time, has the sums of TaskSums over the
    whole call table."""
    monkeypatch.setattr(tables, "ROWS", 97)  # many batches of each file
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
