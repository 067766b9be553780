"""The tool pool: agents' tool calls on a finite set of CPU workers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agentsim.api import load_scenario, run

AGENT = {
    "kind": "agent",
    "system_prompt_tokens": {"kind": "constant", "value": 64},
    "task_prompt_tokens": {"kind": "constant", "value": 64},
    "steps": {"kind": "constant", "value": 4},
    "output_tokens": {"kind": "constant", "value": 8},
    "tool_result_tokens": {"kind": "constant", "value": 32},
    "tool_s": {"kind": "constant", "value": 1.0},
}


def scenario(tools: dict[str, Any] | None, agents: int = 6, gap: str = "tool") -> Any:
    cluster: dict[str, Any] = {
        "pools": [
            {
                "name": "gpu",
                "replicas": 1,
                "deployment": {"model": "llama-3.1-8b", "hardware": "h100"},
                "perf": {"kind": "linear", "alpha_s": 0.01},
            }
        ],
    }
    if tools is not None:
        cluster["tools"] = tools
    return load_scenario(
        {
            "seed": 3,
            "horizon_s": 60.0,
            "sample_interval_s": 60.0,
            "workload": [{"profile": {**AGENT, "gap": gap}, "arrivals": {"kind": "closed", "agents": agents}}],
            "cluster": cluster,
        }
    )


def test_enough_workers_change_nothing() -> None:
    """With a worker per agent nobody waits, so timings equal the run without a tool pool."""
    free = run(scenario(None)).calls
    pooled = run(scenario({"workers": 6})).calls
    assert free.column("done_s").to_pylist() == pooled.column("done_s").to_pylist()


def test_one_worker_serialises_tool_calls() -> None:
    """Six agents whose steps take ~40 ms of GPU and 1 s of tool: with one worker the tool is the bottleneck,
    so it is busy nearly all the time and the task rate is bounded by one tool call per second."""
    r = run(scenario({"workers": 1}))
    tasks = r.tasks.to_pydict()
    waits = np.asarray(tasks["tool_wait_s"])
    assert waits.max() > 1.0  # some tool calls waited behind others
    tools = next(row for row in r.pools.to_pylist() if row["pool"] == "tools")
    assert tools["busy_s"] / 60.0 > 0.9
    # Each task makes 3 tool calls (4 steps): at most 60 tool calls in 60 s -> at most 20 tasks done.
    done = sum(d is not None for d in tasks["done_s"])
    assert 15 <= done <= 20
    assert tools["calls_usd"] + tools["idle_usd"] == pytest.approx(tools["provisioned_usd"], rel=1e-9)
    # Task cost includes its tool worker-seconds at the per-worker rate.
    rate = tools["provisioned_usd"] / 60.0  # one worker: $/s of the pool = $/s of the worker
    usd = np.asarray(tasks["usd"]) - np.asarray(tasks["tool_usd"])
    assert np.allclose(np.asarray(tasks["tool_usd"]), np.asarray(tasks["tool_busy_s"]) * rate)
    assert (usd >= 0).all()


def test_speedup_divides_tool_time() -> None:
    r = run(scenario({"workers": 6, "speedup": 2.0}))
    busy = np.asarray(r.tasks.column("tool_busy_s").to_pylist())
    calls = np.asarray(r.tasks.column("calls").to_pylist())
    done = np.asarray([d is not None for d in r.tasks.column("done_s").to_pylist()])
    # 3 tool calls of 1 s / 2 per finished 4-call task
    assert np.allclose(busy[done & (calls == 4)], 1.5)


def test_think_time_never_queues_on_the_tool_pool() -> None:
    r = run(scenario({"workers": 1}, gap="think"))
    assert sum(r.tasks.column("tool_busy_s").to_pylist()) == 0.0
