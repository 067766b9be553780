"""Context windows: no call past its model's window is ever simulated.

A call needs ``prompt + output <= W`` tokens of the serving model's window ``W`` (the catalog's
``max_context_tokens``). Agent profiles compact before a call that would pass it (``on_context_limit:
compact``): the effective limit of call ``k`` is ``min(context_limit, W - output(k))`` and the compacted context
``compact_to * W // context_limit`` when ``W < context_limit``. Otherwise (``fail``) the server rejects the call
and its task fails there. Checked here against that arithmetic, on hand-built profiles and on random scenarios.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

import agentsim
from agentsim import api, spec
from agentsim.catalog import load_catalog
from agentsim.engine.sim import simulate_resolved
from agentsim.resolve import resolve
from agentsim.serving.cluster import ContextWindowExceeded
from agentsim.traces.io import write_trace
from agentsim.traces.schema import TraceTask
from agentsim.workload.profiles import TaskFactory, builtin_profiles
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate

W_8B = 131072  # Llama-3.1-8B's max_position_embeddings


def _chain_profile(**over: Any) -> spec.AgentProfile:
    fields: dict[str, Any] = dict(
        system_prompt_tokens=spec.Constant(value=1000),
        task_prompt_tokens=spec.Constant(value=1000),
        steps=spec.Constant(value=20),
        output_tokens=spec.Constant(value=500),
        tool_result_tokens=spec.Constant(value=4000),
        tool_s=spec.Constant(value=1.0),
        context_limit_tokens=200_000,
        compact_to_tokens=20_000,
    )
    return spec.AgentProfile(**(fields | over))


def test_compaction_below_the_window_follows_the_rule() -> None:
    """Constant sizes: the prompts are those of the rule, computed here step by step."""
    window = 30_000
    t = TaskFactory(_chain_profile(), "w", np.random.default_rng(0), max_context_tokens=window).next()
    compacted_context = 1000 + 20_000 * window // 200_000  # system + the profile's ratio on the window
    expected: list[tuple[int, bool]] = [(2000, False)]
    p = 2000
    for _ in range(19):
        p += 500 + 4000
        if p > min(200_000, window - 500):
            p = compacted_context
            expected.append((p, True))
        else:
            expected.append((p, False))
    assert [(c.prompt_tokens, c.compacted) for c in t.calls] == expected
    assert any(compacted for _, compacted in expected)
    for i, c in enumerate(t.calls):
        assert c.prompt_tokens + c.output_tokens <= window
        assert c.prefix_parent == (ROOT if c.compacted or i == 0 else i - 1)


def test_fail_draws_the_tasks_as_without_a_window() -> None:
    prof = _chain_profile(on_context_limit="fail")
    a = TaskFactory(prof, "w", np.random.default_rng(3), max_context_tokens=30_000)
    b = TaskFactory(prof, "w", np.random.default_rng(3))
    assert [a.next() for _ in range(5)] == [b.next() for _ in range(5)]


def test_a_window_above_the_limit_changes_no_task() -> None:
    prof = builtin_profiles()["coding-agent"]
    out_max = 32_000  # the profile's output clip
    a = TaskFactory(prof, "w", np.random.default_rng(5), max_context_tokens=prof.context_limit_tokens + out_max)
    b = TaskFactory(prof, "w", np.random.default_rng(5))
    ta, tb = [a.next() for _ in range(50)], [b.next() for _ in range(50)]
    assert ta == tb
    assert [c.compacted for t in ta for c in t.calls] == [c.compacted for t in tb for c in t.calls]
    assert any(c.compacted for t in ta for c in t.calls)  # compactions at the profile's own limit are marked


def test_fan_out_calls_compact_below_the_window() -> None:
    prof = builtin_profiles()["deep-research"].model_copy(
        update={"tool_result_tokens": spec.Constant(value=3000), "output_tokens": spec.Constant(value=1000)}
    )
    f = TaskFactory(prof, "w", np.random.default_rng(1), max_context_tokens=8000)
    tasks = [f.next() for _ in range(30)]
    for t in tasks:
        t.validate()
        for c in t.calls:
            assert c.prompt_tokens + c.output_tokens <= 8000
    assert any(c.compacted for t in tasks for c in t.calls)


def test_fixed_truncate_cuts_the_prompt_to_the_window() -> None:
    prof = spec.FixedProfile(
        prompt_tokens=spec.Constant(value=150_000), output_tokens=spec.Constant(value=100), on_context_limit="truncate"
    )
    (c,) = TaskFactory(prof, "w", np.random.default_rng(0), max_context_tokens=W_8B).next().calls
    assert (c.prompt_tokens, c.output_tokens) == (W_8B - 100, 100)


# --------------------------------------------------------------------------- runs


def _scenario(workload: dict[str, Any], horizon_s: float = 60.0, model: str = "llama-3.1-8b") -> spec.Scenario:
    return agentsim.load_scenario(
        {
            "name": "ctx",
            "seed": 1,
            "horizon_s": horizon_s,
            "warmup_s": 0,
            "workload": [workload],
            "cluster": {
                "pools": [
                    {
                        "name": "p",
                        "replicas": 2,
                        "deployment": {"model": model, "hardware": "h100", "engine": {"kv_capacity_tokens": 10**7}}
                        | ({"hardware": "h200", "tp": 8, "precision": "fp8"} if model.startswith("qwen3") else {}),
                        "perf": {"kind": "linear", "alpha_s": 0.005, "beta_s_per_prefill_token": 2e-7,
                                 "gamma_s_per_context_token": 1e-9},
                    }
                ]
            },
        }
    )


def _column(t: pa.Table, name: str) -> np.ndarray:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False))


def test_a_fixed_profile_over_the_window_under_fail_rejects_every_call() -> None:
    fixed = {"kind": "fixed", "prompt_tokens": {"kind": "constant", "value": W_8B - 99},
             "output_tokens": {"kind": "constant", "value": 100}}
    r = api.run(_scenario({"profile": fixed, "arrivals": {"kind": "poisson", "rate_per_s": 2.0}}))
    calls, tasks = r.calls, r.tasks
    assert calls.num_rows > 50
    assert set(_column(calls, "status")) == {"rejected"}
    assert calls.column("pool").null_count == calls.num_rows and calls.column("done_s").null_count == calls.num_rows
    assert float(pc.sum(calls.column("usd")).as_py()) == 0.0 and float(pc.sum(calls.column("busy_s")).as_py()) == 0
    assert set(_column(tasks, "status")) == {"failed"} and set(_column(tasks, "failure")) == {"context_window"}
    assert tasks.column("done_s").null_count == tasks.num_rows
    s = r.summary
    assert (s["calls_rejected"], s["tasks_failed"]) == (calls.num_rows, tasks.num_rows)
    assert (s["calls_completed"], s["calls_unfinished"], s["tasks_completed"], s["tasks_unfinished"]) == (0, 0, 0, 0)
    assert s["by_workload"]["fixed"] == {"calls_rejected": calls.num_rows, "calls_compacted": 0,
                                         "tasks_failed": tasks.num_rows}
    assert s["output_tokens_per_s"] == 0.0
    # One token less fits: nothing is rejected.
    fits = dict(fixed, prompt_tokens={"kind": "constant", "value": W_8B - 100})
    r2 = api.run(_scenario({"profile": fits, "arrivals": {"kind": "poisson", "rate_per_s": 2.0}}))
    assert r2.summary["calls_rejected"] == 0 and "rejected" not in set(_column(r2.calls, "status"))


def test_a_closed_loop_agent_moves_on_after_its_think_time() -> None:
    """Two agents whose every task fails at once, thinking 1 s: each starts a task at t = 0, 1, ..., 9."""
    fixed = {"kind": "fixed", "prompt_tokens": {"kind": "constant", "value": 200_000},
             "output_tokens": {"kind": "constant", "value": 10}}
    closed = {"kind": "closed", "agents": 2, "think_s": {"kind": "constant", "value": 1.0}}
    r = api.run(_scenario({"profile": fixed, "arrivals": closed}, horizon_s=9.5))
    starts = sorted(_column(r.tasks, "start_s").tolist())
    assert starts == pytest.approx(sorted([float(t) for t in range(10)] * 2))
    assert r.summary["tasks_failed"] == 20 and r.summary["calls_rejected"] == 20


def test_a_failed_task_sends_nothing_after_its_rejected_call() -> None:
    """A chain whose context passes the window at a known step under `fail`: calls 0..k-1 run, call k is
    rejected, calls after it are never sent."""
    prof = _chain_profile(on_context_limit="fail").model_dump()
    r = api.run(_scenario({"profile": prof, "arrivals": {"kind": "poisson", "rate_per_s": 0.2}, "max_tasks": 3},
                          horizon_s=400, model="qwen3-235b-a22b"))
    window = 40960
    k = next(i for i in range(20) if 2000 + 4500 * i + 500 > window)  # the first call past the window
    calls, tasks = r.calls, r.tasks
    assert set(_column(tasks, "status")) == {"failed"} and tasks.num_rows == 3
    for tid in _column(tasks, "task_id"):
        mine = calls.filter(pc.equal(calls.column("task_id"), tid))
        status = _column(mine, "status").tolist()
        assert status == ["finished"] * k + ["rejected"]
        assert _column(mine, "call_index").tolist() == list(range(k + 1))
    assert _column(tasks, "calls").tolist() == [k + 1] * 3
    assert _column(tasks, "calls_planned").tolist() == [20] * 3


@pytest.mark.parametrize("policy", ["compact", "fail"])
@pytest.mark.parametrize(("profile", "model", "seed"), [
    ("coding-agent", "llama-3.1-8b", 2),
    ("coding-agent", "qwen3-235b-a22b", 3),
    ("deep-research", "qwen3-235b-a22b", 4),
    ("support-agent", "qwen3-235b-a22b", 5),
])
def test_no_call_that_reaches_a_replica_passes_the_window(policy: str, profile: str, model: str, seed: int) -> None:
    window = load_catalog().get_model(model).max_context_tokens
    over = {"on_context_limit": policy}
    if profile == "deep-research":  # contexts big enough to pass Qwen3's window
        over |= {"tool_result_tokens": {"kind": "lognormal", "median": 8000, "sigma": 1.0, "max": 30000}}
    s = _scenario({"profile": profile, "overrides": over, "arrivals": {"kind": "closed", "agents": 12}}, 900, model)
    r = api.run(s.model_copy(update={"seed": seed}))
    calls, tasks = r.calls, r.tasks
    status = _column(calls, "status")
    total = _column(calls, "prompt_tokens") + _column(calls, "output_tokens")
    sent = status != "rejected"
    assert (total[sent] <= window).all()
    assert (total[~sent] > window).all()
    # Every rejected call fails its task, and every failed task has exactly one rejected call.
    rejected_tasks = _column(calls, "task_id")[~sent]
    failed = _column(tasks, "task_id")[_column(tasks, "status") == "failed"]
    assert sorted(rejected_tasks.tolist()) == sorted(failed.tolist())
    assert r.summary["calls_rejected"] == int((~sent).sum()) and r.summary["tasks_failed"] == failed.size
    assert r.summary["calls_compacted"] == int(_column(calls, "compacted").sum())
    if profile != "support-agent":  # contexts that pass the window (support agents' stay near 10k)
        if policy == "fail":
            assert (~sent).any()
        else:
            assert r.summary["calls_compacted"] > 0


def _catalog_with_window(tmp_path: Path, model: str, window: int) -> str:
    m = load_catalog().get_model(model).model_dump() | {"max_context_tokens": window}
    path = tmp_path / f"{model}-{window}.yaml"
    path.write_text(yaml.safe_dump({"models": {model: m}}), encoding="utf-8")
    return str(path)


def _tables(r: api.RunResult) -> list[pa.Table]:
    return [r.calls, r.tasks, r.replicas, r.pools]


def test_a_window_larger_than_every_context_changes_nothing(tmp_path: Path) -> None:
    """Support agents (limit 128k, contexts ~10k): a window just large enough for the largest call gives the
    same tables, byte for byte, as an unbounded one; one token less compacts that call."""
    s = _scenario({"profile": "support-agent", "arrivals": {"kind": "closed", "agents": 8}}, 300)
    huge = api.run(s.model_copy(update={"catalog": [_catalog_with_window(tmp_path, "llama-3.1-8b", 10**9)]}))
    largest = int(pc.max(pc.add(huge.calls.column("prompt_tokens"), huge.calls.column("output_tokens"))).as_py())
    tight = api.run(s.model_copy(update={"catalog": [_catalog_with_window(tmp_path, "llama-3.1-8b", largest)]}))
    assert all(a.equals(b) for a, b in zip(_tables(huge), _tables(tight), strict=True))
    # the same summary, but a billion-token window is more than the pool's 10M-token cache holds: flagged
    assert {k: v for k, v in huge.summary.items() if k != "warnings"} == {
        k: v for k, v in tight.summary.items() if k != "warnings"
    }
    assert [w["code"] for w in huge.summary["warnings"]] == ["kv_capacity"] and tight.summary["warnings"] == []
    below = api.run(s.model_copy(update={"catalog": [_catalog_with_window(tmp_path, "llama-3.1-8b", largest - 1)]}))
    assert below.summary["calls_compacted"] > huge.summary["calls_compacted"]
    assert not below.calls.equals(huge.calls)


def test_the_default_scenario_no_longer_simulates_impossible_requests(tmp_path: Path) -> None:
    """Unbounded, the default scenario's coding agents send calls past Llama-3.3-70B's 131,072 tokens; with the
    catalog's window they compact below it and none is rejected or simulated past it."""
    base = agentsim.load_scenario(agentsim.default_scenario(), ["horizon_s=1500", "warmup_s=0"])
    unbounded = api.run(base.model_copy(update={"catalog": [_catalog_with_window(tmp_path, "llama-3.3-70b", 10**9)]}))
    real = api.run(base)
    window = load_catalog().get_model("llama-3.3-70b").max_context_tokens
    assert window == 131072

    def largest(r: api.RunResult) -> int:
        return int(pc.max(pc.add(r.calls.column("prompt_tokens"), r.calls.column("output_tokens"))).as_py())

    assert largest(unbounded) > window
    assert largest(real) <= window
    assert real.summary["calls_rejected"] == 0
    assert real.summary["calls_compacted"] > unbounded.summary["calls_compacted"]


