"""Cost per million tokens and per task for coding agents on H100 vs H200 vs B200 vs MI300X at a fixed SLO.

For each GPU and tensor-parallel size, ``agentsim.planning.plan`` finds the fewest replicas of Llama-3.3-70B (FP8,
roofline step times) that serve an open-loop stream of coding-agent tasks within the SLO (p99 TTFT and p99
TPOT); the cheapest deployment of each GPU is then compared on $/hour, $/Mtok of output and $/task.

$/task is the steady-state cost of a task at this load: the cluster's $/hour divided by the tasks arriving per
hour (open loop: every task is served). It does not need tasks to finish inside the simulated window, which
coding tasks (tens of minutes of tool time) mostly do not.

Run: ``python experiments/gpu_comparison.py [--rate 0.05] [--horizon 1800] [--workers N]``;
``--quick`` runs a toy version (low load, short horizon, two tp sizes) in seconds, as CI does.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import agentsim
from agentsim.planning.plan import PlanRow, plan

GPUS = ["h100", "h200", "b200", "mi300x"]


def base_scenario(rate: float, horizon: float, warmup: float) -> dict[str, Any]:
    return {
        "name": "gpu-comparison",
        "seed": 1,
        "horizon_s": horizon,
        "warmup_s": warmup,
        "sample_interval_s": 30.0,
        "workload": [{"profile": "coding-agent", "arrivals": {"kind": "poisson", "rate_per_s": rate}}],
        "cluster": {
            "pools": [
                {
                    "name": "pool",
                    "deployment": {"model": "llama-3.3-70b", "hardware": "h200", "tp": 4, "precision": "fp8"},
                    "perf": {"kind": "roofline"},
                    "replicas": 1,
                }
            ],
            "router": {"kind": "prefix-aware"},
        },
        "pricing": {"kind": "rental", "tier": "rental_3y"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=0.05, help="coding tasks arriving per second")
    ap.add_argument("--horizon", type=float, default=1800.0)
    ap.add_argument("--warmup", type=float, default=300.0)
    ap.add_argument("--ttft-p99", type=float, default=5.0, help="SLO: p99 time to first token, s")
    ap.add_argument("--tpot-p99", type=float, default=0.1, help="SLO: p99 time per output token, s")
    ap.add_argument("--tp", default="1,2,4,8", help="tensor-parallel sizes to try")
    ap.add_argument("--replications", type=int, default=3)
    ap.add_argument("--max-replicas", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="local processes (default: all cores)")
    ap.add_argument("--quick", action="store_true", help="toy scale, for CI")
    a = ap.parse_args()
    if a.quick:
        a.rate, a.horizon, a.warmup, a.tp, a.replications, a.max_replicas = 0.01, 240.0, 60.0, "2,4", 2, 8

    base = agentsim.load_scenario(base_scenario(a.rate, a.horizon, a.warmup))
    slos = {"ttft_p99_s": a.ttft_p99, "tpot_p99_s": a.tpot_p99}
    result = plan(
        base,
        slos,
        hardware=GPUS,
        tp=[int(t) for t in a.tp.split(",")],
        replications=a.replications,
        max_replicas=a.max_replicas,
        prune=False,  # every GPU's own cheapest deployment, not only the overall answer
        workers=a.workers,
    )
    tasks_per_hour = a.rate * 3600.0
    best: dict[str, PlanRow] = {}
    for row in result.rows:  # ranked by $/hour: the first ok row of a GPU is its cheapest deployment
        if row.status == "meets" and row.hardware not in best:
            best[row.hardware] = row

    print(f"coding agents, {a.rate:g} tasks/s, Llama-3.3-70B FP8; SLO p99 TTFT <= {a.ttft_p99:g} s, "
          f"p99 TPOT <= {a.tpot_p99:g} s; {a.replications} replication(s) of {a.horizon:g} s")  # fmt: skip
    print(f"{'gpu':<8} {'tp':>3} {'replicas':>8} {'GPUs':>5} {'$/hour':>8} {'$/Mtok out':>10} {'$/task':>8} "
          f"{'ttft p99':>9} {'tpot p99':>9}")  # fmt: skip
    for gpu in GPUS:
        row = best.get(gpu)
        if row is None:
            why = "; ".join(sorted({r.reason or r.status for r in result.rows if r.hardware == gpu}))
            print(f"{gpu:<8} no deployment meets the SLO: {why}")
            continue
        usd_task = (row.usd_per_hour or math.nan) / tasks_per_hour

        def f(x: float | None, spec: str) -> str:
            return format(math.nan if x is None else x, spec)

        print(
            f"{gpu:<8} {row.tp:>3} {row.replicas:>8} {row.gpus:>5} {f(row.usd_per_hour, '>8.2f')} "
            f"{f(row.usd_per_mtok_output, '>10.2f')} {usd_task:>8.3f} {f(row.stats['ttft_p99_s'], '>9.3f')} "
            f"{f(row.stats['tpot_p99_s'], '>9.4f')}"
        )
    skipped = [r for r in result.rows if r.status == "skipped"]
    if skipped:
        print("skipped: " + "; ".join(f"{r.hardware} tp={r.tp} ({r.reason})" for r in skipped))


if __name__ == "__main__":
    main()
