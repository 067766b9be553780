"""Memory: a run holds what is live, not what it has done (issue 16 part 3).

Three cases, each run in a fresh process whose peak resident memory (``ru_maxrss``) is reported:

* ``replay``: a trace of ``--calls`` single-call tasks (fixed prompt 512, output 64; default 10M) replayed
  open-loop on ``--replay-replicas`` replicas of a linear step model at ~80% load. Target: below 1 GB peak.
* ``agents``: ``--replicas`` replicas (default 256; Llama-3.1-8B FP8 on B200, roofline) serving a closed loop
  of ``--agents-per-replica`` coding agents each for ``--hours`` simulated hours (default 12). Target: below
  1 GB peak.
* ``doubling``: the agent case on ``--double-replicas`` replicas with ``--double-agents-per-replica`` agents
  each (default 8: a steady state, where the tasks in flight stop growing within the first hour) for
  ``--double-hours`` simulated hours, then twice and four times that: peak memory should be flat, so the growth
  per simulated hour between one length and the next (MB per simulated hour) should be near zero.

Every size is a parameter. The preflight estimate (``agentsim.preflight``) is printed beside each measurement.

Measured on a shared 2-core machine (Dec 2026, compiled build, main at ea04e50): the 10M-call replay (5.3
simulated hours) peaks at 458 MB, 128 s wall plus 5 s to write the trace (979 MB before the end of the run was
streamed); the 12-hour, 256-replica run (10,240 coding agents; the cluster saturates, 7.0M calls) at 622 MB,
104 s wall (887 MB before). Doubling (64 replicas x 8 agents): 256, 261, 271 MB at 2, 4 and 8 simulated hours,
+2.4 MB per simulated hour at 170k calls per hour (14 bytes a call; +22 MB per hour before, when the summary read
whole columns); at 122b219 (task rows with their record time) 259, 263, 266 MB: +1.9, +0.8 MB per hour.
What a run holds: the engine's live state (the tasks in flight and their chains of calls, which
the prefix lookups walk: bounded by agents x steps per task, flat once the task population is steady; in a
saturated run, whose tasks take hours, it grows until then, so the saturated doubling from 0.25 h still rises
+65, +28 MB per simulated hour), the prefix caches (bounded by their capacity), a row group of each table being
read, the order statistics' arrays (at most ``agentsim.analysis.order.CAP`` values each), the sums of the tasks
in flight (``agentsim.analysis.task_sums``) and the replica samples' columns the summary reads.

Run: ``python benchmarks/bench_memory.py [replay|agents|doubling|all] [--calls N] [--hours H] ...``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import agentsim
from agentsim import preflight
from agentsim.api import run
from agentsim.resolve import resolve

PROMPT, OUTPUT = 512, 64
ALPHA, BETA, GAMMA = 0.005, 2e-6, 1e-8
PER_CALL_S = BETA * (PROMPT + OUTPUT) + GAMMA * (OUTPUT + 1) * (PROMPT + OUTPUT / 2)
"""Token work of one call on the linear model (bench_engine's single case): 80% load is ``0.8 / PER_CALL_S``."""


REPLAY_KV_TOKENS = 2_000_000
"""KV tokens per replica in the replay: an H200's worth. The prefix cache keeps every prompt it has room for
(simulated state, bounded by this capacity): with bench_engine's 10**9 tokens it would keep a node for each of
the trace's calls, ~200 bytes apiece."""


def replay_scenario(trace: Path, horizon_s: float, replicas: int) -> agentsim.spec.Scenario:
    return agentsim.load_scenario({
        "name": "bench-memory-replay", "seed": 1, "horizon_s": horizon_s, "sample_interval_s": 60,
        "workload": [{"kind": "trace", "path": str(trace), "mode": "open"}],
        "cluster": {"pools": [{
            "name": "p", "replicas": replicas,
            "deployment": {"model": "llama-3.1-8b", "hardware": "h100",
                           "engine": {"max_num_seqs": 1024, "max_batched_tokens": 65536,
                                      "kv_capacity_tokens": REPLAY_KV_TOKENS}},
            "perf": {"kind": "linear", "alpha_s": ALPHA, "beta_s_per_prefill_token": BETA,
                     "gamma_s_per_context_token": GAMMA, "delta_s_per_seq": 0.0},
        }]},
    })  # fmt: skip


def agents_scenario(hours: float, replicas: int, agents_per_replica: int) -> agentsim.spec.Scenario:
    return agentsim.load_scenario({
        "name": "bench-memory-agents", "seed": 1, "horizon_s": hours * 3600, "sample_interval_s": 60,
        "workload": [{"profile": "coding-agent",
                      "arrivals": {"kind": "closed", "agents": agents_per_replica * replicas, "ramp_s": 60}}],
        "cluster": {"pools": [{
            "name": "b200", "replicas": replicas,
            "deployment": {"model": "llama-3.1-8b", "hardware": "b200", "precision": "fp8"},
            "perf": {"kind": "roofline"},
        }], "router": {"kind": "session-affinity"}},
    })  # fmt: skip


def child(case: str, args: dict[str, Any]) -> None:
    """In a fresh process: run one case and print its figures as JSON."""
    if case == "replay":
        rate = 0.8 / PER_CALL_S * args["replicas"]
        trace = Path(args["dir"]) / "trace.parquet"
        t0 = time.perf_counter()
        profile = agentsim.spec.FixedProfile.model_validate({
            "prompt_tokens": {"kind": "constant", "value": PROMPT},
            "output_tokens": {"kind": "constant", "value": OUTPUT},
        })  # fmt: skip
        from agentsim.traces.generate import generate_trace

        generate_trace(trace, profile, args["calls"], arrivals=agentsim.spec.Poisson(rate_per_s=rate), seed=1)
        gen_s = time.perf_counter() - t0
        # the horizon covers the trace's last arrival (calls / rate) with 1% to spare
        s = replay_scenario(trace, args["calls"] / rate * 1.01, args["replicas"])
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:
        s = agents_scenario(args["hours"], args["replicas"], args["agents_per_replica"])
        gen_s = 0.0
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    est = preflight.estimate(resolve(s))
    t0 = time.perf_counter()
    r = run(s, workdir=args["dir"], max_memory_mb=0)
    wall = time.perf_counter() - t0
    out = {
        "calls": r.manifest["calls"], "sim_h": s.horizon_s / 3600, "wall_s": wall, "gen_s": gen_s,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_before_mb": peak_before,
        "estimate_mb": est.memory_mb, "estimate_calls": est.calls,
    }  # fmt: skip
    print(json.dumps(out), flush=True)


def measure(case: str, **args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as d:
        cmd = [sys.executable, __file__, "_child", case, json.dumps({**args, "dir": d})]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return figures


def line(label: str, f: dict[str, Any]) -> str:
    return (
        f"{label}: {f['calls']:,} calls, {f['sim_h']:.2f} h simulated, {f['wall_s']:.0f} s wall; "
        f"peak RSS {f['peak_mb']:,.0f} MB (estimated {f['estimate_mb']:,.0f} MB for ~{f['estimate_calls']:,.0f} "
        f"calls; {f['peak_before_mb']:,.0f} MB before the run)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", nargs="?", default="all", choices=["replay", "agents", "doubling", "all"])
    ap.add_argument("--calls", type=int, default=10_000_000, help="calls in the replayed trace")
    ap.add_argument("--replay-replicas", type=int, default=1, help="replicas serving the replay")
    ap.add_argument("--hours", type=float, default=12.0, help="simulated hours of the agent case")
    ap.add_argument("--replicas", type=int, default=256, help="replicas of the agent case")
    ap.add_argument("--agents-per-replica", type=int, default=40, help="closed-loop coding agents per replica")
    ap.add_argument("--double-hours", type=float, default=2.0, help="first length of the doubling case")
    ap.add_argument("--double-replicas", type=int, default=64, help="replicas of the doubling case")
    ap.add_argument("--double-agents-per-replica", type=int, default=8, help="agents per replica, doubling case")
    a = ap.parse_args()
    if a.case in ("replay", "all"):
        f = measure("replay", calls=a.calls, replicas=a.replay_replicas)
        print(line(f"replay of {a.calls:,} calls", f) + f"; trace written in {f['gen_s']:.0f} s", flush=True)
    if a.case in ("agents", "all"):
        f = measure("agents", hours=a.hours, replicas=a.replicas, agents_per_replica=a.agents_per_replica)
        print(line(f"{a.replicas} replicas, coding agents, {a.hours:g} h", f), flush=True)
    if a.case in ("doubling", "all"):
        prev: dict[str, Any] | None = None
        for k in range(3):
            hours = a.double_hours * 2**k
            f = measure(
                "agents", hours=hours, replicas=a.double_replicas, agents_per_replica=a.double_agents_per_replica
            )
            growth = "" if prev is None else (
                f"; {(f['peak_mb'] - prev['peak_mb']) / (hours - prev['sim_h']):+.1f} MB per simulated hour "
                f"since {prev['sim_h']:g} h"
            )  # fmt: skip
            print(line(f"{a.double_replicas} replicas, {hours:g} h", f) + growth, flush=True)
            prev = f


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], json.loads(sys.argv[3]))
    else:
        main()
