"""The compiled clock loop against simpy's own ``Environment.run``, the row buffers across Arrow chunks, and the
compiled-module bookkeeping (``agentsim.build``)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simpy

import agentsim.sim as sim_module
from agentsim import build, clock
from agentsim.records import CHUNK_ROWS, Rows
from agentsim.sim import RunResult, run
from helpers_validation import const, scenario


def parquet_bytes(t: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(t, buf)
    return buf.getvalue()


def agentic_run() -> RunResult:
    """Closed-loop chat agents on two replicas with prefix caching: every kind of engine event."""
    return run(scenario(
        profile="support-agent", perf={"kind": "linear", "alpha_s": 0.004, "beta_s_per_prefill_token": 2e-6,
                                        "gamma_s_per_context_token": 1e-8},
        arrivals={"kind": "closed", "agents": 12, "think_s": const(0.5)},
        horizon_s=120.0, replicas=2, sample_interval_s=10.0,
        engine={"max_num_seqs": 8, "kv_capacity_tokens": 120_000},
    ))


def test_compiled_loop_gives_simpy_run_results_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = agentic_run()

    def simpy_run(env: Any, until: float) -> None:
        env.run(until=until)

    monkeypatch.setattr(sim_module, "run_clock", simpy_run)
    theirs = agentic_run()
    assert ours.calls.num_rows > 500
    for a, b in [(ours.calls, theirs.calls), (ours.tasks, theirs.tasks), (ours.replicas, theirs.replicas)]:
        assert parquet_bytes(a) == parquet_bytes(b)


def test_run_stops_like_simpy_before_normal_events_at_the_horizon() -> None:
    seen: list[tuple[str, float]] = []
    env = simpy.Environment()
    clock.later(env, 1.0, lambda: seen.append(("wakeup", env.now)))
    clock.later(env, 2.0, lambda: seen.append(("at horizon", env.now)))  # NORMAL at `until`: not run

    def proc() -> Any:
        yield env.timeout(0.5)
        seen.append(("process", env.now))
        yield env.timeout(0.25)
        seen.append(("process", env.now))

    env.process(proc())
    clock.run(env, 2.0)
    assert seen == [("process", 0.5), ("process", 0.75), ("wakeup", 1.0)]
    assert env.now == 2.0
    clock.run(env, 3.0)  # resumable, like env.run
    assert seen[-1] == ("at horizon", 2.0)
    with pytest.raises(ValueError, match="greater than the current"):
        clock.run(env, 3.0)


def test_run_raises_a_failed_event_like_simpy() -> None:
    env = simpy.Environment()
    ev = env.event()
    ev.fail(KeyError("boom"))
    with pytest.raises(KeyError, match="boom"):
        clock.run(env, 1.0)


def test_later_refuses_negative_delays_and_keeps_fifo_order() -> None:
    env = simpy.Environment()
    order: list[int] = []
    for i in range(5):
        clock.later(env, 0.0, order.append, i)
    clock.run(env, 1.0)
    assert order == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="negative delay"):
        clock.later(env, -1e-9, order.append, 9)


def test_discard_pending_empties_the_queue() -> None:
    env = simpy.Environment()
    clock.later(env, 1.0, lambda: None)
    env.timeout(2.0)
    clock.discard_pending(env)
    assert env.peek() == float("inf")


def test_rows_survive_chunking_with_nulls_and_order() -> None:
    schema = pa.schema([("i", pa.int64()), ("t_s", pa.float64()), ("name", pa.string())])
    rows = Rows(schema)
    n = CHUNK_ROWS * 2 + 17  # two full record batches and a partial one
    for i in range(n):
        rows.append((i, None if i % 7 == 0 else i * 0.5, "a" if i % 2 else None))
    assert len(rows) == n
    t = rows.table()
    assert t.num_rows == n and t.schema == schema
    assert t.column("i").num_chunks == 1  # combined: one contiguous chunk per column
    i = t.column("i").to_pylist()
    assert i == list(range(n))
    ts = t.column("t_s").to_pylist()
    assert ts[0] is None and ts[7] is None and ts[CHUNK_ROWS + 1] == (CHUNK_ROWS + 1) * 0.5
    assert t.column("t_s").null_count == len(range(0, n, 7))
    assert t.column("name").null_count == (n + 1) // 2
    assert Rows(schema).table().num_rows == 0


def test_manifest_says_which_modules_ran_compiled() -> None:
    r = run(scenario(profile="chat", perf={"kind": "linear", "alpha_s": 0.01},
                     arrivals={"kind": "poisson", "rate_per_s": 1.0}, horizon_s=5.0))
    assert r.manifest["compiled_modules"] == list(build.compiled_modules())
    for name in r.manifest["compiled_modules"]:
        assert name.startswith("agentsim.")


def test_stale_compiled_modules_are_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "agentsim"
    (pkg / "serving").mkdir(parents=True)
    suffix = build.importlib.machinery.EXTENSION_SUFFIXES[0]
    old = time.time() - 100
    for name in ["clock", "serving/replica"]:
        (pkg / f"{name}.py").write_text("")
        so = pkg / f"{name}{suffix}"
        so.write_bytes(b"")
        os.utime(so, (old, old))
    (pkg / "serving/replica.py").touch()  # edited after the build
    os.utime(pkg / "clock.py", (old - 10, old - 10))
    monkeypatch.setattr(build, "_ROOT", pkg)
    build.compiled_modules.cache_clear()
    try:
        assert build.compiled_modules() == ("agentsim.clock", "agentsim.serving.replica")
        assert build.stale_modules() == ["agentsim.serving.replica"]
        with pytest.warns(UserWarning, match=r"agentsim\.serving\.replica.*pip install -e"):
            build.warn_if_stale()
        # A rebuild rewrites the shared library even when it leaves the shims untouched.
        (tmp_path / "abc__mypyc.so").write_bytes(b"")
        assert build.stale_modules() == []
    finally:
        build.compiled_modules.cache_clear()
