"""Compare the four routers on the built-in default scenario (coding agents on H200s): cache hit rate, cost and
latency.

Prefix caching makes routing matter: an agent's next step finds its whole previous prompt in the KV cache only
on the replica that served it. The routers are one ``agentsim.planning.sweep`` axis, with common random numbers (every
router sees the same tasks) and ``--replications`` seeds; each figure is a mean over the seeds, ± the 95%
confidence half-width when there are several.

Run: ``python experiments/router_comparison.py [--horizon 1800] [--replications 3] [--workers N]``;
``--quick`` runs a toy version (16 agents, 120 s) in seconds, as CI does.
"""

from __future__ import annotations

import argparse

import pyarrow as pa

import agentsim

ROUTERS = ["round-robin", "least-load", "session-affinity", "prefix-aware"]
COLUMNS = [  # (header, summary field, format)
    ("hit rate", "cache_hit_rate", ".3f"),
    ("ttft p50", "ttft_s.p50", ".3f"),
    ("ttft p99", "ttft_s.p99", ".3f"),
    ("tpot p99", "tpot_s.p99", ".4f"),
    ("tok/s", "output_tokens_per_s", ".0f"),
    ("$/Mtok out", "usd_per_mtok_output", ".2f"),
    ("$/Mtok proc", "usd_per_mtok_processed", ".3f"),
]


def cell(table: pa.Table, name: str, row: int, fmt: str) -> str:
    mean = table.column(name)[row].as_py()
    ci = table.column(f"{name}.ci95")[row].as_py()
    if mean is None:
        return "-"
    return f"{mean:{fmt}}" + (f"±{ci:{fmt}}" if ci is not None else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--horizon", type=float, default=1800.0)
    ap.add_argument("--warmup", type=float, default=300.0)
    ap.add_argument("--replications", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="local processes (default: all cores)")
    ap.add_argument("--quick", action="store_true", help="toy scale, for CI")
    a = ap.parse_args()
    overrides = [f"horizon_s={a.horizon}", f"warmup_s={a.warmup}"]
    if a.quick:
        overrides = ["horizon_s=120", "warmup_s=20", "workload[0].arrivals.agents=16", "workload[0].arrivals.ramp_s=10"]
    base = agentsim.load_scenario(agentsim.default_scenario(), overrides)
    t = agentsim.sweep(base, {"cluster.router.kind": ROUTERS}, replications=a.replications, workers=a.workers)
    width = 10 if a.replications == 1 else 18
    print(f"{'router':<18}" + "".join(f" {h:>{width}}" for h, _, _ in COLUMNS))
    for i, kind in enumerate(t.column("cluster.router.kind").to_pylist()):
        print(f"{kind:<18}" + "".join(f" {cell(t, name, i, fmt):>{width}}" for _, name, fmt in COLUMNS))


if __name__ == "__main__":
    main()
