"""Pre-flight: how many rows a run will write, how much memory and disk it will need, before it starts.

A run streams its calls, tasks and replica samples to Parquet files as they finish (:mod:`agentsim.spill`), so
what it holds is what is live: the interpreter and its libraries, the replicas (their queues and prefix
caches, whose nodes live until evicted: up to the KV capacity), the tasks in flight with their calls, and at
the end the summary, which reads the files a row group at a time and holds a bounded number of values at once
(:mod:`agentsim.analysis.order`), plus the replica samples' columns. What grows with the run's length is the
files on disk. :func:`estimate` adds these up from the scenario alone, with expected values (the rate times
the horizon, the mean steps of a profile, a trace file's row count): an order of magnitude, meant to stop a run
that cannot fit (a million replicas, ten million agents, ``horizon_s: 1e9`` on a disk of a few hundred GB)
before it takes the machine's memory or fills its disk, not to predict the peak to the megabyte. The per-item
costs below were measured with ``benchmarks/bench_memory.py`` and rounded up.

:func:`check` refuses a run whose memory estimate is above a limit (:class:`MemoryLimitError`, a
:class:`~agentsim.errors.ScenarioError`: exit 2 on the command line) with the numbers and what to change. The
default limit, :func:`default_limit_mb`, is half of the machine's physical memory. :func:`check_disk` refuses a
run whose tables would not fit the free space where they are written (:class:`DiskSpaceError`).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agentsim import spec
from agentsim.errors import ScenarioError
from agentsim.resolve import Resolved
from agentsim.workload.distributions import mean

MB = 1 << 20

BASE_MB = 320.0
"""The interpreter, numpy, pyarrow (and pandas, which pyarrow loads), scipy, the engine's setup and the spill
writers' buffers (the 10M-call replay of ``bench_memory.py``, whose run has nothing else to hold, peaks near
400 MB with the summary)."""
REPLICA_BYTES = 64 * 1024
"""One replica: its scheduler state, prefix-cache index and sample rows in the writer's buffer."""
LIVE_CALL_BYTES = 1024
"""One call of a task in flight (its template, its record, its prefix-cache node)."""
CACHE_NODE_BYTES = 256
"""A prefix-cache node (and the finished call it may keep alive) until the cache evicts it."""
CACHE_NODE_TOKENS = 512
"""Tokens per cache node at the least, for the most nodes a replica's KV capacity can hold."""
SUMMARY_MB = 80.0
"""The end of a run, whatever its length: a row group of the call file read at a time, the order statistics'
arrays (at most :data:`agentsim.analysis.order.CAP` values each) and the task sums of the tasks in flight."""
SAMPLE_BYTES = 128
"""One replica sample row, at the summary (which reads the samples' columns whole)."""
DISK_CALL_BYTES = 128
"""One call row on disk (73 bytes measured, zstd) and the summary's temporary files for a distribution past
:data:`agentsim.analysis.order.CAP` values (a spool and a scatter file, 8 bytes a value each; a lower-bound
percentile and nested splits up to 32 at once)."""
DISK_TASK_BYTES = 64
"""One task row on disk (47 bytes measured)."""
DISK_SAMPLE_BYTES = 16
"""One replica sample row on disk (5 bytes measured: the counters compress well)."""
TOKEN_S = 0.01
"""Seconds per output token of a call, to bound how fast a closed loop of agents goes round: 100 tokens/s per
stream, a fast decode (faster calls: more tasks). A saturated cluster is slower, so the estimate is high then."""
MIN_CALL_S = 0.1
"""A call's least duration in that bound (prefill, queueing, the network)."""
SHARE = 0.5
"""The default limit's share of the machine's physical memory."""


class PreflightError(ScenarioError):
    """A run refused before it starts for its size (not for a field of its scenario): the message gives the
    estimate, the room there is and what to change."""

    def __init__(self, message: str) -> None:
        self.errors = [("", message)]
        self.source = "scenario"
        ValueError.__init__(self, message)


class MemoryLimitError(PreflightError):
    """A run whose estimated memory is above the limit."""


class DiskSpaceError(PreflightError):
    """A run whose tables would not fit the free disk space where they are written."""


@dataclass(frozen=True)
class Estimate:
    """A run's expected size: calls, tasks, replica samples (the rows it writes; ``events``, their sum), the
    tasks in flight at once, the replicas, the estimated peak memory in MB and the tables' size on disk in MB."""

    calls: float
    tasks: float
    samples: float
    live_tasks: float
    replicas: int
    memory_mb: float
    disk_mb: float

    @property
    def events(self) -> float:
        return self.calls + self.tasks + self.samples


