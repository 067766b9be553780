"""Reasoning tokens (issue 15, part 1): generated and paid for, not delivered; what the next context keeps.

Prompts are traced by hand from the profile's rules (workload/profiles.py, Reasoning); the engine's prefix hits
under ``keep_reasoning: last`` against the block-aligned shared parts; and on every run delivered + reasoning =
generated output tokens."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentsim
from agentsim import api, spec
from agentsim.workload.profiles import TaskFactory, builtin_profiles
from agentsim.workload.taskgraph import ROOT


def c(v: float) -> dict[str, Any]:
    return {"kind": "constant", "value": v}


def profile(keep: str, reasoning: int | None = 50, **extra: Any) -> spec.AgentProfile:
    data: dict[str, Any] = {
        "system_prompt_tokens": c(1000), "task_prompt_tokens": c(500), "steps": c(4), "output_tokens": c(100),
        "tool_result_tokens": c(200), "tool_s": c(1.0), "keep_reasoning": keep,
    }
    if reasoning is not None:
        data["reasoning_tokens"] = c(reasoning)
    return spec.AgentProfile.model_validate(data | extra)


def task(p: spec.AgentProfile) -> list[tuple[int, int, int, int, int]]:
    t = TaskFactory(p, "w", np.random.default_rng(0)).next()
    t.validate()
    return [(x.prompt_tokens, x.output_tokens, x.reasoning_tokens, x.stable_tokens, x.prefix_parent) for x in t.calls]


def test_dropped_reasoning_the_next_prompt_is_prompt_plus_visible_output_plus_tool_result() -> None:
    # prompt(0) = 1000 + 500; each call generates 50 reasoning + 100 visible tokens; a tool adds 200.
    assert task(profile("none")) == [
        (1500, 150, 50, 0, ROOT),
        (1500 + 100 + 200, 150, 50, 0, 0),
        (1800 + 100 + 200, 150, 50, 0, 1),
        (2100 + 100 + 200, 150, 50, 0, 2),
    ]


def test_kept_reasoning_the_next_prompt_includes_it() -> None:
    assert task(profile("all")) == [
        (1500, 150, 50, 0, ROOT),
        (1500 + 150 + 200, 150, 50, 0, 0),
        (1850 + 150 + 200, 150, 50, 0, 1),
        (2200 + 150 + 200, 150, 50, 0, 2),
    ]


def test_last_reasoning_only_the_previous_calls_is_kept_and_the_prefix_stops_before_it() -> None:
    # Visible contexts V: 1500, 1800, 2100, 2400; prompt(k) = V(k) + r(k-1); the part later prompts share is
    # V(k-1), the context before the kept reasoning.
    assert task(profile("last")) == [
        (1500, 150, 50, 0, ROOT),
        (1800 + 50, 150, 50, 1500, 0),
        (2100 + 50, 150, 50, 1800, 1),
        (2400 + 50, 150, 50, 2100, 2),
    ]


@pytest.mark.parametrize("keep", ["none", "last", "all"])
def test_without_reasoning_every_policy_is_the_old_chain(keep: str) -> None:
    assert task(profile(keep, None)) == task(profile("none", 0)) == [
        (1500, 100, 0, 0, ROOT), (1800, 100, 0, 0, 0), (2100, 100, 0, 0, 1), (2400, 100, 0, 0, 2)
    ]


def test_fan_out_calls_follow_the_lead_by_the_same_rule() -> None:
    fan = {"fanout": {"subagents": c(2), "at_step": 1, "steps": c(1), "result_tokens": c(30)}}
    calls = task(profile("all", **fan))
    # lead 1500 (+50 reasoning +100 visible), two sub-agents with a 200-token instruction, then the join with
    # 2 x 30 results: all from the lead's context including its reasoning.
    assert [x[0] for x in calls[:4]] == [1500, 1500 + 150 + 200, 1500 + 150 + 200, 1500 + 150 + 60]
    calls = task(profile("none", **fan))
    assert [x[0] for x in calls[:4]] == [1500, 1500 + 100 + 200, 1500 + 100 + 200, 1500 + 100 + 60]


def test_the_window_counts_reasoning() -> None:
    # A window of 2000: call 1 (1800 + 150 > 1950?) fits at 1950, call 2 (2100 + 150) does not: compacted.
    p = profile("none", compact_to_tokens=300, context_limit_tokens=100_000)
    t = TaskFactory(p, "w", np.random.default_rng(0), max_context_tokens=2000).next()
    assert [x.compacted for x in t.calls] == [False, False, True, False]
    assert all(x.prompt_tokens + x.output_tokens <= 2000 for x in t.calls)


def small(profile_: str | dict[str, Any], keep: str | None = None, **engine: Any) -> agentsim.spec.Scenario:
    w: dict[str, Any] = {"profile": profile_, "arrivals": {"kind": "closed", "agents": 4, "ramp_s": 5}}
    if keep is not None:
        w["overrides"] = {"keep_reasoning": keep}
    return agentsim.load_scenario({
        "name": "reasoning", "seed": 3, "horizon_s": 300, "warmup_s": 30, "workload": [w],
        "cluster": {"pools": [{"name": "p", "replicas": 1,
                               "deployment": {"model": "llama-3.1-8b", "hardware": "h100",
                                              "engine": {"kv_capacity_tokens": 10**8, **engine}},
                               "perf": {"kind": "linear", "alpha_s": 0.01, "beta_s_per_prefill_token": 1e-6}}]},
    })


@pytest.mark.parametrize("keep", ["none", "last", "all"])
def test_every_run_delivered_plus_reasoning_is_the_generated_output(keep: str) -> None:
    r = api.run(small("reasoning-coder", keep))
    out = r.calls.column("output_tokens").to_numpy()
    reasoning = r.calls.column("reasoning_tokens").to_numpy()
    assert reasoning.sum() > 0 and np.all(out - reasoning >= 1)
    s = r.summary
    assert s["delivered_tokens"] + s["reasoning_tokens"] == s["output_tokens"]
    # $/Mtok delivered is $/Mtok generated over the delivered share of the completed calls' output.
    share = s["delivered_tokens"] / s["output_tokens"]
    assert s["usd_per_mtok_delivered"] == pytest.approx(s["usd_per_mtok_generated"] / share, rel=1e-12)
    assert s["usd_per_mtok_generated"] == s["usd_per_mtok_output"]


def test_a_run_without_reasoning_delivers_everything() -> None:
    s = api.run(small("coding-agent")).summary
    assert s["reasoning_tokens"] == 0 and s["delivered_tokens"] == s["output_tokens"]
    assert s["usd_per_mtok_delivered"] == s["usd_per_mtok_generated"]


def test_prefix_hits_follow_what_the_context_keeps() -> None:
    """With KV for everything, call k of a task finds the cached part of call k-1 that its prompt starts with:
    all of prompt(k-1) (none, all), or under `last` only its shared part V(k-2) (block-aligned, 16 tokens)."""
    fixed = {"kind": "agent", "system_prompt_tokens": c(1000), "task_prompt_tokens": c(500), "steps": c(5),
             "output_tokens": c(100), "tool_result_tokens": c(200), "tool_s": c(1.0),
             "reasoning_tokens": c(50), "shared_system_prompt": False}
    for keep in ("none", "all", "last"):
        r = api.run(small(fixed | {"keep_reasoning": keep}))
        calls = r.calls.to_pylist()
        first = [x for x in calls if x["task_id"] == 0]
        t = TaskFactory(spec.AgentProfile.model_validate(fixed | {"keep_reasoning": keep}), "w",
                        np.random.default_rng(0)).next()
        for k, x in enumerate(first):
            if k == 0:
                assert x["cached_tokens"] == 0
                continue
            prev = t.calls[k - 1]
            shared = prev.stable_tokens or prev.prompt_tokens
            assert x["cached_tokens"] == shared - shared % 16, (keep, k)


def test_reasoning_coder_is_coding_agent_with_reasoning() -> None:
    b = builtin_profiles()
    r, cod = b["reasoning-coder"], b["coding-agent"]
    assert r.reasoning_tokens is not None and r.keep_reasoning == "none"
    assert r.model_copy(update={"reasoning_tokens": None}) == cod


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keep=st.sampled_from(["none", "last", "all"]), median=st.integers(1, 3000), sigma=st.floats(0.0, 1.5),
       disagg=st.booleans(), offload=st.sampled_from([None, "on_evict", "on_tool_wait"]), seed=st.integers(0, 99))
def test_on_random_runs_delivered_plus_reasoning_is_generated(
    keep: str, median: int, sigma: float, disagg: bool, offload: str | None, seed: int
) -> None:
    """Whatever the policy, the reasoning lengths, the serving (unified or prefill + decode) and the KV tiers:
    each call generates at least one visible token beside its reasoning, and the summary's delivered and
    reasoning tokens add up to its output tokens."""
    s = small("coding-agent").model_dump()
    s["seed"] = seed
    s["workload"][0]["overrides"] = {"keep_reasoning": keep,
                                     "reasoning_tokens": {"kind": "lognormal", "median": median, "sigma": sigma}}
    p = s["cluster"]["pools"][0]
    p["deployment"]["engine"]["kv_capacity_tokens"] = 200_000
    if offload is not None:
        p["kv_offload"] = {"policy": offload, "dram_gb": 10, "dram_gb_s": 20}
    if disagg:
        s["cluster"]["pools"] = [p | {"name": "pre", "role": "prefill"}, p | {"name": "dec", "role": "decode"}]
    r = api.run(agentsim.load_scenario(s))
    out = r.calls.column("output_tokens").to_numpy()
    reasoning = r.calls.column("reasoning_tokens").to_numpy()
    assert np.all(out - reasoning >= 1)
    summary = r.summary
    assert summary["delivered_tokens"] + summary["reasoning_tokens"] == summary["output_tokens"]
