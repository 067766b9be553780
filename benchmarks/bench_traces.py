"""Trace speed: importing a real trace, generating a million calls, reading them back.

Cases (issue 3 targets):

* ``import``: ``agentsim trace import mooncake conversation_trace.jsonl`` (12,031 calls). Target: < 2 s.
* ``generate``: 1,000,000 calls from a profile written to Parquet (``coding-agent``, ``chat``, and a fixed
  single-call profile fitted to the Mooncake trace). Target: < 10 s each.
* ``read``: ``read_trace`` over the generated coding-agent trace (the replay path), for reference.
* ``stats``: ``trace_stats`` over the same trace, for reference.

Run: ``python benchmarks/bench_traces.py [import|generate|read|all] [--calls N]``. Prints one line per case.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from agentsim.spec import AgentProfile, FixedProfile, Poisson
from agentsim.traces.fit import fit_profile
from agentsim.traces.generate import generate_trace
from agentsim.traces.importers import import_trace
from agentsim.traces.io import read_trace
from agentsim.traces.stats import trace_stats
from agentsim.workload.profiles import TaskFactory, builtin_profiles

MOONCAKE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "mooncake" / "conversation_trace.jsonl"


def _mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_import(tmp: Path) -> Path:
    out = tmp / "kimi.parquet"
    t = time.perf_counter()
    r = import_trace("mooncake", MOONCAKE, out, overwrite=True)
    dt = time.perf_counter() - t
    print(f"import   mooncake conversation: {r.calls:,} calls in {dt:.2f} s  (target < 2 s)  peak {_mb():.0f} MB")
    return out


def _tasks_for(name: str, calls: int) -> int:
    """Tasks whose expected number of calls is ``calls`` (estimated from a sample of the profile)."""
    import numpy as np

    f = TaskFactory(builtin_profiles()[name], name, np.random.default_rng(0))
    sample = [len(f.next().calls) for _ in range(2000)]
    return max(1, round(calls / (sum(sample) / len(sample))))


def bench_generate(tmp: Path, calls: int, kimi: Path | None) -> Path:
    """Generate ~``calls`` calls from each case; returns the coding-agent trace (for the read case)."""
    cases: list[tuple[str, AgentProfile | FixedProfile, int]] = [
        (n, builtin_profiles()[n], _tasks_for(n, calls)) for n in ("coding-agent", "chat")
    ]
    if kimi is not None:
        cases.append(("kimi-fit", fit_profile(kimi).profile, calls))
    for name, profile, tasks in cases:
        path = tmp / f"gen-{name}.parquet"
        t = time.perf_counter()
        n = generate_trace(path, profile, tasks, arrivals=Poisson(rate_per_s=1.0), seed=1, workload=name)
        dt = time.perf_counter() - t
        print(
            f"generate {name}: {n:,} calls ({tasks:,} tasks) in {dt:.2f} s = {n / dt:,.0f} calls/s  (target 1M < 10 s)"
        )
    return tmp / "gen-coding-agent.parquet"


def bench_read(path: Path) -> None:
    t = time.perf_counter()
    n = sum(len(task.call_ids) for task in read_trace(path))
    dt = time.perf_counter() - t
    print(f"read     {n:,} calls in {dt:.2f} s = {n / dt:,.0f} calls/s")
    t = time.perf_counter()
    trace_stats(path)
    print(f"stats    {n:,} calls in {time.perf_counter() - t:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", default="all", choices=["import", "generate", "read", "all"])
    ap.add_argument("--calls", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        kimi = bench_import(tmp) if args.case in ("import", "generate", "all") and MOONCAKE.exists() else None
        if args.case in ("generate", "read", "all"):
            gen = bench_generate(tmp, args.calls, kimi)
            if args.case in ("read", "all"):
                bench_read(gen)


if __name__ == "__main__":
    main()
