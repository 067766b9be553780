"""Trace replay through the engine: open vs closed loop, prefix sharing on block hashes, scaling knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agentsim.api import load_scenario, run

TRACES = Path(__file__).parent.parent / "traces"


def replay(path: Path, mode: str, alpha: float, horizon: float, **extra: Any) -> Any:
    return run(load_scenario({
        "seed": 1, "horizon_s": horizon, "sample_interval_s": horizon,
        "workload": [{"kind": "trace", "path": str(path), "mode": mode, **extra}],
        "cluster": {"pools": [{
            "name": "gpu", "replicas": 1,
            "deployment": {"model": "llama-3.1-8b", "hardware": "h100", "engine": {"kv_capacity_tokens": 2_000_000}},
            "perf": {"kind": "linear", "alpha_s": alpha, "beta_s_per_prefill_token": 2e-6},
        }], "router": {"kind": "least-load"}},
    }))


def durations(r: Any) -> np.ndarray:
    t = r.tasks.to_pydict()
    return np.asarray([d - s for s, d in zip(t["start_s"], t["done_s"], strict=True) if d is not None])


def test_closed_loop_stretches_tasks_on_a_slower_cluster_open_loop_keeps_the_timing() -> None:
    """Closed loop: each step waits for the previous answer, so slower steps delay later calls. Open loop: calls
    are released at their recorded times whatever the cluster does, so issue times do not move."""
    trace = TRACES / "chat-200.parquet"
    fast_c, slow_c = replay(trace, "closed", 0.005, 3000), replay(trace, "closed", 0.05, 3000)
    assert np.median(durations(slow_c)) > np.median(durations(fast_c)) * 1.2
    fast_o, slow_o = replay(trace, "open", 0.005, 3000), replay(trace, "open", 0.05, 3000)
    issue_fast = sorted(fast_o.calls.column("issue_s").to_pylist())
    issue_slow = sorted(slow_o.calls.column("issue_s").to_pylist())
    assert issue_fast == issue_slow
    assert sorted(fast_c.calls.column("issue_s").to_pylist()) != sorted(slow_c.calls.column("issue_s").to_pylist())


def test_mooncake_replay_shares_prefixes_by_block_hash() -> None:
    """The Mooncake slice names prompts by 512-token block hashes; replaying it must find cached blocks (the
    trace's unbounded-cache reuse is ~37%, a finite cache finds part of it)."""
    r = replay(TRACES / "mooncake-conversation-500.parquet", "open", 0.01, 400)
    s = r.summary
    assert s["calls_completed"] > 300
    assert 0.05 < s["cache_hit_rate"] < 0.45


def test_rate_scale_compresses_arrivals() -> None:
    trace = TRACES / "mooncake-conversation-500.parquet"
    one = replay(trace, "open", 0.01, 10_000)
    two = replay(trace, "open", 0.01, 10_000, rate_scale=2.0)
    last1 = max(one.calls.column("issue_s").to_pylist())
    last2 = max(two.calls.column("issue_s").to_pylist())
    assert abs(last2 - last1 / 2) < 1e-6 * last1


def test_a_task_starting_before_time_zero_is_refused_with_its_row(tmp_path: Path) -> None:
    """A first call whose gap_s passes its release_s would start its task before 0 (the engine cannot go back in
    time): the trace is refused naming the row and the numbers, not run into a negative delay. A first call
    released late, with nothing before it in the horizon, is a task with no call rows: it runs, unfinished."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    from agentsim.traces.schema import TraceError

    source = pq.ParquetFile(str(TRACES / "coding-agent-60.parquet"))
    t = source.read()
    release = t.column("release_s").to_numpy(zero_copy_only=False)
    first = ~np.isnan(release)
    gap = t.column("gap_s").to_numpy(zero_copy_only=False).copy()
    gap[first] += 1e6
    meta = source.schema_arrow.metadata
    late = tmp_path / "late.parquet"
    shifted = release + 1e6
    pq.write_table(t.set_column(t.schema.get_field_index("gap_s"), "gap_s", pa.array(gap))
                   .set_column(t.schema.get_field_index("release_s"), "release_s", pa.array(shifted, from_pandas=True))
                   .replace_schema_metadata(meta), str(late))  # fmt: skip
    r = replay(late, "open", 0.005, 60.0)
    assert r.summary["calls_completed"] == 0 and r.summary["tasks_unfinished"] > 0
    early = tmp_path / "early.parquet"
    pq.write_table(t.set_column(t.schema.get_field_index("gap_s"), "gap_s", pa.array(gap))
                   .replace_schema_metadata(meta), str(early))  # fmt: skip
    with pytest.raises(TraceError, match=r"row \d+: task \d+ starts at -\d.* a task cannot start before time 0"):
        replay(early, "open", 0.005, 60.0)
