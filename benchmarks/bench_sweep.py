"""Sweep scaling: a 16-point sweep with 1 worker (inline) vs 2 worker processes.

The points cross 4 replica counts with the 4 routers on the built-in default scenario, cut so that one run
takes ~1 s (``--agents``, ``--horizon``). Target (issue 5): 2 workers finish in <= 0.65x the wall time of
one. The 2-worker time includes starting the process pool. Each configuration writes to a fresh directory, so
nothing is resumed.

Run: ``python benchmarks/bench_sweep.py [--agents 48] [--horizon 600]``. Prints the two wall times and the ratio.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import agentsim

AXES = {
    "cluster.pools[0].replicas": [1, 2, 3, 4],
    "cluster.router.kind": ["round-robin", "least-load", "session-affinity", "prefix-aware"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, default=48)
    ap.add_argument("--horizon", type=float, default=600.0)
    a = ap.parse_args()
    base = agentsim.load_scenario(
        agentsim.default_scenario(),
        [f"horizon_s={a.horizon}", f"warmup_s={a.horizon / 6}", f"workload[0].arrivals.agents={a.agents}",
         "workload[0].arrivals.ramp_s=30"],
    )  # fmt: skip
    walls: dict[int, float] = {}
    tables = {}
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
          if Path("/proc/loadavg").exists() else "", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            cpu0 = _cpu()
            t0 = time.perf_counter()
            tables[workers] = agentsim.sweep(base, AXES, workers=workers, out=Path(tmp) / f"w{workers}")
            walls[workers] = time.perf_counter() - t0
            cpu = _cpu() - cpu0
            # cpu/wall is the number of cores the sweep actually got: ~1 and ~2 on an otherwise idle machine.
            print(f"{workers} worker(s): {walls[workers]:.2f} s wall for 16 points, {cpu:.2f} s CPU "
                  f"({cpu / walls[workers]:.2f} cores busy)", flush=True)  # fmt: skip
    assert tables[1].equals(tables[2]), "the two sweeps must give identical tables"
    ratio = walls[2] / walls[1]
    print(f"ratio 2/1 workers: {ratio:.3f} (target <= 0.65): {'ok' if ratio <= 0.65 else 'MISSED'}")


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the pool's workers, once it is shut down)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
