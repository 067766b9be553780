"""Capacity-planning speed: wall time of ``agentsim plan`` on the two questions of issue 17.

* ``llama``: 500 coding agents (the built-in default scenario with 500 agents: one simulated hour, 15 min
  warm-up), TTFT p99 <= 2 s, Llama-3.3-70B FP8 on H200 and B200, every TP (1, 2, 4, 8): 8 candidates.
  Target: <= 60 s on one core.
* ``deepseek``: 200 coding agents on DeepSeek-R1 FP8 over 8 x H200, TTFT p99 <= 10 s and TPOT p99 <= 0.1 s,
  with the MoE modes (tp, ep, ep + DP attention) and aggregated or disaggregated 1:1 and 1:3: 9 candidates.
  Target: <= 3 min.

Prints, per case, the wall time, the simulations run and the answer. ``--workers`` (default 1: one core).

Run: ``python benchmarks/bench_plan.py [llama|deepseek|all] [--workers N]``.
"""

from __future__ import annotations

import argparse
import time

import yaml

from agentsim.planning.plan import Space, plan
from agentsim.spec.load import example_text


def llama(workers: int) -> None:
    data = yaml.safe_load(example_text("default"))
    data["workload"][0]["arrivals"]["agents"] = 500
    _run("llama-3.3-70b, 500 agents", data, {"ttft_p99_s": 2.0},
         Space(hardware=["h200", "b200"], tp=[1, 2, 4, 8]), workers)  # fmt: skip


def deepseek(workers: int) -> None:
    data = {
        "name": "r1-agents", "seed": 3, "horizon_s": 1200, "warmup_s": 300, "sample_interval_s": 60,
        "workload": [{"profile": "coding-agent", "arrivals": {"kind": "closed", "agents": 200, "ramp_s": 60}}],
        "cluster": {"pools": [{"name": "gpu", "perf": {"kind": "roofline"}, "replicas": 1,
                               "deployment": {"model": "deepseek-r1", "hardware": "h200", "tp": 8,
                                              "precision": "fp8"}}],
                    "router": {"kind": "session-affinity"}},
    }  # fmt: skip
    _run("deepseek-r1, 200 agents", data, {"ttft_p99_s": 10.0, "tpot_p99_s": 0.1},
         Space(tp=[8], topology=["aggregated", "1:1", "1:3"]), workers)  # fmt: skip


def _run(name: str, data: dict[str, object], slos: dict[str, float], space: Space, workers: int) -> None:
    t0 = time.perf_counter()
    r = plan(data, slos, space=space, workers=workers)
    wall = time.perf_counter() - t0
    best = r.answer
    answer = "nothing meets" if best is None else f"{best.label} x{best.replicas} (${best.usd_per_hour:.4g}/h)"
    statuses = ", ".join(f"{s} {sum(row.status == s for row in r.rows)}" for s in ("meets", "marginal",
                                                                                 "infeasible", "skipped"))  # fmt: skip
    print(f"{name}: {wall:.1f} s wall, {r.simulations} simulations, {len(r.rows)} candidates ({statuses}); "
          f"answer {answer}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("case", nargs="?", default="all", choices=["llama", "deepseek", "all"])
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    if a.case in ("llama", "all"):
        llama(a.workers)
    if a.case in ("deepseek", "all"):
        deepseek(a.workers)


if __name__ == "__main__":
    main()
