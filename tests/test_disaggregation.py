"""Disaggregated serving: prefill pool -> KV link -> decode pool.

Checked against arithmetic and queueing theory: the KV transfer time of a lone call is exactly
``bytes / bandwidth + latency``; a batch-1 prefill pool with constant step time D under Poisson arrivals is an
M/D/1 queue for the first token; tokens, calls and dollars are conserved across pools.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from agentsim.api import load_scenario, run
from agentsim.catalog import load_catalog
from agentsim.perf.memory import kv_bytes_per_token
from agentsim.spec import Deployment
from helpers_validation import estimate, fixed_profile, issued_between, latencies, linear_perf

MODEL, HW = "llama-3.1-8b", "h100"
NO_KV_LIMIT = 10**9


def disagg(
    *,
    profile: dict[str, Any] | str,
    arrivals: dict[str, Any],
    prefill_perf: dict[str, Any],
    decode_perf: dict[str, Any],
    horizon_s: float,
    warmup_s: float = 0.0,
    seed: int = 0,
    prefill_engine: dict[str, Any] | None = None,
    prefill_replicas: int = 1,
    decode_replicas: int = 1,
    link: dict[str, Any] | None = None,
    unified_replicas: int = 0,
) -> Any:
    def pool(name: str, role: str, perf: dict[str, Any], n: int, engine: dict[str, Any] | None) -> dict[str, Any]:
        eng = {"kv_capacity_tokens": NO_KV_LIMIT, **(engine or {})}
        return {
            "name": name,
            "role": role,
            "replicas": n,
            "perf": perf,
            "deployment": {"model": MODEL, "hardware": HW, "engine": eng},
        }

    pools = [
        pool("pre", "prefill", prefill_perf, prefill_replicas, prefill_engine),
        pool("dec", "decode", decode_perf, decode_replicas, None),
    ]
    if unified_replicas:
        pools.append(pool("uni", "unified", decode_perf, unified_replicas, None))
    return load_scenario(
        {
            "seed": seed,
            "horizon_s": horizon_s,
            "warmup_s": warmup_s,
            "sample_interval_s": horizon_s,
            "workload": [{"profile": profile, "arrivals": arrivals}],
            "cluster": {"pools": pools, "kv_link": link or {"bandwidth_gb_s": 50.0, "latency_s": 0.0005}},
        }
    )


def test_kv_transfer_time_of_a_lone_call_is_bytes_over_bandwidth_plus_latency() -> None:
    prompt = 3000
    s = disagg(
        profile=fixed_profile(prompt, 20),
        arrivals={"kind": "closed", "agents": 1},
        prefill_perf=linear_perf(0.01),
        decode_perf=linear_perf(0.005),
        horizon_s=5.0,
        link={"bandwidth_gb_s": 25.0, "latency_s": 0.002},
    )
    r = run(s)
    first = r.calls.slice(0, 1).to_pylist()[0]
    per_token = kv_bytes_per_token(load_catalog().get_model(MODEL), Deployment(model=MODEL, hardware=HW))
    expected = prompt * per_token / 25e9 + 0.002
    assert first["kv_transfer_s"] == pytest.approx(expected, rel=1e-12)
    # The call decodes on the decode pool right after the transfer: o - 1 = 19 decode steps of 5 ms.
    assert first["done_s"] == pytest.approx(first["first_token_s"] + expected + 19 * 0.005, rel=1e-12)
    assert first["pool"] == "dec" and first["prefill_pool"] == "pre"
    assert first["prefill_replica"] == 0 and first["decode_replica"] == 1


def test_a_call_whose_kv_is_in_transit_at_the_horizon_has_no_decode_replica() -> None:
    """docs/METRICS.md: while the KV crosses the link, the call is still the prefill replica's (``pool``,
    ``replica``), it has a hand-off (``prefill_*``, ``kv_transfer_s``) and no decode replica yet (null)."""
    prompt = 3000
    per_token = kv_bytes_per_token(load_catalog().get_model(MODEL), Deployment(model=MODEL, hardware=HW))
    transfer = prompt * per_token / 1e9  # 1 GB/s: about a second in transit
    s = disagg(
        profile=fixed_profile(prompt, 20),
        arrivals={"kind": "closed", "agents": 1},
        prefill_perf=linear_perf(0.01),
        decode_perf=linear_perf(0.005),
        horizon_s=0.01 + transfer / 2,  # the first prefill step ends at 0.01 s; the horizon falls mid-transfer
        link={"bandwidth_gb_s": 1.0, "latency_s": 0.0},
    )
    first = run(s).calls.slice(0, 1).to_pylist()[0]
    assert first["first_token_s"] == pytest.approx(0.01) and first["done_s"] is None
    assert first["kv_transfer_s"] == pytest.approx(transfer, rel=1e-12)
    assert (first["pool"], first["replica"]) == ("pre", 0)
    assert (first["prefill_pool"], first["prefill_replica"]) == ("pre", 0)
    assert first["decode_replica"] is None


def test_a_prefill_replica_blocked_by_transfers_resumes_when_they_end() -> None:
    """A prefill replica whose KV holds two prompts: six calls arrive at once, two are prefilled in one step and
    their KV leaves over a 1 GB/s link one after the other (each held until it has left). When the first transfer
    ends, its KV is free and the third call is admitted at that moment; every call finishes. (The replica used to
    stay idle with four calls waiting: a finished transfer did not wake it.)"""
    prompt = 3000
    per_token = kv_bytes_per_token(load_catalog().get_model(MODEL), Deployment(model=MODEL, hardware=HW))
    transfer = prompt * per_token / 1e9
    s = disagg(
        profile=fixed_profile(prompt, 20),
        arrivals={"kind": "closed", "agents": 6, "think_s": {"kind": "constant", "value": 1e6}},
        prefill_perf=linear_perf(0.01),
        decode_perf=linear_perf(0.005),
        horizon_s=30.0,
        prefill_engine={"kv_capacity_tokens": 2 * (prompt + 1) + 50},
        link={"bandwidth_gb_s": 1.0, "latency_s": 0.0},
    )
    calls = run(s).calls.sort_by("admitted_s").to_pylist()
    assert len(calls) == 6 and all(c["done_s"] is not None for c in calls)
    assert calls[0]["admitted_s"] == calls[1]["admitted_s"] == 0.0
    assert calls[2]["admitted_s"] == pytest.approx(0.01 + transfer, rel=1e-12)


@pytest.mark.validation
@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_prefill_pool_batch_one_is_md1(rho: float) -> None:
    """A prefill pool with ``max_num_seqs = 1`` and a constant step time D computes one prompt per step and
    hands the call to the decode pool at the step's end (the batch slot frees then; the KV waits for the link
    separately). So the first token of each call follows an M/D/1 queue:
    ``E[TTFT] = D + lambda D^2 / (2 (1 - lambda D))``."""
    d = 0.02
    lam = rho / d
    warm, n = 600 / lam, 4000
    end = warm + n / lam
    theory = d + lam * d * d / (2 * (1 - lam * d))
    means = []
    for seed in range(8):
        s = disagg(
            profile=fixed_profile(64, 4),
            arrivals={"kind": "poisson", "rate_per_s": lam},
            prefill_perf=linear_perf(d),
            decode_perf=linear_perf(0.001),
            horizon_s=end + 100 * d,
            warmup_s=warm,
            seed=seed,
            prefill_engine={"max_num_seqs": 1},
        )
        r = run(s)
        lat = latencies(r.calls, issued_between(r.calls, warm, end))
        means.append(float(lat["ttft"].mean()))
    estimate(means).assert_matches(theory, what=f"prefill-pool M/D/1 rho={rho} mean TTFT")


def test_conservation_across_pools() -> None:
    """Coding agents on a mixed cluster (prefill + decode pools and a unified pool): every output token is
    generated exactly once across pools, every completed call produced all its tokens, and each pool's calls
    plus idle cost equals its provisioned cost."""
    s = disagg(
        profile="coding-agent",
        arrivals={"kind": "closed", "agents": 24, "ramp_s": 10},
        prefill_perf={"kind": "roofline"},
        decode_perf={"kind": "roofline"},
        horizon_s=240,
        prefill_replicas=2,
        decode_replicas=2,
        unified_replicas=1,
    )
    r = run(s)
    calls = r.calls.to_pydict()
    gen = np.asarray(calls["generated_tokens"])
    out = np.asarray(calls["output_tokens"])
    done = np.asarray([d is not None for d in calls["done_s"]])
    assert done.sum() > 100
    assert np.array_equal(gen[done], out[done])
    last = r.replicas.filter(pa.compute.equal(r.replicas.column("t_s"), s.horizon_s))
    assert int(pa.compute.sum(last.column("output_tokens")).as_py()) == int(gen.sum())
    # Both paths were used: some calls were disaggregated, some served by the unified pool.
    pools = set(calls["pool"])
    assert {"dec", "uni"} <= pools
    disaggregated = [p is not None for p in calls["prefill_pool"]]
    assert any(disaggregated) and not all(disaggregated)
    for row in r.pools.to_pylist():
        assert row["calls_usd"] + row["idle_usd"] == pytest.approx(row["provisioned_usd"], rel=1e-9)
    assert sum(calls["usd"]) == pytest.approx(sum(r.pools.column("calls_usd").to_pylist()), rel=1e-9)


def test_bad_disaggregated_clusters_are_rejected() -> None:
    base = {
        "workload": [{"profile": "chat"}],
        "cluster": {"pools": [{"name": "p", "role": "prefill", "deployment": {"model": MODEL, "hardware": HW}}]},
    }
    with pytest.raises(ValueError, match="needs a decode pool"):
        load_scenario(base)
    two_models = {
        "workload": [{"profile": "chat"}],
        "cluster": {
            "pools": [
                {"name": "p", "role": "prefill", "deployment": {"model": MODEL, "hardware": HW}},
                {"name": "d", "role": "decode", "deployment": {"model": "llama-3.3-70b", "hardware": "h200", "tp": 4}},
            ]
        },
    }
    with pytest.raises(ValueError, match="one model"):
        load_scenario(two_models)
