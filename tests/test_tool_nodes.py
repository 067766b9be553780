"""The hybrid blueprint, whole (issue 15, part 4): the KV DRAM tier of a pool kept on the tool nodes
(``kv_offload.host: tools``). Checked against arithmetic from the catalog's figures: the nodes' sockets and the
even share of their free memory, one price (whole sockets) and one power figure for tools and KV, the costs
still adding up to the total, and the accelerator pools charging nothing for that tier."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

import agentsim
from agentsim import api
from agentsim.catalog import load_catalog
from agentsim.resolve import resolve, tool_nodes

CPU = load_catalog().get_cpu("xeon6-6980p")  # 128 cores, 768 GB per socket


def scenario(
    offload: dict[str, Any] | None = None, tools: dict[str, Any] | None = None, replicas: int = 2,
    second: dict[str, Any] | None = None,
) -> agentsim.spec.Scenario:
    pool: dict[str, Any] = {"name": "p", "replicas": replicas,
                            "deployment": {"model": "llama-3.1-8b", "hardware": "h100",
                                           "engine": {"kv_capacity_tokens": 300_000}},
                            "perf": {"kind": "linear", "alpha_s": 0.01, "beta_s_per_prefill_token": 2e-6,
                                     "gamma_s_per_context_token": 1e-9, "delta_s_per_seq": 1e-4}}
    if offload is not None:
        pool["kv_offload"] = offload
    pools = [pool]
    if second is not None:
        pools.append({**pool, "name": "q", "kv_offload": second, "replicas": 1})
    return agentsim.load_scenario({
        "name": "tool-nodes", "seed": 3, "horizon_s": 600, "warmup_s": 60,
        "workload": [{"profile": "coding-agent", "arrivals": {"kind": "closed", "agents": 24, "ramp_s": 30}}],
        "cluster": {"pools": pools, "router": {"kind": "session-affinity"},
                    "tools": tools if tools is not None else {"workers": 32}},
    })


def test_free_memory_is_shared_evenly_by_the_replicas() -> None:
    """One socket (32 workers fit its 128 cores): 768 GB - 32 x 4 GB = 640 GB, 320 GB per replica, reloaded at
    the kv_link's 50 GB/s; a third replica of another pool asking 100 GB leaves (640 - 100) / 2 each."""
    s = scenario({"policy": "on_evict", "host": "tools"})
    nodes = tool_nodes(s.cluster, load_catalog())
    assert nodes is not None
    assert (nodes.sockets, nodes.kv_gb, nodes.share_gb, nodes.link_gb_s) == (1, 640.0, 320.0, 50.0)
    r = resolve(s)
    plan = r.pools[0].plan.offload
    assert plan is not None
    assert plan.dram_tokens == int(320e9 // r.pools[0].plan.kv_bytes_per_token)
    assert plan.dram_bytes_per_s == 50e9
    two = tool_nodes(scenario({"policy": "on_evict", "host": "tools"},
                              second={"policy": "on_evict", "host": "tools", "dram_gb": 100}).cluster,
                     load_catalog())
    assert two is not None and (two.share_gb, two.kv_gb) == (270.0, 640.0)


def test_sockets_grow_with_the_memory_asked_for() -> None:
    """2 replicas x 500 GB + 128 GB of tools = 1,128 GB: two sockets (1,536 GB); 300 workers: three (384 cores)."""
    s = scenario({"policy": "on_evict", "host": "tools", "dram_gb": 500})
    nodes = tool_nodes(s.cluster, load_catalog())
    assert nodes is not None and (nodes.sockets, nodes.kv_gb, nodes.share_gb) == (2, 1000.0, 0.0)
    many = tool_nodes(scenario({"policy": "on_evict", "host": "tools"}, tools={"workers": 300}).cluster,
                      load_catalog())
    assert many is not None and many.sockets == math.ceil(300 / CPU.cores) == 3
    assert many.kv_gb == 3 * CPU.memory_gb - 300 * 4.0


def test_one_price_and_one_power_figure_for_the_nodes() -> None:
    s = scenario({"policy": "on_evict", "host": "tools"}, tools={"workers": 32, "sockets": 2})
    r = resolve(s)
    tier = s.pricing.tier  # type: ignore[union-attr]
    per_core = load_catalog().get_cpu_price("xeon6-6980p").usd_per_hour(tier)
    pue = s.pricing.pue
    t = r.tools
    assert t is not None
    kv_gb = 2 * 768 - 32 * 4.0
    # Whole sockets priced; the KV memory's part of that price reported apart, not added.
    assert t.usd_per_replica_hour == pytest.approx(2 * 128 * per_core, rel=1e-12)
    assert t.tier_usd_per_replica_hour == pytest.approx(kv_gb * 1.7e-4, rel=1e-12)
    # Power: the workers' cores as before, the other cores idle, the KV memory at 0.1 W/GB; x PUE.
    spare = (2 * 128 - 32) * 100 / 128
    assert t.busy_w_per_replica == pytest.approx((32 * 500 / 128 + spare + kv_gb * 0.1) * pue, rel=1e-12)
    assert t.idle_w_per_replica == pytest.approx((32 * 100 / 128 + spare + kv_gb * 0.1) * pue, rel=1e-12)
    assert t.tier_w_per_replica == pytest.approx(kv_gb * 0.1 * pue, rel=1e-12)
    # The accelerator pool pays for no DRAM tier (it is the nodes'), only for what stays local (none here).
    assert r.pools[0].rates.tier_usd_per_replica_hour == 0.0 and r.pools[0].rates.tier_w_per_replica == 0.0


def test_costs_add_up_and_tool_time_does_not_pay_for_the_kv() -> None:
    res = api.run(scenario({"policy": "on_tool_wait", "host": "tools"}))
    s = res.summary
    assert s["cache_hit_rate_by_tier"]["dram"] > 0
    assert sum(m["usd"] for m in s["by_model"].values()) + s["tools_usd"] == pytest.approx(s["usd_total"], rel=1e-12)
    tools = resolve(scenario({"policy": "on_tool_wait", "host": "tools"})).tools
    assert tools is not None
    window = s["window_s"]  # 600 - 60 s of warm-up
    assert s["kv_tier_usd"] == pytest.approx(tools.tier_usd_per_s * window, rel=1e-9)
    # A task's tool cost: its worker-seconds at the nodes' price less the KV memory's part, per worker.
    tasks = res.tasks
    busy = tasks.column("tool_busy_s").to_numpy()
    usd = tasks.column("tool_usd").to_numpy()
    per_worker_s = (tools.usd_per_s - tools.tier_usd_per_s) / 32
    assert usd == pytest.approx(busy * per_worker_s, rel=1e-12)


def test_without_tool_nodes_or_room_the_scenario_is_refused() -> None:
    data = scenario({"policy": "on_evict", "host": "tools"}).model_dump()
    data["cluster"]["tools"] = None
    with pytest.raises(ValueError, match=r"host: tools.*needs cluster\.tools"):
        agentsim.load_scenario(data)
    tight = scenario({"policy": "on_evict", "host": "tools", "dram_gb": 500}, tools={"workers": 32, "sockets": 1})
    with pytest.raises(agentsim.ScenarioError, match=r"cluster.tools.sockets.*cannot hold.*at least 2 sockets"):
        resolve(tight)


def test_the_hybrid_whole_example_is_hybrid_with_its_kv_on_the_tool_node() -> None:
    """`agentsim example hybrid-whole`: the hybrid example plus the prefill pool's kv_offload on the tools; one
    Xeon socket of 768 GB, 32 workers x 4 GB, so 640 GB of KV, 320 GB per prefill replica, at kv_link's 50 GB/s."""
    hybrid = yaml.safe_load(api.example_text("hybrid"))
    whole = yaml.safe_load(api.example_text("hybrid-whole"))
    assert whole["cluster"]["pools"][0].pop("kv_offload") == {"policy": "on_tool_wait", "host": "tools"}
    assert whole["cluster"]["tools"].pop("gb_per_worker") == 4
    assert {k: v for k, v in whole.items() if k != "name"} == {k: v for k, v in hybrid.items() if k != "name"}
    r = resolve(agentsim.load_scenario(yaml.safe_load(api.example_text("hybrid-whole"))))
    nodes = tool_nodes(r.scenario.cluster, load_catalog())
    assert nodes is not None and (nodes.sockets, nodes.kv_gb, nodes.share_gb) == (1, 640.0, 320.0)
    plan = r.pools[0].plan.offload
    assert plan is not None and plan.dram_bytes_per_s == 50e9
    assert r.pools[1].plan.offload is None  # the decode pool keeps no tier