def physical_memory_mb() -> float | None:
    """The machine's physical memory in MB (``os.sysconf``, else ``/proc/meminfo``; None if neither says)."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return float(pages) * size / MB
    except (AttributeError, ValueError, OSError):
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_limit_mb() -> float | None:
    """The default ``--max-memory``: :data:`SHARE` of the physical memory (None, no limit, if unknown)."""
    total = physical_memory_mb()
    return None if total is None else SHARE * total


def _calls_per_task(profile: spec.AgentProfile | spec.FixedProfile) -> tuple[float, float]:
    """Mean calls per task and mean seconds per step: a call at :data:`TOKEN_S` per output token, then the gap
    before the next one (tool or think time)."""
    call_s = max(MIN_CALL_S, TOKEN_S * mean(profile.output_tokens))
    if isinstance(profile, spec.FixedProfile):
        return 1.0, call_s
    calls = max(1.0, mean(profile.steps))
    if profile.fanout is not None:
        calls += mean(profile.fanout.subagents) * calls / 2  # sub-agent chains of about half the task's length
    return calls, call_s + mean(profile.tool_s)


def _trace_calls(path: str) -> float:
    try:
        from agentsim.traces.io import read_trace_meta

        return float(read_trace_meta(path).rows)
    except Exception:  # the run itself reports a bad trace, with its reasons
        return 0.0


def estimate(resolved: Resolved, *, replicas: int | None = None) -> Estimate:
    """The expected calls, tasks, replica samples, tasks in flight and peak memory of ``resolved``'s run
    (with ``replicas`` replicas in all instead of its pools', for a plan's largest count)."""
    s = resolved.scenario
    horizon = s.horizon_s
    calls = tasks = live = 0.0
    for w in resolved.workloads:
        spec_w = w.workload
        if isinstance(spec_w, spec.TraceWorkload) or w.profile is None:
            rows = _trace_calls(spec_w.path) if isinstance(spec_w, spec.TraceWorkload) else 0.0
            calls += rows
            tasks += rows  # at most one task per call
            continue
        per_task, step_s = _calls_per_task(w.profile)
        a = spec_w.arrivals
        task_s = per_task * step_s
        if isinstance(a, spec.Closed):
            n = a.agents * horizon / (task_s + mean(a.think_s))
            in_flight = float(a.agents)
        else:
            n = a.rate_per_s * horizon
            in_flight = a.rate_per_s * task_s
        if spec_w.max_tasks is not None:
            n = min(n, float(spec_w.max_tasks))
        tasks += n
        calls += n * per_task
        live += min(in_flight, n) * per_task
    # an autoscaled pool counted at its most replicas
    if replicas is None:
        replicas = sum(p.replicas if p.autoscale is None else p.autoscale.max_replicas for p in s.cluster.pools)
    samples = replicas * math.ceil(horizon / s.sample_interval_s)
    # The prefix cache keeps prompts until it needs the room: at most a node per call, or its capacity's worth.
    per_replica = {p.plan.spec.name: p.plan.kv_capacity_tokens / CACHE_NODE_TOKENS for p in resolved.pools}
    room = sum(per_replica.get(p.name, 0.0) * (p.replicas if p.autoscale is None else p.autoscale.max_replicas)
               for p in s.cluster.pools)  # fmt: skip
    nodes = min(calls, room)
    memory = (
        (BASE_MB + SUMMARY_MB) * MB
        + replicas * REPLICA_BYTES
        + live * LIVE_CALL_BYTES
        + nodes * CACHE_NODE_BYTES
        + samples * SAMPLE_BYTES
    )
    disk = calls * DISK_CALL_BYTES + tasks * DISK_TASK_BYTES + samples * DISK_SAMPLE_BYTES
    return Estimate(calls, tasks, float(samples), live, replicas, memory / MB, disk / MB)


def check(resolved: Resolved, limit_mb: float | None) -> Estimate:
    """:func:`estimate`, and :class:`MemoryLimitError` if it is above ``limit_mb`` (None or 0: no limit)."""
    return check_many([resolved], limit_mb, 1)


def check_many(runs: Iterable[Resolved], limit_mb: float | None, at_once: int) -> Estimate:
    """The largest :func:`estimate` of ``runs`` (a sweep's points, a plan's candidates), and
    :class:`MemoryLimitError` if ``at_once`` runs of that size (parallel workers) are above ``limit_mb``."""
    return check_estimates([estimate(r) for r in runs], limit_mb, at_once)


def check_estimates(estimates: Iterable[Estimate], limit_mb: float | None, at_once: int) -> Estimate:
    """:func:`check_many` of estimates already made."""
    worst = max(estimates, key=lambda e: e.memory_mb)
    if limit_mb and worst.memory_mb * at_once > limit_mb:
        raise MemoryLimitError(refusal(worst, limit_mb, at_once))
    return worst


def refusal(e: Estimate, limit_mb: float, runs: int = 1) -> str:
    """The message of a refusal: the estimate against the limit, its parts, and what to change."""
    each = f" each, {runs} at once" if runs > 1 else ""
    return (
        f"estimated peak memory {e.memory_mb * runs:,.0f} MB is above --max-memory {limit_mb:,.0f} MB "
        f"(~{e.calls:,.0f} calls, ~{e.tasks:,.0f} tasks, ~{e.live_tasks:,.0f} calls in flight, "
        f"{e.replicas:,} replicas{each}); shorten horizon_s, lower the arrival rate, agents or replicas"
        + (", or run fewer at once (--workers)" if runs > 1 else "")
        + ", or raise --max-memory (0: no limit)"
    )


def check_disk(e: Estimate, where: Path) -> Estimate:
    """``e`` (a run's :func:`estimate`), and :class:`DiskSpaceError` if its tables would not fit the free space of
    the file system holding ``where`` (the directory the run's files are written in)."""
    try:
        free = shutil.disk_usage(where).free / MB
    except OSError:  # not there yet, or not ours to ask: the writes themselves will say
        return e
    if e.disk_mb > free:
        raise DiskSpaceError(
            f"the run's tables would take ~{e.disk_mb:,.0f} MB on disk (~{e.calls:,.0f} calls, ~{e.tasks:,.0f} "
            f"tasks, ~{e.samples:,.0f} replica samples) and {free:,.0f} MB are free in {where}; shorten horizon_s, "
            "lower the arrival rate or agents, raise sample_interval_s, or write elsewhere (-o)"
        )
    return e
