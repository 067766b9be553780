"""The default coding scenario with and without host-memory KV offload: the replicas each needs for the same TTFT.

For each setting (no offload; ``kv_offload: on_evict``; ``on_tool_wait``), the fewest H200 replicas whose TTFT
p99 meets the default workload's target (10 s), with $/task and the cache hit rate per tier at that count: the
numbers quoted in the built-in example ``offload``. Run: ``python experiments/offload_replicas.py [--max N]``.
"""

from __future__ import annotations

import argparse

import agentsim
from agentsim import api

TARGET_S = 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max", type=int, default=12, help="most replicas tried")
    a = ap.parse_args()
    base = agentsim.default_scenario()
    for label, offload in (("no offload", None), ("on_evict", "on_evict"), ("on_tool_wait", "on_tool_wait")):
        for n in range(1, a.max + 1):
            sets = [f"cluster.pools[0].replicas={n}"]
            if offload is not None:
                sets.append(f"cluster.pools[0].kv_offload={{policy: {offload}}}")
            s = agentsim.load_scenario(base, sets)
            m = api.run(s).summary
            p99 = m["ttft_s"]["p99"]
            if p99 is not None and p99 <= TARGET_S:
                t = m["cache_hit_rate_by_tier"]
                print(f"{label}: {n} replicas, TTFT p99 {p99:.2f} s, $/task {m['usd_per_task']:.3f}, $/hour "
                      f"{m['usd_per_hour']:.2f} (KV tiers {m['kv_tier_usd'] / m['window_s'] * 3600:.3f}), hit rate "
                      f"HBM {t['hbm']:.3f} DRAM {t['dram']:.3f}, tasks/h {m['tasks_per_hour']:.0f}", flush=True)
                break
        else:
            print(f"{label}: more than {a.max} replicas", flush=True)


if __name__ == "__main__":
    main()
