"""Golden timelines traced by hand.

All durations are dyadic fractions (0.125, 1/256, 0.25, 0.5 ...), so every sum below is exact in binary
floating point and the assertions compare to 1e-12 with room to spare. Engine rules used (serving/replica.py):
a step's duration is ``alpha + beta P + gamma C + delta D``; a call's first token comes at the end of the step
that completes its prefill; each later step adds one token, so ``o`` output tokens end ``o - 1`` steps later;
waiting calls join at the next step boundary; when a prefill completes, its block-aligned prompt becomes a
prefix-cache node the agent's next call finds.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import agentsim
from agentsim.analysis.rows import col
from agentsim.api import RunResult, run
from agentsim.traces.io import write_trace
from agentsim.traces.schema import trace_task
from agentsim.workload.taskgraph import CallTemplate, TaskTemplate
from helpers_validation import const, fixed_profile, linear_perf, scenario

EXACT = 1e-12


def by_call(r: RunResult, name: str) -> list[float]:
    order = sorted(range(r.calls.num_rows), key=lambda k: r.calls.column("call_id")[k].as_py())
    values = col(r.calls, name)
    return [float(values[k]) for k in order]


def two_agents(engine: dict[str, object], perf: dict[str, object]) -> RunResult:
    return run(scenario(
        profile=fixed_profile(20, 3), perf=perf, horizon_s=3.0, max_tasks=4,
        arrivals={"kind": "closed", "agents": 2, "think_s": const(0.25)},
        engine={"block_size_tokens": 16, **engine},
    ))


def test_two_agents_one_at_a_time() -> None:
    """Two agents, two tasks each (``max_tasks: 4``), think 0.25 s, one call of 20 prompt / 3 output tokens
    per task, ``max_num_seqs: 1``, every step 0.125 s (alpha only).

    t=0      agents 0 and 1 start tasks 0 and 1; calls 0 and 1 are issued (in agent order); call 0 is admitted,
             call 1 waits (one sequence at a time).
    0-0.125  step 1: prefill of call 0 -> first token at 0.125.
    0.125-0.375  two decode steps -> call 0 done at 0.375 (3 tokens); task 0 done, agent 0 thinks until 0.625.
    0.375    call 1 admitted. Prefill step -> first token 0.5; decodes -> done 0.75. Agent 1 thinks to 1.0.
    0.625    agent 0 starts task 2, call 2 issued and queued (call 1 is decoding).
    0.75     call 2 admitted: first token 0.875, done 1.125.
    1.0      agent 1 starts task 3, call 3 issued and queued.
    1.125    call 3 admitted: first token 1.25, done 1.5.
    1.375, 1.75  the agents would start again, but four tasks were started: the run goes quiet.
    """
    r = two_agents({"max_num_seqs": 1}, linear_perf(0.125))
    assert r.calls.num_rows == 4
    for got, want in [
        (by_call(r, "issue_s"), [0.0, 0.0, 0.625, 1.0]),
        (by_call(r, "first_token_s"), [0.125, 0.5, 0.875, 1.25]),
        (by_call(r, "done_s"), [0.375, 0.75, 1.125, 1.5]),
        (by_call(r, "busy_s"), [0.375] * 4),  # alone in each of its three steps
    ]:
        assert got == pytest.approx(want, abs=EXACT)
    assert r.tasks.column("agent").to_pylist() == [0, 1, 0, 1]
    assert col(r.tasks, "start_s").tolist() == pytest.approx([0.0, 0.0, 0.625, 1.0], abs=EXACT)
    assert col(r.tasks, "done_s").tolist() == pytest.approx([0.375, 0.75, 1.125, 1.5], abs=EXACT)
    assert by_call(r, "cached_tokens") == [0, 0, 0, 0]  # different tasks share no prefix


def test_two_agents_batched() -> None:
    """The same two agents with continuous batching and a step of ``0.125 + P/256 + D/64`` seconds.

    t=0      calls 0 and 1 issued and admitted together. Step 1: P = 20 + 20 = 40 prefill tokens,
             0.125 + 40/256 = 0.28125 s -> both first tokens at 0.28125.
    0.28125  two decode steps with D = 2: 0.125 + 2/64 = 0.15625 s each -> both done at 0.59375.
             Each call's busy share: half of every step, (0.28125 + 2 x 0.15625) / 2 = 0.296875 s.
    0.84375  both agents (think 0.25 s) issue calls 2 and 3: the same steps again -> first tokens at
             1.125, done at 1.4375.
    """
    r = two_agents({}, linear_perf(0.125, 1 / 256, 0.0, 1 / 64))
    assert by_call(r, "issue_s") == pytest.approx([0.0, 0.0, 0.84375, 0.84375], abs=EXACT)
    assert by_call(r, "first_token_s") == pytest.approx([0.28125, 0.28125, 1.125, 1.125], abs=EXACT)
    assert by_call(r, "done_s") == pytest.approx([0.59375, 0.59375, 1.4375, 1.4375], abs=EXACT)
    assert by_call(r, "busy_s") == pytest.approx([0.296875] * 4, abs=EXACT)
    # The replica was busy exactly during [0, 0.59375] and [0.84375, 1.4375].
    final = r.replicas.filter(r.replicas.column("t_s").to_numpy() == 3.0)
    assert col(final, "busy_s").tolist() == pytest.approx([2 * 0.59375], abs=EXACT)
    assert col(final, "output_tokens").tolist() == [12]
    assert col(final, "prefill_tokens").tolist() == [80]


def test_two_step_agent_chain_tool_gap_and_prefix_hit() -> None:
    """One agent, one task of two steps: task prompt 40 (no system prompt), 3 output tokens per step, a tool
    result of 10 tokens and a tool time of 0.5 s between the steps; step ``0.125 + P/256`` seconds, KV blocks
    of 16 tokens.

    call 0   prompt 40, issued at 0. Prefill step 0.125 + 40/256 = 0.28125 -> first token 0.28125; its
             block-aligned prompt, 32 tokens (two blocks; the last 8 tokens fill no block), is cached. Two
             decode steps of 0.125 -> done 0.53125.
    tool     0.5 s -> call 1 issued at 1.03125.
    call 1   prompt 40 + 3 + 10 = 53, prefix = call 0's prompt: 32 tokens hit the cache, 21 are computed.
             Prefill step 0.125 + 21/256 = 0.20703125 -> first token 1.23828125; two decodes -> done
             1.48828125, which is also the task's end.
    """
    profile = {
        "kind": "agent",
        "system_prompt_tokens": const(0), "shared_system_prompt": False, "task_prompt_tokens": const(40),
        "steps": const(2), "output_tokens": const(3), "tool_result_tokens": const(10), "tool_s": const(0.5),
    }
    r = run(scenario(
        profile=profile, perf=linear_perf(0.125, 1 / 256), horizon_s=3.0, max_tasks=1,
        arrivals={"kind": "closed", "agents": 1}, engine={"block_size_tokens": 16},
    ))
    assert by_call(r, "prompt_tokens") == [40, 53]
    assert by_call(r, "cached_tokens") == [0, 32]
    assert by_call(r, "issue_s") == pytest.approx([0.0, 1.03125], abs=EXACT)
    assert by_call(r, "first_token_s") == pytest.approx([0.28125, 1.23828125], abs=EXACT)
    assert by_call(r, "done_s") == pytest.approx([0.53125, 1.48828125], abs=EXACT)
    assert by_call(r, "busy_s") == pytest.approx([0.53125, 0.45703125], abs=EXACT)
    gap = by_call(r, "issue_s")[1] - by_call(r, "done_s")[0]
    assert gap == pytest.approx(0.5, abs=EXACT)
    task = r.tasks.to_pylist()
    assert len(task) == 1
    t = task[0]
    assert (t["start_s"], t["done_s"], t["calls"], t["tool_s"]) == (0.0, 1.48828125, 2, 0.5)
    assert (t["prompt_tokens"], t["cached_tokens"], t["output_tokens"]) == (93, 32, 6)
    final = r.replicas.filter(r.replicas.column("t_s").to_numpy() == 3.0)
    assert col(final, "prefill_tokens").tolist() == [40 + 21]


def test_call_decoding_across_the_horizon_keeps_its_tokens() -> None:
    """One call of 16 prompt / 100 output tokens, every step 0.125 s, horizon 5.0625 s (40.5 steps).

    The prefill step ends at 0.125 (token 1) and decode step ``k`` at ``0.125 (k + 1)``: 40 steps have ended
    by the horizon, so the call has generated 40 tokens and the replica's counter says 40, as it already does
    in the sample at 5.0 s. The engine runs the 99 decode steps as one skipped segment, so at the horizon
    ``finalize`` must count the 39 whole steps finished inside it, not only charge the elapsed time (it did
    not before commit 5313fb8: the counter fell from 40 to 1 and the call reported 1 token).
    """
    r = run(scenario(
        profile=fixed_profile(16, 100), perf=linear_perf(0.125), horizon_s=5.0625, sample_interval_s=1.0,
        arrivals={"kind": "closed", "agents": 1}, max_tasks=1,
    ))
    t = col(r.replicas, "t_s")
    out = col(r.replicas, "output_tokens")
    assert out[t == 5.0].tolist() == [40]
    assert math.isnan(by_call(r, "done_s")[0])  # unfinished
    assert by_call(r, "busy_s") == pytest.approx([5.0625], abs=EXACT)
    assert out[t == 5.0625].tolist() == [40]
    assert by_call(r, "generated_tokens") == [40]


def test_dag_dependencies_fan_out_join_and_independent_roots(tmp_path: Path) -> None:
    """Replayed (closed mode) tasks whose calls are not a plain chain, each call one prefill step of 0.125 s
    (16-token prompt, one output token, no shared prefix).

    task 0 (start 0): call 0 at 0, done 0.125. Calls 1 (gap 0.5) and 2 (gap 0.25) both depend on call 0:
             issued 0.625 and 0.375, done 0.75 and 0.5. Call 3 joins both (gap 0): issued at the later, 0.75;
             done 0.875.
    task 1 (start 10): calls 0 and 1 have no dependencies (gaps 0 and 1): issued 10 and 11, done 10.125 and
             11.125. Call 2 depends on call 1 only: issued 11.125, done 11.25. (Calls 1-2 look like a chain,
             but the task is not one: call 1 does not wait for call 0.)
    """
    fan = (
        CallTemplate(16, 1),
        CallTemplate(16, 1, (0,), 0.5),
        CallTemplate(16, 1, (0,), 0.25),
        CallTemplate(16, 1, (1, 2), 0.0),
    )
    roots = (CallTemplate(16, 1), CallTemplate(16, 1, (), 1.0), CallTemplate(16, 1, (1,), 0.0))
    path = tmp_path / "dag.parquet"
    write_trace(path, [trace_task(TaskTemplate("dag", fan), 0, 0.0, 0),
                       trace_task(TaskTemplate("dag", roots), 1, 10.0, 4)])
    base = scenario(profile=fixed_profile(16, 1), perf=linear_perf(0.125, 0.0), horizon_s=20.0,
                    arrivals={"kind": "poisson", "rate_per_s": 1.0}).model_dump(mode="json")
    base["workload"] = [{"kind": "trace", "path": str(path), "mode": "closed"}]
    r = run(agentsim.load_scenario(base))
    # Call ids are given in sending order; list the calls by (task, position in the task) instead.
    rows = sorted(r.calls.to_pylist(), key=lambda c: (c["task_id"], c["call_index"]))
    assert [c["issue_s"] for c in rows] == pytest.approx([0.0, 0.625, 0.375, 0.75, 10.0, 11.0, 11.125], abs=EXACT)
    assert [c["done_s"] for c in rows] == pytest.approx([0.125, 0.75, 0.5, 0.875, 10.125, 11.125, 11.25], abs=EXACT)
    assert [t["done_s"] for t in r.tasks.to_pylist()] == pytest.approx([0.875, 11.25], abs=EXACT)
