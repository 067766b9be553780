"""Rows written by name: every column of the call, task and replica tables round-trips from the keyword it was
written with to the column of that name, with values distinct per column (a swap of two columns in the
declaration, or of two arguments inside a writer, fails here). The schemas come from ``agentsim.columns``."""

from __future__ import annotations

import inspect
from typing import Any

import pyarrow as pa
import pytest

from agentsim import columns
from agentsim.engine.records import CALLS_SCHEMA, REPLICAS_SCHEMA, TASKS_SCHEMA, Recorder


def _distinct(cols: tuple[columns.Column, ...], start: int) -> dict[str, Any]:
    """A value per column, different from every other column's (ints, floats and strings by position)."""
    out: dict[str, Any] = {}
    for i, c in enumerate(cols):
        k = start + i
        if c.name == "status":  # one of the table's words
            out[c.name] = "rejected" if "call_id" in {x.name for x in cols} else "failed"
        elif c.type == "string":
            out[c.name] = f"{c.name}-{k}"
        elif c.type == "bool":
            out[c.name] = True
        elif c.type == "float64":
            out[c.name] = k + 0.25
        else:
            out[c.name] = k
    return out


def _recorded(table: tuple[columns.Column, ...]) -> tuple[columns.Column, ...]:
    return tuple(c for c in table if c.source == "engine")


def _row(t: pa.Table, i: int = 0) -> dict[str, Any]:
    return {name: t.column(name)[i].as_py() for name in t.column_names}


def test_writers_take_exactly_the_declared_columns_by_name() -> None:
    for writer, table, extra in ((Recorder.call, columns.CALLS, []), (Recorder.task, columns.TASKS, ["recorded_s"]),
                                 (Recorder.replica_sample, columns.REPLICAS, [])):  # fmt: skip
        params = [p for p in inspect.signature(writer).parameters.values() if p.name != "self"]
        # a task's row also says when it was recorded (not an output column: TASK_RECORD_SCHEMA)
        assert [p.name for p in params] == [*columns.names(_recorded(table)), *extra]
        if hasattr(writer, "__code__"):  # interpreted: the signature is exact (mypyc's may call them positional)
            assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)


@pytest.mark.parametrize("disaggregated", [True, False])
def test_call_columns_round_trip_by_name(disaggregated: bool) -> None:
    cols = _recorded(columns.CALLS)
    values = _distinct(cols, 10)
    values["workload"] = 1  # the workload's index: its code among the labels
    values["model"] = 1  # the model's index: its code among the models
    rec = Recorder(["w0", "w1"], disaggregated=disaggregated, models=["m0", "m1"])
    rec.call(**values)
    nulls = dict(values, **{c.name: None for c in cols if c.nullable})
    rec.call(**nulls)
    t = rec.calls.table()
    assert t.schema == CALLS_SCHEMA
    expected = dict(values, workload="w1", model="m1")
    if not disaggregated:  # the hand-off columns are the run's constants
        expected.update(prefill_pool=None, prefill_replica=None, decode_replica=None, kv_transfer_s=None,
                        prefill_busy_s=0.0, prefill_busy_prompt_steps_s=0.0)
    assert _row(t, 0) == expected
    second = _row(t, 1)
    for c in cols:
        if c.nullable:
            assert second[c.name] is None, c.name
        else:
            assert second[c.name] == expected[c.name], c.name


def test_task_columns_round_trip_by_name() -> None:
    cols = _recorded(columns.TASKS)
    values = _distinct(cols, 100)
    values["workload"] = 0
    values["recorded_s"] = 123.25  # when the row was recorded: not an output column
    rec = Recorder(["w0"])
    rec.task(**values)
    rec.task(**dict(values, task_id=values["task_id"] + 1, agent=None, done_s=None))
    t = rec.tasks.table()
    assert _row(t, 0) == dict(values, workload="w0")
    assert _row(t, 1)["agent"] is None and _row(t, 1)["done_s"] is None
    # The sums over calls are added by name too: one call of the first task, none of the second.
    rec.call(**dict(_distinct(_recorded(columns.CALLS), 10), task_id=values["task_id"], workload=0, model=0))
    tasks = rec.tasks_table(rec.calls.table())
    assert tasks.schema == TASKS_SCHEMA
    first = _row(tasks, 0)
    call = _distinct(_recorded(columns.CALLS), 10)
    assert first["calls"] == 1
    for name in ("prompt_tokens", "cached_tokens", "output_tokens"):
        assert first[name] == call[name]
    assert first["busy_s"] == call["busy_s"] + call["prefill_busy_s"]
    assert _row(tasks, 1)["calls"] == 0


def test_replica_columns_round_trip_by_name() -> None:
    values = _distinct(columns.REPLICAS, 1000)
    rec = Recorder(["w"])
    rec.replica_sample(**values)
    t = rec.replicas.table()
    assert t.schema == REPLICAS_SCHEMA
    assert _row(t) == values


def test_declared_tables_match_the_outputs_of_a_run() -> None:
    """The declaration is what a run writes: every table's columns, types and order, costs included."""
    import agentsim

    s = agentsim.load_scenario(agentsim.default_scenario(), ["horizon_s=60", "warmup_s=10",
                                                             "workload[0].arrivals.agents=4"])
    r = agentsim.simulate(s)
    for name, cols in columns.TABLES.items():
        table: pa.Table = getattr(r, name)
        assert table.schema == columns.schema(cols), name
