"""The canonical trace schema: lossless round trips, the file-level rules, atomic writes, generation.

Generate -> write -> read must give back exactly the tasks (every column: ids, deps, gaps, tool flags,
releases, tokens, prefix links and lengths, hash ids); a file that breaks a rule of ``traces/SCHEMA.md`` must
be refused with the file and row in the message.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentsim.rng import Streams
from agentsim.spec import FixedProfile, GammaArrivals, Lognormal, Poisson
from agentsim.traces.generate import generate_tasks, generate_trace
from agentsim.traces.io import TraceWriter, read_trace, read_trace_meta, write_trace
from agentsim.traces.schema import (
    COLUMN_NAMES,
    COLUMNS,
    OutputExistsError,
    TraceError,
    TraceTask,
    trace_schema,
    trace_task,
)
from agentsim.traces.tables import table_to_tasks, tasks_to_table
from agentsim.workload.arrivals import arrival_array
from agentsim.workload.profiles import TaskFactory, builtin_profiles
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate

REPO = Path(__file__).resolve().parents[1]


def _hashed_task(task_id: int, start: float, first_call: int) -> TraceTask:
    """A two-call task with hash ids, a release on both calls and a tool gap."""
    calls = (
        CallTemplate(1000, 10, hash_ids=(1, 2)),
        CallTemplate(1600, 20, (0,), 1.5, 0, (1, 2, 3, 4), True),
    )
    template = TaskTemplate("mixed", calls, 0, 512)
    return TraceTask(
        task_id, start, template, (first_call, first_call + 1), (start, start + 2.0), ((1, 2), (1, 2, 3, 4))
    )


# The canonical trace format has no reasoning split (a call's output tokens include its reasoning): profiles
# with reasoning tokens are left out of the lossless round trip.
@pytest.mark.parametrize("name", sorted(n for n, p in builtin_profiles().items() if p.reasoning_tokens is None))
def test_generate_write_read_is_lossless(name: str, tmp_path: Path) -> None:
    p = builtin_profiles()[name]
    tasks = list(generate_tasks(p, 40, arrivals=Poisson(rate_per_s=0.5), seed=3, workload=name))
    path = tmp_path / "t.parquet"
    write_trace(path, tasks, source="test")
    back = list(read_trace(path, batch_rows=97))  # tasks straddle batch boundaries
    assert back == tasks
    # The fast path (TraceWriter.add_template) writes the same rows as the object path.
    fast = tmp_path / "fast.parquet"
    generate_trace(fast, p, 40, arrivals=Poisson(rate_per_s=0.5), seed=3, workload=name)
    assert pq.read_table(fast).equals(pq.read_table(path))
    # And the table conversion is the same again.
    assert list(table_to_tasks(tasks_to_table(tasks))) == tasks


def test_round_trip_every_column_with_hashes_and_releases(tmp_path: Path) -> None:
    tasks = [_hashed_task(0, 0.0, 0), _hashed_task(5, 1.0, 10)]
    path = tmp_path / "h.parquet"
    write_trace(path, tasks, block_size_tokens=512)
    t = pq.read_table(path)
    assert t.column_names == list(COLUMN_NAMES)
    assert t.column("deps").to_pylist() == [[], [0], [], [10]]
    assert t.column("prefix_call_id").to_pylist() == [None, 0, None, 10]
    assert t.column("prefix_tokens").to_pylist() == [0, 1000, 0, 1000]
    assert t.column("gap_is_tool").to_pylist() == [False, True, False, True]
    assert t.column("release_s").to_pylist() == [0.0, 2.0, 1.0, 3.0]
    assert t.column("hash_ids").to_pylist() == [[1, 2], [1, 2, 3, 4]] * 2
    assert list(read_trace(path)) == tasks
    meta = read_trace_meta(path)
    assert (meta.version, meta.block_size_tokens, meta.rows) == ("1", 512, 4)


def test_schema_types_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "g.parquet"
    generate_trace(path, builtin_profiles()["chat"], 5, arrivals=Poisson(rate_per_s=1.0), seed=0, workload="chat")
    schema = pq.read_schema(path)
    for name, typ, nullable in COLUMNS:
        f = schema.field(name)
        assert f.type == typ and f.nullable == nullable, name
    meta = schema.metadata
    assert meta[b"agentsim_trace_version"] == b"1"
    assert meta[b"block_size_tokens"] == b"512"
    assert meta[b"source"] == b"generated:chat:seed=0"


def test_generated_tasks_are_the_simulators_tasks() -> None:
    """Streams `tasks/<w>` and `arrivals/<w>`: the same tasks and start times a simulation would use."""
    p = builtin_profiles()["support-agent"]
    arrivals = GammaArrivals(rate_per_s=2.0, cv=1.5)
    got = list(generate_tasks(p, 50, arrivals=arrivals, seed=7, workload="w"))
    s = Streams(7)
    factory = TaskFactory(p, "w", s.get("tasks/w"))
    times = arrival_array(arrivals, s.get("arrivals/w"), got[-1].start_s + 1e-9)
    assert [t.template for t in got] == [factory.next() for _ in range(50)]
    assert np.allclose([t.start_s for t in got], times[:50], rtol=0, atol=0)
    # Synthetic tasks: released at the start (first call) and null afterwards.
    assert all(t.release_s[0] == t.start_s and all(r is None for r in t.release_s[1:]) for t in got)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    p = builtin_profiles()["coding-agent"]
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path in (a, b):
        generate_trace(path, p, 20, arrivals=Poisson(rate_per_s=0.1), seed=11, workload="c")
    assert a.read_bytes() == b.read_bytes()


def test_fixed_profile_tasks(tmp_path: Path) -> None:
    p = FixedProfile(prompt_tokens=Lognormal(median=500, sigma=1), output_tokens=Lognormal(median=50, sigma=1))
    path = tmp_path / "f.parquet"
    n = generate_trace(path, p, 100, arrivals=Poisson(rate_per_s=3), seed=1, workload="f")
    assert n == 100
    tasks = list(read_trace(path))
    assert all(len(t.call_ids) == 1 and t.template.calls[0].deps == () for t in tasks)
    starts = [t.start_s for t in tasks]
    assert starts == sorted(starts)
    # The column-wise fast path draws exactly what the task factory draws (across a block boundary too).
    big = tmp_path / "big.parquet"
    generate_trace(big, p, 5000, arrivals=Poisson(rate_per_s=3), seed=1, workload="f")
    assert list(read_trace(big)) == list(
        generate_tasks(p, 5000, arrivals=Poisson(rate_per_s=3), seed=1, workload="f")
    )


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_trace(path, [_hashed_task(0, 0.0, 0)])
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        write_trace(path, [_hashed_task(0, 5.0, 0)])
    assert path.read_bytes() == before
    # A failure inside the writer leaves neither the target nor a temporary file behind.
    target = tmp_path / "broken.parquet"
    with pytest.raises(RuntimeError), TraceWriter(target) as w:
        w.write_task(_hashed_task(0, 0.0, 0))
        raise RuntimeError("boom")
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
    write_trace(path, [_hashed_task(0, 5.0, 0)], overwrite=True)
    assert next(read_trace(path)).start_s == 5.0


def _bad_table(**changes: list[object]) -> pa.Table:
    t = tasks_to_table([_hashed_task(0, 0.0, 0), _hashed_task(1, 1.0, 2)])
    for name, values in changes.items():
        i = t.column_names.index(name)
        t = t.set_column(i, name, pa.array(values, t.schema.field(name).type))
    return t


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task_id": [0, 0, 1, 0]}, "task ids must increase"),
        ({"call_id": [0, 1, 1, 3]}, "call ids must increase"),
        ({"call_index": [0, 2, 0, 1]}, "call_index 2"),
        ({"deps": [[], [7], [], [2]]}, "dependency 7"),
        ({"prefix_call_id": [None, 5, None, 2]}, "prefix_call_id 5"),
        ({"prefix_tokens": [0, 999, 0, 1000]}, "prefix_tokens 999"),
        ({"release_s": [None, 2.0, 1.0, 3.0]}, "finite release_s"),
        ({"release_s": [5.0, 6.0, 1.0, 3.0]}, "sorted by start time"),
        ({"hash_ids": [[1], [1, 2, 3, 4], [1, 2], [1, 2, 3, 4]]}, "hash ids for 1000 prompt tokens"),
        ({"output_tokens": [10, 0, 10, 20]}, "tokens must be >= 1"),
        ({"workload": ["mixed", "other", "mixed", "mixed"]}, "differs from the task's"),
    ],
)
def test_reader_rejects_rule_violations(changes: dict[str, list[object]], message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(_bad_table(**changes).replace_schema_metadata(trace_schema().metadata), path)
    with pytest.raises(TraceError, match=message) as e:
        list(read_trace(path))
    assert str(path) in str(e.value) and "row" in str(e.value)


def test_reader_rejects_non_traces(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(TraceError, match="not a Parquet file"):
        list(read_trace(junk))
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), other)
    with pytest.raises(TraceError, match="missing column"):
        list(read_trace(other))
    with pytest.raises(TraceError, match="no such file"):
        list(read_trace(tmp_path / "missing.parquet"))


def test_optional_tool_column_defaults_to_false(tmp_path: Path) -> None:
    t = tasks_to_table([_hashed_task(0, 0.0, 0)]).drop_columns(["gap_is_tool"])
    path = tmp_path / "old.parquet"
    pq.write_table(t, path)
    task = next(read_trace(path))
    assert [c.gap_is_tool for c in task.template.calls] == [False, False]
    # The writer fills it in too.
    out = tmp_path / "new.parquet"
    write_trace(out, t)
    assert pq.read_table(out).column("gap_is_tool").to_pylist() == [False, False]


def test_shared_prefix_and_compaction_links(tmp_path: Path) -> None:
    calls = (
        CallTemplate(3000, 10),
        CallTemplate(3500, 10, (0,), 1.0, 0),
        CallTemplate(2500, 10, (1,), 1.0, ROOT),  # compaction: only the shared prefix remains
    )
    task = trace_task(TaskTemplate("w", calls, 2000), 0, 0.0, 0)
    path = tmp_path / "s.parquet"
    write_trace(path, [task])
    t = pq.read_table(path)
    assert t.column("prefix_tokens").to_pylist() == [2000, 3000, 2000]
    assert t.column("prefix_call_id").to_pylist() == [None, 0, None]
    assert next(read_trace(path)) == task


def test_sample_traces_are_valid_and_small() -> None:
    files = sorted((REPO / "traces").glob("*.parquet"))
    assert len(files) >= 6
    for f in files:
        assert f.stat().st_size < 300_000, f
        tasks = list(read_trace(f))
        assert tasks and math.isfinite(tasks[-1].start_s)
