"""Compare the four routers on the built-in default scenario (coding agents on H200s).

Prefix caching makes routing matter: an agent's next step finds its whole previous prompt in the KV cache only
on the replica that served it. Run: ``python experiments/router_comparison.py [--horizon 1800]``.
"""

from __future__ import annotations

import argparse

import agentsim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--horizon", type=float, default=1800.0)
    ap.add_argument("--warmup", type=float, default=300.0)
    a = ap.parse_args()
    print(f"{'router':<18} {'hit rate':>8} {'ttft p50':>9} {'ttft p99':>9} {'tok/s':>8} {'$/Mtok out':>10}")
    for kind in ("round-robin", "least-load", "session-affinity", "prefix-aware"):
        s = agentsim.load_scenario(
            agentsim.default_scenario(),
            [f"cluster.router.kind={kind}", f"horizon_s={a.horizon}", f"warmup_s={a.warmup}"],
        )
        m = agentsim.simulate(s).summary
        print(
            f"{kind:<18} {m['cache_hit_rate']:>8.3f} {m['ttft_s']['p50']:>9.3f} {m['ttft_s']['p99']:>9.3f} "
            f"{m['output_tokens_per_s']:>8.0f} {m['usd_per_mtok_output']:>10.2f}"
        )


if __name__ == "__main__":
    main()
