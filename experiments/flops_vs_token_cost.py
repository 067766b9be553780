"""Ranking accelerators by FLOPS per dollar vs by simulated cost per delivered token: where they disagree, and why.

FLOPS per dollar is the catalog's dense peak TFLOPS (at the deployment's precision, FP8) over its $/GPU-hour.
Cost per delivered token is simulated: one replica of Llama-3.3-70B (FP8, roofline step times) saturated by a
closed loop of coding agents, for each GPU at each tensor-parallel size that fits, the best tp kept; $/Mtok of
output is the replica's $/hour over the tokens it generated. The agents have no tool time (each sends its next
call as soon as the last one ends) and their number is ``load`` times the coding-agent contexts (~70k tokens)
that fit the replica's KV cache, for each ``load`` in ``--loads`` (more agents than fit make the prefix cache
thrash, fewer leave batch slots empty): the best (tp, load) of each GPU is its cost per token at saturation.
Saturation is the most favourable case for a FLOPS ranking (every GPU is busy all the time, latency is
ignored); even so the two rankings disagree, because
agent decoding is bound by memory, not arithmetic: each decode step reads the weights and every running
sequence's KV cache once, so tokens/s follow HBM bandwidth, and the batch that shares each weight read is
bounded by the KV capacity left after the weights (coding-agent contexts average ~70k tokens).

The run is an ``agentsim.planning.sweep`` over (hardware, tp, agents) zipped, with ``--replications`` seeds per point.
TFLOPS/$ and TB/s/$ are per $/GPU-hour; KV Mtok is the replica's KV capacity.
Run: ``python experiments/flops_vs_token_cost.py [--loads 0.5,1,2] [--horizon 1200] [--workers N]``;
``--quick`` runs a toy version in seconds, as CI does.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from typing import Any

import agentsim
from agentsim.analysis.warnings import kv_short_of_window, pool_memory
from agentsim.catalog import load_catalog
from agentsim.errors import ScenarioError
from agentsim.planning.sweep import apply_values
from agentsim.resolve import resolve

HW = "cluster.pools[0].deployment.hardware"
TP = "cluster.pools[0].deployment.tp"
AGENTS = "workload[0].arrivals.agents"
CONTEXT_TOKENS = 70_000  # mean prompt of a coding-agent call (agentsim catalog, simulated: ~74k)


def base_scenario(agents: int, horizon: float, warmup: float) -> dict[str, Any]:
    return {
        "name": "flops-vs-token-cost",
        "seed": 3,
        "horizon_s": horizon,
        "warmup_s": warmup,
        "sample_interval_s": 30.0,
        "workload": [
            {
                "profile": "coding-agent",
                # No tool time: an agent sends its next call as soon as the last one ends, so the replica always
                # has as much work queued as its agents (the load then does not depend on tool latencies).
                "overrides": {"tool_s": {"kind": "constant", "value": 0.0}},
                "arrivals": {"kind": "closed", "agents": agents, "ramp_s": 30},
            }
        ],
        "cluster": {
            "pools": [
                {
                    "name": "pool",
                    "deployment": {"model": "llama-3.3-70b", "hardware": "h200", "tp": 1, "precision": "fp8"},
                    "perf": {"kind": "roofline"},
                    "replicas": 1,
                }
            ],
            "router": {"kind": "least-load"},
        },
        "pricing": {"kind": "rental", "tier": "rental_3y"},
    }


@dataclass
class Gpu:
    hardware: str
    tp: int
    usd_per_gpu_hour: float
    tflops_per_usd: float
    tb_s_per_usd: float
    kv_tokens: int
    kv_tokens_per_usd: float
    agents: int
    tokens_per_s: float = 0.0
    usd_per_mtok: float = 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", default="0.5,1,2", help="agents per coding context that fits the KV cache")
    ap.add_argument("--horizon", type=float, default=1200.0)
    ap.add_argument("--warmup", type=float, default=300.0)
    ap.add_argument("--tp", default="1,2,4,8")
    ap.add_argument("--hardware", default=None, help="comma-separated (default: every GPU with a catalog price)")
    ap.add_argument("--replications", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="local processes (default: all cores)")
    ap.add_argument("--quick", action="store_true", help="toy scale, for CI")
    a = ap.parse_args()
    if a.quick:
        a.loads, a.horizon, a.warmup, a.tp, a.replications = "1", 150.0, 30.0, "1,2", 1
        a.hardware = a.hardware or "h100,h200,b200,mi300x"

    catalog = load_catalog()
    base = agentsim.load_scenario(base_scenario(16, a.horizon, a.warmup))
    precision = base.cluster.pools[0].deployment.precision
    names = a.hardware.split(",") if a.hardware else [h for h in catalog.hardware if h in catalog.prices]
    tier = "rental_3y"

    # Every (hardware, tp) that can run: the model fits, its KV cache holds one full context (as vLLM requires at
    # start-up) and tp divides the scale-up domain.
    candidates: list[Gpu] = []
    loads = [float(x) for x in a.loads.split(",")]
    for hw_name, tp in itertools.product(names, [int(t) for t in a.tp.split(",")]):
        try:
            s = apply_values(base, {HW: hw_name, TP: tp})
            resolved = resolve(s, catalog)
        except ScenarioError:
            continue
        if kv_short_of_window([pool_memory(p) for p in resolved.pools]):
            continue  # vLLM refuses to start when its KV cache cannot hold one sequence of the model's context
        (pool_plan,) = resolved.plans
        hw = catalog.get_hardware(hw_name)
        price = catalog.get_price(hw_name).usd_per_hour(tier)
        kv = pool_plan.kv_capacity_tokens
        flops, bw = hw.dense_tflops(precision) / price, hw.hbm_tb_s / price
        for load in loads:
            agents = max(4, round(load * kv / CONTEXT_TOKENS))
            candidates.append(Gpu(hw_name, tp, price, flops, bw, kv, kv / (tp * price), agents))
    table = agentsim.sweep(
        base,
        {HW: [c.hardware for c in candidates], TP: [c.tp for c in candidates], AGENTS: [c.agents for c in candidates]},
        zip=True,
        replications=a.replications,
        workers=a.workers,
    )
    for c, tok, usd in zip(
        candidates,
        table.column("output_tokens_per_s").to_pylist(),
        table.column("usd_per_mtok_output").to_pylist(),
        strict=True,
    ):
        c.tokens_per_s, c.usd_per_mtok = tok, usd if usd is not None else float("inf")

    best: dict[str, Gpu] = {}
    for c in candidates:
        if c.hardware not in best or c.usd_per_mtok < best[c.hardware].usd_per_mtok:
            best[c.hardware] = c
    gpus = list(best.values())
    by_flops = sorted(gpus, key=lambda g: -g.tflops_per_usd)
    by_token = sorted(gpus, key=lambda g: g.usd_per_mtok)
    rank_f = {g.hardware: i + 1 for i, g in enumerate(by_flops)}
    rank_t = {g.hardware: i + 1 for i, g in enumerate(by_token)}

    print(f"Llama-3.3-70B {precision}, one replica saturated by coding agents without tool time, {a.horizon:g} s "
          f"({a.replications} replication(s)); best tp and agents ({a.loads} per KV context) per GPU")  # fmt: skip
    print(f"{'gpu':<8} {'tp':>3} {'$/GPU-h':>7} {'TFLOPS/$':>9} {'TB/s/$':>7} {'KV Mtok':>8} {'agents':>6} "
          f"{'tok/s':>7} {'$/Mtok':>7} {'rank FLOPS/$':>12} {'rank $/tok':>10}")  # fmt: skip
    for g in by_flops:
        print(
            f"{g.hardware:<8} {g.tp:>3} {g.usd_per_gpu_hour:>7.2f} {g.tflops_per_usd:>9.0f} {g.tb_s_per_usd:>7.2f} "
            f"{g.kv_tokens / 1e6:>8.2f} {g.agents:>6} {g.tokens_per_s:>7.0f} {g.usd_per_mtok:>7.2f} "
            f"{rank_f[g.hardware]:>12} {rank_t[g.hardware]:>10}"
        )

    print("\nwhere the rankings disagree (FLOPS per $ prefers the first, cost per token the second):")
    found = False
    for x, y in itertools.combinations(by_flops, 2):  # x ranks above y by FLOPS per $
        if rank_t[y.hardware] < rank_t[x.hardware]:
            found = True
            bw = y.tb_s_per_usd / x.tb_s_per_usd
            kv = y.kv_tokens_per_usd / x.kv_tokens_per_usd
            reasons = []
            if bw > 1:
                reasons.append(f"{bw:.2f}x the HBM bandwidth per $")
            if kv > 1:
                reasons.append(f"{kv:.2f}x the KV capacity per $ (larger batches share each weight read)")
            if not reasons:  # x leads on bandwidth and KV per $ as well: say what else differs
                reasons.append(
                    f"fewer GPUs per replica (tp {y.tp} vs {x.tp}: less tensor-parallel communication per step)"
                    if y.tp < x.tp
                    else f"more tokens/s per $/GPU-hour ({y.tokens_per_s / (y.tp * y.usd_per_gpu_hour):.0f} vs "
                    f"{x.tokens_per_s / (x.tp * x.usd_per_gpu_hour):.0f}) though neither bandwidth nor KV per $ says so"
                )
            why = " and ".join(reasons)
            print(
                f"  {x.hardware} has {x.tflops_per_usd / y.tflops_per_usd:.2f}x the FLOPS per $ of {y.hardware}, "
                f"but {y.hardware} delivers tokens {x.usd_per_mtok / y.usd_per_mtok:.2f}x cheaper: it has {why}."
            )
    if not found:
        print("  none at this scale")
    print(
        "\nDecode steps are memory-bound: each reads the weights and the KV of every running sequence once, so a\n"
        "GPU's tokens/s follow its HBM bandwidth and the batch its KV capacity allows, not its peak FLOPS."
    )


if __name__ == "__main__":
    main()
