"""KV offload tiers (issue 15, part 3): HBM -> host DRAM -> NVMe, demotion on eviction, reloads at the tier's
bandwidth, on_tool_wait. Checked against arithmetic: a lone call's reload takes bytes / bandwidth exactly; with
HBM for everything offload changes nothing; tokens are conserved across the tiers. (The step-by-step reference
engine models the tiers too: tests/test_engine_reference.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import agentsim
from agentsim import api
from agentsim.engine.clock import Clock
from agentsim.perf.linear import LinearPerfModel
from agentsim.resolve import resolve
from agentsim.serving.admission import EngineConfig
from agentsim.serving.call import Call, Callbacks
from agentsim.serving.replica import Replica
from agentsim.serving.tiers import ON_EVICT, OffloadPlan
from agentsim.spec import LinearPerf

PERF = LinearPerfModel(LinearPerf(alpha_s=0.01, beta_s_per_prefill_token=1e-5))


def test_a_lone_calls_reload_costs_bytes_over_bandwidth() -> None:
    """Call 0 (1,000 tokens) is cached, evicted to DRAM by call 1 (which needs all of HBM), then call 2 extends
    call 0's prompt: it reloads call 0's 992 block-aligned tokens at 2e5 bytes/s x 1,000 bytes per token."""
    env = Clock()
    done: list[Call] = []
    plan = OffloadPlan(ON_EVICT, 10_000, 0, 2e5 * 1000, 1.0, 1000.0)
    rep = Replica(env.events, 0, "p", PERF, EngineConfig(), 1200, Callbacks(lambda c, t: None,
                                                                             lambda c, t: done.append(c)),
                  offload=plan)
    c0 = Call(0, 1000, 1, 0.0)
    c1 = Call(1, 1100, 1, 0.0)
    c2 = Call(2, 1100, 1, 0.0, parent=c0)
    for t, c in ((0.0, c0), (1.0, c1), (2.0, c2)):
        env.timeout(t).callbacks.append(lambda _e, c=c: rep.submit(c))
    env.run()
    assert c1.cached == 0 and c2.cached == 992
    assert c2.reloaded == [992, 0]
    assert c2.reload_s == pytest.approx(992 * 1000.0 / (2e5 * 1000), rel=1e-12)
    # Its prefill starts when the reload ends: the 108 tokens left, one step. It was admitted when it came (the
    # replica was idle), before the reload: its admission time is set like any other call's.
    assert c2.first_token_s == pytest.approx(2.0 + c2.reload_s + PERF.step_time(108, 0, 992), rel=1e-12)
    assert c2.admitted_s == pytest.approx(2.0, abs=1e-12)
    tiers = rep.tiers
    assert tiers is not None
    assert tiers.demoted[1] - tiers.reloaded[1] - tiers.dropped[1] - tiers.moved_down() == tiers.used[1]


def small(offload: dict[str, Any] | None, kv_tokens: int = 10**9, profile: str = "coding-agent",
          agents: int = 24) -> agentsim.spec.Scenario:
    pool: dict[str, Any] = {"name": "p", "replicas": 2,
                            "deployment": {"model": "llama-3.1-8b", "hardware": "h100",
                                           "engine": {"kv_capacity_tokens": kv_tokens}},
                            "perf": {"kind": "linear", "alpha_s": 0.01, "beta_s_per_prefill_token": 2e-6,
                                     "gamma_s_per_context_token": 1e-9, "delta_s_per_seq": 1e-4}}
    if offload is not None:
        pool["kv_offload"] = offload
    return agentsim.load_scenario({
        "name": "offload", "seed": 2, "horizon_s": 600, "warmup_s": 60,
        "workload": [{"profile": profile, "arrivals": {"kind": "closed", "agents": agents, "ramp_s": 30}}],
        "cluster": {"pools": [pool], "router": {"kind": "session-affinity"}},
    })


def test_with_hbm_for_everything_offload_changes_nothing() -> None:
    base = api.run(small(None))
    evict = api.run(small({"policy": "on_evict"}))
    for col in ("issue_s", "first_token_s", "done_s", "cached_tokens", "busy_s"):
        assert base.calls.column(col).equals(evict.calls.column(col)), col
    assert evict.summary["cache_hit_rate_by_tier"]["dram"] == 0.0
    # The tiers are still paid for: the same time at a higher rate.
    assert evict.summary["kv_tier_usd"] > 0
    assert evict.summary["usd_total"] == pytest.approx(base.summary["usd_total"] + evict.summary["kv_tier_usd"])


def test_tight_hbm_demotes_and_reloads_and_conserves_tokens() -> None:
    r = api.run(small({"policy": "on_evict", "dram_gb": 20, "nvme_gb": 200}, kv_tokens=400_000, agents=32))
    calls = r.calls
    dram = calls.column("reloaded_dram_tokens").to_numpy()
    nvme = calls.column("reloaded_nvme_tokens").to_numpy()
    cached = calls.column("cached_tokens").to_numpy()
    assert dram.sum() > 0 and nvme.sum() > 0
    assert np.all(dram + nvme <= cached)
    # A reload's time is at least its bytes over the tier's bandwidth (more when the link was busy).
    s = r.summary
    rates = s["cache_hit_rate_by_tier"]
    assert rates["hbm"] + rates["dram"] + rates["nvme"] == pytest.approx(s["cache_hit_rate"], rel=1e-12)
    per_token = resolve(small(None)).pools[0].plan.kv_bytes_per_token
    host = 50e9  # one H100 per replica: the catalog's PCIe link per GPU
    reload_s = calls.column("reload_s").to_numpy()
    nvme_bw = 6.5e9
    floor = dram * per_token / host + nvme * per_token / nvme_bw
    # (reload_s is an end time minus a start time: exact to ~1e-13 s at these times)
    assert np.all(reload_s >= floor - 1e-9)
    assert np.any(np.isclose(reload_s[dram + nvme > 0], floor[dram + nvme > 0], rtol=0, atol=1e-9))


def test_on_tool_wait_moves_contexts_out_while_tools_run() -> None:
    evict = api.run(small({"policy": "on_evict"}, kv_tokens=10**9))
    park = api.run(small({"policy": "on_tool_wait"}, kv_tokens=10**9))
    # With HBM for everything nothing is evicted; parking moves each agent's context out during its tool call,
    # and its next call reloads it from DRAM.
    assert evict.summary["cache_hit_rate_by_tier"]["dram"] == 0.0
    assert park.summary["cache_hit_rate_by_tier"]["dram"] > 0.5
    used = park.replicas.column("kv_used_tokens").to_numpy().max()
    assert used < evict.replicas.column("kv_used_tokens").to_numpy().max()


def test_offload_needs_host_figures() -> None:
    s = small({"policy": "on_evict"})
    data = s.model_dump()
    data["cluster"]["pools"][0]["deployment"]["hardware"] = "gaudi3"
    with pytest.raises(agentsim.ScenarioError, match=r"kv_offload.*no host memory figures.*dram_gb, dram_gb_s"):
        resolve(agentsim.load_scenario(data))
    data["cluster"]["pools"][0]["kv_offload"] = {"dram_gb": 100, "dram_gb_s": 20}
    assert resolve(agentsim.load_scenario(data)).pools[0].rates.tier_usd_per_replica_hour == 0.0


def test_tier_rates_from_the_catalog() -> None:
    """An H100 replica (1 GPU) with defaults: half of 256 GB DRAM at 1.7e-4 $/GB-h and 0.1 W/GB (x PUE)."""
    r = resolve(small({"policy": "on_evict", "nvme_gb": 1000})).pools[0]
    assert r.rates.tier_usd_per_replica_hour == pytest.approx(128 * 1.7e-4 + 1000 * 3.4e-6)
    pue = small(None).pricing.pue
    assert r.rates.tier_w_per_replica == pytest.approx((128 * 0.1 + 1000 * 0.002) * pue)
    plan = r.plan.offload
    assert plan is not None and plan.dram_bytes_per_s == 50e9 and plan.nvme_bytes_per_s == 6.5e9
    assert plan.dram_tokens == int(128e9 // r.plan.kv_bytes_per_token)
