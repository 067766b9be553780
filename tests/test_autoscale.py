"""Autoscaling: pools grow under load after a cold start, drain without losing calls, and cost what they were
provisioned for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest

from agentsim.api import load_scenario, run


def scenario(rate: float, replicas: int, horizon: float = 600.0, **autoscale: Any) -> Any:
    policy = {
        "metric": "utilization",
        "target": 0.6,
        "min_replicas": 1,
        "max_replicas": 6,
        "interval_s": 30,
        "cold_start_s": 20,
        **autoscale,
    }
    return load_scenario(
        {
            "seed": 5,
            "horizon_s": horizon,
            "sample_interval_s": 10,
            "workload": [{"profile": "chat", "arrivals": {"kind": "poisson", "rate_per_s": rate}}],
            "cluster": {
                "pools": [
                    {
                        "name": "gpu",
                        "replicas": replicas,
                        "autoscale": policy,
                        "deployment": {"model": "llama-3.1-8b", "hardware": "h100"},
                        "perf": {
                            "kind": "linear",
                            "alpha_s": 0.01,
                            "beta_s_per_prefill_token": 2e-5,
                            "delta_s_per_seq": 5e-4,
                        },
                    }
                ],
                "router": {"kind": "least-load"},
            },
        }
    )


def final_rows(r: Any, horizon: float) -> dict[str, list[Any]]:
    return dict(r.replicas.filter(pc.equal(r.replicas.column("t_s"), horizon)).to_pydict())


def test_light_load_drains_to_the_minimum_without_losing_calls() -> None:
    r = run(scenario(rate=0.3, replicas=4))
    last = final_rows(r, 600.0)
    assert last["state"].count("removed") == 3 and last["state"].count("active") == 1
    # Removed replicas stopped costing when they emptied.
    prov = dict(zip(last["replica"], last["provisioned_s"], strict=True))
    assert sum(p < 600.0 for p in prov.values()) == 3
    pool = r.pools.to_pylist()[0]
    assert pool["provisioned_usd"] == pytest.approx(sum(prov.values()) * 1.3 / 3600, rel=1e-9)
    assert pool["calls_usd"] + pool["idle_usd"] == pytest.approx(pool["provisioned_usd"], rel=1e-9)
    # No call was lost: every call either finished or is still running on a replica that was not removed.
    calls = r.calls.to_pydict()
    removed = {i for i, s in zip(last["replica"], last["state"], strict=True) if s == "removed"}
    for done, rep in zip(calls["done_s"], calls["replica"], strict=True):
        assert done is not None or rep not in removed
    # ... and a removed replica finished everything it had been given before its removal time.
    removed_at = {i: p for i, p in prov.items() if i in removed}
    for done, rep in zip(calls["done_s"], calls["replica"], strict=True):
        if rep in removed_at:
            assert done <= removed_at[rep] + 1e-9
    assert sum(calls["generated_tokens"]) == sum(last["output_tokens"])


def test_heavy_load_scales_up_after_the_cold_start() -> None:
    r = run(scenario(rate=6.0, replicas=1, cold_start_s=45))
    last = final_rows(r, 600.0)
    assert last["state"].count("active") >= 2
    rows = r.replicas.to_pydict()
    created = {}
    for t, i, prov in zip(rows["t_s"], rows["replica"], rows["provisioned_s"], strict=True):
        created.setdefault(i, t - prov)
    calls = r.calls.to_pydict()
    first_issue: dict[int, float] = {}
    for issue, rep in zip(calls["issue_s"], calls["replica"], strict=True):
        first_issue[rep] = min(issue, first_issue.get(rep, np.inf))
    served = [i for i in created if i != 0 and i in first_issue]
    assert served, "no scaled-up replica served a call"
    for i in served:
        # A new replica takes its first call only after the cold start.
        assert first_issue[i] >= created[i] + 45 - 1e-9
    assert "starting" in rows["state"]


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="within autoscale"):
        scenario(rate=1.0, replicas=9)