def test_the_window_is_that_of_the_model_the_workload_calls() -> None:
    s = _scenario({"profile": "chat"})
    pools = s.cluster.model_dump()["pools"]
    second = dict(pools[0], name="q", deployment=dict(pools[0]["deployment"], model="qwen3-235b-a22b", tp=8,
                                                      hardware="h200"))
    data = s.model_dump() | {"cluster": s.cluster.model_dump() | {"pools": [pools[0], second]}}
    assert resolve(s).workloads[0].max_context_tokens == W_8B
    for model, window in ((pools[0]["deployment"]["model"], W_8B), ("qwen3-235b-a22b", 40960)):
        data["workload"][0]["model"] = model
        assert resolve(agentsim.load_scenario(data)).workloads[0].max_context_tokens == window


def test_the_cluster_refuses_a_call_past_the_window() -> None:
    """Were the agents not to reject a call past the window, the cluster would raise rather than simulate it."""
    fixed = {"kind": "fixed", "prompt_tokens": {"kind": "constant", "value": 200_000},
             "output_tokens": {"kind": "constant", "value": 10}}
    resolved = resolve(_scenario({"profile": fixed, "arrivals": {"kind": "poisson", "rate_per_s": 1.0}}))
    unchecked = dataclasses.replace(resolved, workloads=tuple(
        dataclasses.replace(w, max_context_tokens=None) for w in resolved.workloads))
    with pytest.raises(ContextWindowExceeded, match="context window"):
        simulate_resolved(unchecked, {})


