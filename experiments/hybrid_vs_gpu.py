"""The hybrid blueprint (GPU prefill, RDU decode, CPU tools) against all-GPU clusters at the same SLO.

For each architecture the script searches the cheapest cluster (replica counts) whose calls meet the SLO
(``slo_attainment.calls >= --attainment``) for the same coding-agent workload, then compares what the
operator pays per million output tokens and per task, and the tokens delivered per MWh:

* ``gpu-unified``: B200 replicas that prefill and decode;
* ``gpu-disagg``: B200 prefill replicas + B200 decode replicas (xPyD); the search over the split also gives the
  best prefill:decode ratio for this workload;
* ``hybrid``: B200 prefill + SambaNova SN40L decode (vendor figures, estimated bandwidth: see the catalog).

Every architecture runs the same agents (same seed: agentsim's named random streams make the tasks identical
across clusters). Run: ``python experiments/hybrid_vs_gpu.py [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
from typing import Any

import yaml

import agentsim


def base(agents: int, horizon: float, warmup: float) -> dict[str, Any]:
    data = agentsim.api.validate_data(yaml.safe_load(agentsim.api.example_text("hybrid")), "hybrid").model_dump(
        mode="json"
    )
    data["horizon_s"] = horizon
    data["warmup_s"] = warmup
    data["workload"][0]["arrivals"]["agents"] = agents
    return data


def variant(data: dict[str, Any], arch: str, prefill: int, decode: int) -> agentsim.spec.Scenario:
    d = copy.deepcopy(data)
    pre, dec = d["cluster"]["pools"]
    if arch == "gpu-unified":
        pre.update(role="unified", replicas=prefill)
        d["cluster"]["pools"] = [pre]
    elif arch == "gpu-disagg":
        pre["replicas"] = prefill
        dec.update(replicas=decode, deployment={**pre["deployment"]}, perf={"kind": "roofline"})
    else:
        pre["replicas"] = prefill
        dec["replicas"] = decode
    return agentsim.load_scenario(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="toy scale (for CI)")
    ap.add_argument("--attainment", type=float, default=0.9)
    ap.add_argument("--workers", type=int, default=1, help="accepted for uniformity; runs are sequential")
    a = ap.parse_args()
    agents, horizon, warmup = (16, 400.0, 100.0) if a.quick else (64, 1200.0, 300.0)
    data = base(agents, horizon, warmup)
    grids = {
        "gpu-unified": [(n, 0) for n in range(1, 7)],
        "gpu-disagg": list(itertools.product(range(1, 4), range(1, 4))),
        "hybrid": list(itertools.product(range(1, 4), range(1, 5))),
    }
    if a.quick:
        grids = {"gpu-unified": [(1, 0), (2, 0)], "gpu-disagg": [(1, 1), (1, 2)], "hybrid": [(1, 1), (1, 2)]}
    print(f"{agents} coding agents, SLO: TTFT p99 <= 10 s and TPOT p99 <= 0.1 s per call, "
          f"attainment >= {a.attainment}")
    print(f"{'architecture':<12} {'P:D':>5} {'$/hour':>8} {'attain':>7} {'$/Mtok':>8} {'$/task':>8} "
          f"{'Mtok/MWh':>9} {'TTFT p99':>9} {'TPOT p99':>9}")
    best: dict[str, Any] = {}
    for arch, grid in grids.items():
        rows = []
        for p, d in grid:
            m = agentsim.simulate(variant(data, arch, p, d)).summary
            ok = (m["slo_attainment"]["calls"] or 0.0) >= a.attainment
            rows.append((m["usd_per_hour"], p, d, ok, m))
        for usd_h, p, d, ok, m in sorted(rows, key=lambda r: r[0]):
            mark = "*" if ok and arch not in best else " "
            if ok and arch not in best:
                best[arch] = (p, d, m)
            tpm = (m["tokens_per_mwh"] or 0) / 1e6
            print(f"{arch:<12} {p:>2}:{d:<2} {usd_h:>8.2f} {m['slo_attainment']['calls'] or 0:>7.3f} "
                  f"{m['usd_per_mtok_output'] or float('nan'):>8.2f} {m['usd_per_task'] or float('nan'):>8.3f} "
                  f"{tpm:>9.1f} {m['ttft_s']['p99'] or float('nan'):>9.2f} {m['tpot_s']['p99'] or float('nan'):>9.3f}"
                  f"{mark}")
    print("\n* = cheapest configuration of its architecture that meets the SLO")
    for arch, (p, d, m) in best.items():
        print(f"best {arch}: {p}:{d}, ${m['usd_per_mtok_output']:.2f}/Mtok output, "
              f"${m['usd_per_task'] or float('nan'):.3f}/task")


if __name__ == "__main__":
    main()
