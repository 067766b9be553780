"""Several models (issue 15, part 2): pools serve a model, workloads and profile roles name the model they call,
routers pick among the pools serving it. Calls never reach a pool serving another model (property test on
random clusters); per-model costs and the tool pool's add up to the total; a model no pool serves is an error
naming it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentsim
from agentsim import api
from agentsim.errors import ScenarioError
from agentsim.resolve import resolve

MODELS = ("llama-3.1-8b", "qwen3-8b", "gpt-oss-20b")


def c(v: float) -> dict[str, Any]:
    return {"kind": "constant", "value": v}


def pool(name: str, model: str, replicas: int = 1, role: str = "unified") -> dict[str, Any]:
    return {"name": name, "role": role, "replicas": replicas,
            "deployment": {"model": model, "hardware": "h100", "engine": {"kv_capacity_tokens": 2_000_000}},
            "perf": {"kind": "linear", "alpha_s": 0.005, "beta_s_per_prefill_token": 2e-6,
                     "gamma_s_per_context_token": 1e-9}}


def research(lead: str | None, sub: str | None, join: str | None) -> dict[str, Any]:
    return {"kind": "agent", "system_prompt_tokens": c(500), "task_prompt_tokens": c(100), "steps": c(3),
            "output_tokens": c(50), "tool_result_tokens": c(100), "tool_s": c(0.5), "model": lead,
            "fanout": {"subagents": c(2), "at_step": 1, "steps": c(2), "result_tokens": c(80), "model": sub,
                       "join_model": join}}


def scenario(pools: list[dict[str, Any]], workloads: list[dict[str, Any]], **extra: Any) -> agentsim.spec.Scenario:
    return agentsim.load_scenario({"name": "models", "seed": 5, "horizon_s": 120, "warmup_s": 20,
                                   "workload": workloads, "cluster": {"pools": pools, **extra}})


def test_a_model_no_pool_serves_is_an_error_naming_it() -> None:
    s = scenario([pool("a", "llama-3.1-8b")], [{"profile": "chat", "model": "qwen3-8b"}])
    with pytest.raises(ScenarioError, match=r"workload\[0\]\.model.*no pool serves model 'qwen3-8b'"):
        resolve(s)
    s = scenario([pool("a", "llama-3.1-8b")], [{"profile": research(None, "gpt-oss-20b", None)}])
    with pytest.raises(ScenarioError, match=r"workload\[0\]\.profile\.fanout\.model.*'gpt-oss-20b'"):
        resolve(s)


def test_several_models_need_the_workload_to_name_one() -> None:
    s = scenario([pool("a", "llama-3.1-8b"), pool("b", "qwen3-8b")], [{"profile": "chat"}])
    with pytest.raises(ScenarioError, match=r"workload\[0\]\.model.*several models"):
        resolve(s)
    ok = scenario([pool("a", "llama-3.1-8b"), pool("b", "qwen3-8b")], [{"profile": "chat", "model": "qwen3-8b"}])
    assert resolve(ok).workloads[0].model == 1


def test_each_role_calls_its_model() -> None:
    """A lead on one model, sub-agents on a second and the join on a third: call i of a task (lead 0, sub-agent
    chains 1-4, join 5, lead 6-7) goes to its role's model."""
    s = scenario([pool("a", "llama-3.1-8b"), pool("b", "qwen3-8b"), pool("c", "gpt-oss-20b")],
                 [{"profile": research("llama-3.1-8b", "qwen3-8b", "gpt-oss-20b"),
                   "arrivals": {"kind": "closed", "agents": 3}}])
    calls = api.run(s).calls.to_pylist()
    role = {0: "llama-3.1-8b", 1: "qwen3-8b", 2: "qwen3-8b", 3: "qwen3-8b", 4: "qwen3-8b", 5: "gpt-oss-20b",
            6: "llama-3.1-8b", 7: "llama-3.1-8b"}
    assert calls and all(x["model"] == role[x["call_index"]] for x in calls)
    assert all(x["pool"] == "abc"[MODELS.index(x["model"])] for x in calls if x["pool"] is not None)


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    n_models = draw(st.integers(1, 3))
    models = list(MODELS[:n_models])
    pools = []
    for i, m in enumerate(models + draw(st.lists(st.sampled_from(models), max_size=2))):
        pools.append(pool(f"p{i}", m, draw(st.integers(1, 2))))
    workloads = []
    for j in range(draw(st.integers(1, 2))):
        roles = [draw(st.sampled_from([None, *models])) for _ in range(3)]
        w: dict[str, Any] = {"name": f"w{j}", "profile": research(*roles),
                             "arrivals": {"kind": "closed", "agents": draw(st.integers(1, 6))}}
        if roles[0] is None and n_models > 1:
            w["model"] = draw(st.sampled_from(models))
        workloads.append(w)
    router = draw(st.sampled_from(["least-load", "round-robin", "session-affinity", "prefix-aware"]))
    return pools, workloads, router


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=clusters(), tools=st.booleans())
def test_calls_never_reach_a_pool_serving_another_model(case: tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                    str], tools: bool) -> None:
    pools, workloads, router = case
    extra: dict[str, Any] = {"router": {"kind": router}}
    if tools:
        extra["tools"] = {"workers": 4}
    r = api.run(scenario(pools, workloads, **extra))
    served = {p["name"]: p["deployment"]["model"] for p in pools}
    routed = [x for x in r.calls.to_pylist() if x["pool"] is not None]
    assert routed
    assert all(served[x["pool"]] == x["model"] for x in routed)
    assert dict(zip(r.pools.column("pool").to_pylist(), r.pools.column("model").to_pylist(), strict=True)) == (
        served | ({"tools": None} if tools else {}))
    s = r.summary
    assert set(s["by_model"]) == set(served.values())
    total = sum(e["usd"] for e in s["by_model"].values()) + s["tools_usd"]
    assert total == pytest.approx(s["usd_total"], rel=1e-12)
    assert sum(e["energy_kwh"] for e in s["by_model"].values()) <= s["energy_kwh"] * (1 + 1e-12)
    assert sum(e["calls_completed"] for e in s["by_model"].values()) == s["calls_completed"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disagg=st.sampled_from(MODELS), other=st.sampled_from(MODELS), agents=st.integers(1, 6),
       router=st.sampled_from(["least-load", "round-robin", "session-affinity", "prefix-aware"]))
def test_disaggregated_calls_stay_on_their_models_pools(disagg: str, other: str, agents: int, router: str) -> None:
    """A prefill + decode pair serving one model beside a unified pool of another (maybe the same): a call is
    prefilled and decoded only on pools serving its model, and the per-model costs still add up."""
    pools = [pool("pre", disagg, 1, "prefill"), pool("dec", disagg, 1, "decode"), pool("uni", other, 1)]
    models = list(dict.fromkeys([disagg, other]))
    workloads = [{"name": f"w{i}", "profile": research(m, None, None), "model": m,
                  "arrivals": {"kind": "closed", "agents": agents}} for i, m in enumerate(models)]
    r = api.run(scenario(pools, workloads, router={"kind": router}))
    served = {p["name"]: p["deployment"]["model"] for p in pools}
    calls = r.calls.to_pylist()
    assert any(x["prefill_pool"] is not None for x in calls)
    for x in calls:
        for where in (x["pool"], x["prefill_pool"]):
            assert where is None or served[where] == x["model"]
    s = r.summary
    total = sum(e["usd"] for e in s["by_model"].values()) + s["tools_usd"]
    assert total == pytest.approx(s["usd_total"], rel=1e-12)
