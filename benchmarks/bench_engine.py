"""Engine speed: simulated LLM calls per wall-second and peak memory.

Three cases (design.md section 5 targets):

* ``single``: one replica at 80% load. Load is the closed-form continuous-batching utilisation
  ``rho = lambda [beta (i + o) + gamma (o + 1)(i + o/2)]`` of a linear step model (research.md section 4) with
  fixed prompt ``i`` and output ``o``: the fraction of step time spent on token work rather than the fixed
  per-step cost. Target: >= 100,000 calls per wall-second.
* ``cluster``: 64 replicas (Llama-3.1-8B FP8 on B200), 10,000 closed-loop coding agents, one simulated hour.
  Target: < 30 s on one core, peak memory < 2 GB. The agents' contexts (~156 per replica, ~42k tokens each) do
  not fit a B200's KV memory: the cluster thrashes and saturates (TTFT ~50 s) and the hour is ~340k calls, not
  the ~1.3M the target was sized for.
* ``offload`` (issue 15): the ``cluster`` case with a host-DRAM KV tier per replica (``kv_offload: on_evict``,
  the B200 catalog's host memory): evicted contexts are demoted and reloaded instead of recomputed.
* ``models`` (issue 15): 32 replicas of Llama-3.1-8B and 32 of Qwen3-8B; 5k coding agents on the first, 5k
  deep-research agents whose sub-agents call the second.
* ``volume``: the same, with KV room for those contexts (``VOLUME_KV_TOKENS`` per replica: a host-memory KV
  tier), so the cluster keeps up (TTFT ~0.1 s, 95% of prompt tokens cached) and the agents make ~660k calls in
  the hour: the regime the target describes. Same targets.

The first of ``--repeat`` runs also pays lazy imports and the memory growth of the process; the best run is the
steady state a sweep sees.

Run: ``python benchmarks/bench_engine.py [single|cluster|volume|offload|models|all] [--hours H] [--repeat N]``.
Prints one line per case (best of N runs), with how many modules ran compiled (``setup.py``; 0 = pure Python).
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import agentsim
from agentsim.api import run


def single_scenario(horizon_s: float) -> agentsim.spec.Scenario:
    i, o = 512, 64
    alpha, beta, gamma, delta = 0.005, 2e-6, 1e-8, 0.0
    per_call = beta * (i + o) + gamma * (o + 1) * (i + o / 2)
    rate = 0.8 / per_call
    return agentsim.load_scenario({
        "name": "bench-single",
        "seed": 1,
        "horizon_s": horizon_s,
        "workload": [{
            "profile": {"kind": "fixed", "prompt_tokens": {"kind": "constant", "value": i},
                        "output_tokens": {"kind": "constant", "value": o}},
            "arrivals": {"kind": "poisson", "rate_per_s": rate},
        }],
        "cluster": {"pools": [{
            "name": "p", "replicas": 1,
            "deployment": {"model": "llama-3.1-8b", "hardware": "h100",
                           "engine": {"max_num_seqs": 1024, "max_batched_tokens": 65536,
                                      "kv_capacity_tokens": 10**9}},
            "perf": {"kind": "linear", "alpha_s": alpha, "beta_s_per_prefill_token": beta,
                     "gamma_s_per_context_token": gamma, "delta_s_per_seq": delta},
        }]},
    })


def cluster_scenario(
    horizon_s: float,
    agents: int = 10_000,
    replicas: int = 64,
    kv_capacity_tokens: int | None = None,
    kv_offload: dict[str, Any] | None = None,
) -> agentsim.spec.Scenario:
    engine = {} if kv_capacity_tokens is None else {"kv_capacity_tokens": kv_capacity_tokens}
    pool: dict[str, Any] = {
        "name": "b200", "replicas": replicas,
        "deployment": {"model": "llama-3.1-8b", "hardware": "b200", "precision": "fp8", "engine": engine},
        "perf": {"kind": "roofline"},
    }
    if kv_offload is not None:
        pool["kv_offload"] = kv_offload
    return agentsim.load_scenario({
        "name": "bench-cluster",
        "seed": 1,
        "horizon_s": horizon_s,
        "sample_interval_s": 60,
        "workload": [{"profile": "coding-agent",
                      "arrivals": {"kind": "closed", "agents": agents, "ramp_s": 60}}],
        "cluster": {"pools": [pool], "router": {"kind": "session-affinity"}},
    })


def models_scenario(horizon_s: float, agents: int = 10_000, replicas: int = 64) -> agentsim.spec.Scenario:
    """Two models on half the replicas each: coding agents on Llama-3.1-8B, and deep-research tasks whose lead
    runs on Llama-3.1-8B and whose sub-agents run on Qwen3-8B (issue 15: routing per model)."""
    def pool(name: str, model: str) -> dict[str, Any]:
        return {"name": name, "replicas": replicas // 2, "perf": {"kind": "roofline"},
                "deployment": {"model": model, "hardware": "b200", "precision": "fp8"}}

    return agentsim.load_scenario({
        "name": "bench-models",
        "seed": 1,
        "horizon_s": horizon_s,
        "sample_interval_s": 60,
        "workload": [
            {"name": "coding", "profile": "coding-agent", "model": "llama-3.1-8b",
             "arrivals": {"kind": "closed", "agents": agents // 2, "ramp_s": 60}},
            {"name": "research", "profile": "deep-research", "model": "llama-3.1-8b",
             "overrides": {"fanout.model": "qwen3-8b"},
             "arrivals": {"kind": "closed", "agents": agents // 2, "ramp_s": 60}},
        ],
        "cluster": {"pools": [pool("llama", "llama-3.1-8b"), pool("qwen", "qwen3-8b")],
                    "router": {"kind": "session-affinity"}},
    })


VOLUME_KV_TOKENS = 12_000_000
"""KV tokens per replica in the ``volume`` case: room for the ~156 agents' contexts of ~42k tokens each (with a
B200's own ~2.8M tokens they thrash and the cluster saturates). 12M tokens of Llama-3.1-8B FP8 are ~770 GB: a
host-memory KV tier, not HBM. This is the call volume the issue sized its target for."""


def measure(name: str, s: agentsim.spec.Scenario, repeat: int = 1) -> dict[str, Any]:
    # Best of ``repeat``: a shared machine's noise only ever adds time.
    wall = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = run(s)
        wall = min(wall, time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    calls = r.calls.num_rows
    line = (f"{name}: {calls:,} calls in {wall:.2f} s wall = {calls / wall:,.0f} calls/s; "
            f"sim {s.horizon_s:g} s; peak RSS {peak_mb:,.0f} MB; "
            f"busy {r.summary['busy_fraction']:.2f}; steps skipped {r.summary['steps_skipped_fraction']:.2f}; "
            f"compiled modules {len(r.manifest['compiled_modules'])}")
    print(line, flush=True)
    return {"calls": calls, "wall_s": wall, "peak_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "case", nargs="?", default="all", choices=["single", "cluster", "volume", "offload", "models", "all"]
    )
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours for the cluster case")
    ap.add_argument("--single-s", type=float, default=600.0, help="simulated seconds for the single case")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the best wall time is reported")
    a = ap.parse_args()
    if a.case in ("single", "all"):
        measure("single replica, 80% load", single_scenario(a.single_s), a.repeat)
    if a.case in ("cluster", "all"):
        measure("64 replicas, 10k coding agents", cluster_scenario(a.hours * 3600), a.repeat)
    if a.case in ("volume", "all"):
        measure("64 replicas with room for the contexts, 10k coding agents",
                cluster_scenario(a.hours * 3600, kv_capacity_tokens=VOLUME_KV_TOKENS), a.repeat)
    if a.case in ("offload", "all"):
        measure("64 replicas with a host-DRAM KV tier (on_evict), 10k coding agents",
                cluster_scenario(a.hours * 3600, kv_offload={"policy": "on_evict"}), a.repeat)
    if a.case in ("models", "all"):
        measure("64 replicas, two models, 10k coding and research agents", models_scenario(a.hours * 3600),
                a.repeat)


if __name__ == "__main__":
    main()