# --------------------------------------------------------------------------- traces


def _trace(tmp_path: Path) -> str:
    """One task: a short call, then one of 140,000 prompt tokens extending it (hash ids of 512-token blocks)."""
    ids0 = (1, 2)
    ids1 = tuple(range(1, 1 + -(-140_000 // 512)))
    calls = (CallTemplate(1000, 10, hash_ids=ids0), CallTemplate(140_000, 100, (0,), 1.0, 0, ids1, True))
    task = TraceTask(0, 0.0, TaskTemplate("t", calls, 0, 512), (0, 1), (0.0, None), (ids0, ids1))
    path = tmp_path / "t.parquet"
    write_trace(path, [task], block_size_tokens=512)
    return str(path)


@pytest.mark.parametrize("policy", ["fail", "truncate"])
def test_a_trace_call_past_the_window_is_rejected_or_truncated(tmp_path: Path, policy: str) -> None:
    trace = {"kind": "trace", "path": _trace(tmp_path), "on_context_limit": policy}
    r = api.run(_scenario(trace, 30))
    second = r.calls.filter(pc.equal(r.calls.column("call_index"), 1))
    (row,) = second.to_pylist()
    (task,) = r.tasks.to_pylist()
    if policy == "fail":
        assert row["status"] == "rejected" and row["prompt_tokens"] == 140_000
        assert (task["status"], task["failure"]) == ("failed", "context_window")
    else:
        assert row["status"] == "finished" and row["prompt_tokens"] == W_8B - 100
        assert row["cached_tokens"] == 1000 // 512 * 512  # the first call's full blocks are still its prefix
        assert (task["status"], task["failure"]) == ("finished", None)


def test_a_cache_smaller_than_one_context_is_flagged() -> None:
    """A replica whose KV cache cannot hold one context of its model is what vLLM refuses to start at that
    max_model_len (V1 ``check_enough_kv_cache_memory``): the run still serves the short calls it is given, and says
    so (``kv_capacity``); a cache holding the whole window does not warn."""
    short = {"kind": "fixed", "prompt_tokens": {"kind": "constant", "value": 500},
             "output_tokens": {"kind": "constant", "value": 50}}  # fmt: skip
    base = _scenario({"profile": short, "arrivals": {"kind": "poisson", "rate_per_s": 2.0}})
    pool = base.cluster.pools[0]
    small = pool.deployment.engine.model_copy(update={"kv_capacity_tokens": W_8B - 1})
    tight = base.model_copy(
        update={"cluster": base.cluster.model_copy(update={"pools": [
            pool.model_copy(update={"deployment": pool.deployment.model_copy(update={"engine": small})})
        ]})}
    )  # fmt: skip
    warnings = api.run(tight).summary["warnings"]
    assert [w["code"] for w in warnings].count("kv_capacity") == 1
    message = next(w["message"] for w in warnings if w["code"] == "kv_capacity")
    assert f"a KV cache of {W_8B - 1:,} tokens" in message and f"({W_8B:,} tokens)" in message
    assert "vLLM would not start" in message and "raise its kv_capacity_tokens" in message  # the capacity was given
    assert "kv_capacity" not in [w["code"] for w in api.run(base).summary["warnings"]]


def test_the_kv_capacity_warning_says_what_each_engine_does() -> None:
    """vLLM refuses to start, SGLang caps requests, TensorRT-LLM cuts max_seq_len; a cache that holds the window
    is not flagged; under data-parallel attention one rank's share of the cache is what must hold a context."""
    from agentsim.analysis.warnings import PoolMemory, kv_short_of_window

    said = {
        preset: kv_short_of_window([PoolMemory("p", "m", preset, 1000, 4096, False)])[0]["message"]
        for preset in ("vllm", "sglang", "trtllm")
    }
    assert "vLLM would not start" in said["vllm"] and "at most 1,000" in said["vllm"]
    assert "SGLang starts but caps every request at 1,000" in said["sglang"]
    assert "TensorRT-LLM starts with max_seq_len cut to 1,000" in said["trtllm"]
    assert all("more GPUs" in m for m in said.values())
    assert kv_short_of_window([PoolMemory("p", "m", "vllm", 4096, 4096, False)]) == []
    # a deployment with data-parallel attention: 4 ranks of a 100,000-token cache hold 25,000 each
    s = _scenario({"profile": {"kind": "fixed", "prompt_tokens": {"kind": "constant", "value": 100},
                               "output_tokens": {"kind": "constant", "value": 10}},
                   "arrivals": {"kind": "poisson", "rate_per_s": 1.0}}, model="qwen3-235b-a22b")  # fmt: skip
    pool = s.cluster.pools[0]
    dpa = pool.deployment.model_copy(update={"tp": 4, "ep": 4, "data_parallel_attention": True,
                                             "engine": pool.deployment.engine.model_copy(
                                                 update={"kv_capacity_tokens": 100_000})})  # fmt: skip
    from agentsim.analysis.warnings import pool_memory

    (resolved,) = resolve(s.model_copy(update={"cluster": s.cluster.model_copy(update={"pools": [
        pool.model_copy(update={"deployment": dpa})]})}), load_catalog()).pools  # fmt: skip
    assert pool_memory(resolved).kv_tokens == 25_000
