"""The plan's analytic lower bound (``agentsim.planning.plan.bounds``): exact in the M/D/c case, and never above
the fewest replicas the simulation finds, on random open- and closed-loop scenarios."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from agentsim.planning.plan import Space
from agentsim.planning.plan import space as sp
from agentsim.planning.plan.bounds import lower_bound
from agentsim.planning.plan.confidence import estimate
from agentsim.planning.plan.search import evaluate
from agentsim.planning.plan.slo import parse_slo
from agentsim.resolve import resolve
from test_plan import D, md_scenario


def _bound(data: dict[str, Any], slos: dict[str, float]) -> int:
    (c,) = sp.candidates(data, [], Space(tp=[1]), {}, has_presets=False)
    return lower_bound(resolve(sp.validate(c, 1, "bound")), [0], [parse_slo(k, v) for k, v in slos.items()]).replicas


@pytest.mark.parametrize("rate", [5.0, 25.0, 45.0, 79.0])
def test_md_c_bound_is_floor_lambda_d_plus_one(rate: float) -> None:
    """One call per step of exactly ``D``: each replica serves at most ``1 / D`` calls per second, so fewer than
    ``lambda D`` replicas cannot keep up, and the bound is the first stable count."""
    assert _bound(md_scenario(rate), {"ttft_p50_s": 1.0}) == math.floor(rate * D) + 1


def _random_scenario(rng: np.random.Generator, closed: bool) -> tuple[dict[str, Any], dict[str, float]]:
    alpha = float(rng.uniform(0.002, 0.02))
    beta = float(rng.choice([0.0, rng.uniform(1e-6, 5e-5)]))
    gamma = float(rng.choice([0.0, rng.uniform(1e-9, 1e-8)]))
    delta = float(rng.choice([0.0, rng.uniform(1e-5, 5e-4)]))
    prompt, output = int(rng.integers(100, 2000)), int(rng.integers(1, 120))
    seqs = int(rng.choice([1, 4, 16, 64]))
    first = alpha + beta * prompt  # a lone call's prefill step
    step = alpha + delta + gamma * prompt
    pool = {"name": "p", "replicas": 1, "perf": {"kind": "linear", "alpha_s": alpha, "beta_s_per_prefill_token": beta,
            "gamma_s_per_context_token": gamma, "delta_s_per_seq": delta},
            "deployment": {"model": "llama-3.1-8b", "hardware": "h100", "tp": 1,
                           "engine": {"max_num_seqs": seqs, "max_batched_tokens": max(seqs, 8192),
                                      "kv_capacity_tokens": 10**9}}}  # fmt: skip
    profile = {"kind": "fixed", "prompt_tokens": {"kind": "constant", "value": prompt},
               "output_tokens": {"kind": "constant", "value": output}}  # fmt: skip
    if closed:
        arrivals: dict[str, Any] = {"kind": "closed", "agents": int(rng.integers(4, 200)), "ramp_s": 5.0}
        slos = {"ttft_p90_s": float(rng.uniform(3, 10) * first), "tpot_p90_s": float(rng.uniform(2, 5) * step)}
    else:
        work = max(output * alpha / seqs, (output - 1) * step / seqs)
        arrivals = {"kind": "poisson", "rate_per_s": float(rng.uniform(1.5, 12.0) / max(work, 1e-3))}
        slos = {"ttft_p90_s": float(min(5.0, rng.uniform(3, 10) * first))}
    data = {"name": "random", "seed": 0, "horizon_s": 300.0, "warmup_s": 30.0, "sample_interval_s": 300.0,
            "workload": [{"profile": profile, "arrivals": arrivals}],
            "cluster": {"pools": [pool], "router": {"kind": "least-load"}}}  # fmt: skip
    return data, slos


@pytest.mark.validation
@pytest.mark.parametrize("closed", [False, True])
def test_bound_never_exceeds_the_simulated_answer(closed: bool) -> None:
    """Random scenarios (linear step times, batch limits 1-64, prompts and outputs of all sizes, Poisson rates
    1.5-12 saturated replicas, or closed loops of 4-200 agents): one replica fewer than the bound misses the SLOs
    in the simulation, so the fewest replicas that meet them is at least the bound."""
    rng = np.random.default_rng(11 if closed else 7)
    checked = 0
    for _ in range(12):
        data, slos = _random_scenario(rng, closed)
        bound = _bound(data, slos)
        if bound < 2:
            continue
        data["cluster"]["pools"][0]["replicas"] = bound - 1
        runs = [evaluate(json.dumps(data), seed, list(slos.items()), data["horizon_s"]) for seed in (1, 2)]
        missed = []
        for k, target in slos.items():
            e = estimate(parse_slo(k, target), [r["samples"][k] for r in runs])
            missed.append(e.value is None or e.value > target)
        assert any(missed), (data, slos, bound)
        checked += 1
    assert checked >= 6  # the random cases exercise the bound
