"""Analytic lower bounds: the fewest replicas a candidate could possibly meet the SLOs with, without simulating.

A replica that is to keep up must do, per second, the work the workload offers per second; work it cannot do
piles up in a queue, and no finite latency target holds for long. So a lower bound on the replicas is the
offered work rate divided by the most work one replica can do per second, each side bounded the safe way:
the offered work from below, the replica's speed from above.

**Work per task** (from tasks drawn from the workload's profile with a fixed seed, or read from its trace),
in replica-seconds, is at least the largest of:

* *prefill*: the tokens that must be computed even with a perfect prefix cache (each call's prompt minus the
  prompt it extends, or minus the shared system prompt) times the marginal cost of a prefill token at full
  chunks, ``(step(b, 0, 0) - step(b/2, 0, 0)) / (b/2)`` for the token budget ``b``;
* *decode*: the output tokens after the first times the least time per token any decode batch achieves,
  ``min over B of step(0, B, B ctx) / B`` for batches ``B`` up to the batch limit and the KV capacity
  (``ctx``: the mean context of a decoding call);
* *steps*: every output token takes a step of at least ``step(0, 1, 0)``, shared by at most ``max_num_seqs``
  calls.

**Offered rate.** Open-loop arrivals give it: ``lambda`` tasks per second. A closed loop of ``N`` agents offers
``N / (Z + R)`` tasks per second (the interactive response-time law: think time ``Z``, task duration ``R``),
which falls as the cluster slows, so it is bounded below only through an upper bound on ``R`` that the SLOs
imply: ``R <= G + calls * L`` with the task's gaps ``G`` and a call latency ``L`` at most
:data:`SLACK` times the latency the SLOs allow (a task SLO bounds ``R`` directly, ``SLACK`` times its target).
A closed loop whose SLOs say nothing about latency (only attainment of something else) gets no bound.

**The bound** is ``floor((1 - MARGIN) * rate * work) + 1`` replicas (and at least the topology's minimum): a
replica count at or below ``rate * work`` is at or past saturation. ``MARGIN`` (5%) keeps the bound below the
simulated answer where a finite horizon lets a barely overloaded cluster pass; ``tests/test_plan_bounds.py``
checks on random scenarios that the bound never exceeds the fewest replicas the simulation finds, and that the
M/D/c case (one call per step of ``D`` seconds, Poisson rate ``lambda``) gives exactly ``floor(lambda D) + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agentsim import spec
from agentsim.perf.base import PerfModel
from agentsim.planning.plan.slo import Slo
from agentsim.resolve import Resolved
from agentsim.workload.profiles import TaskFactory
from agentsim.workload.taskgraph import ROOT, TaskTemplate

SLACK = 2.0
"""Call and task latencies are bounded by this many times the SLO targets (statistics are not maxima)."""
MARGIN = 0.05
"""The bound leaves this share of one saturated replica's work unclaimed (finite horizons)."""
TASK_SAMPLE = 400
"""Tasks drawn from a profile to estimate the work per task."""


@dataclass(frozen=True)
class Bound:
    """The lower bound of one candidate: ``replicas``, and what it came from (work per task in
    replica-seconds by kind, offered tasks per second, and a sentence)."""

    replicas: int
    tasks_per_s: float | None
    work_s: float
    reason: str


@dataclass(frozen=True)
class _Work:
    calls: float
    new_prompt: float
    decode_tokens: float
    steps: float
    gaps: float
    context: float
    output: float


def _task_work(tasks: Sequence[TaskTemplate]) -> _Work:
    calls = new = dec = steps = gaps = ctx = out = 0.0
    n_calls = 0
    for t in tasks:
        for c in t.calls:
            base = t.calls[c.prefix_parent].prompt_tokens if c.prefix_parent != ROOT else t.shared_prefix_tokens
            new += max(0, c.prompt_tokens - base)
            dec += max(0, c.output_tokens - 1)
            steps += c.output_tokens
            ctx += c.prompt_tokens + c.output_tokens / 2.0
            out += c.output_tokens
            n_calls += 1
        # Gaps along the task's longest chain of calls (parallel branches overlap): a lower bound on its time.
        longest = [0.0] * len(t.calls)
        for i, c in enumerate(t.calls):
            longest[i] = c.gap_s + max((longest[d] for d in c.deps), default=0.0)
        gaps += max(longest)
        calls += len(t.calls)
    k = max(1, len(tasks))
    return _Work(calls / k, new / k, dec / k, steps / k, gaps / k, ctx / max(1, n_calls), out / max(1, n_calls))


def _tasks(resolved: Resolved, index: int) -> list[TaskTemplate]:
    w = resolved.workloads[index]
    if w.open_trace is not None:
        out: list[TaskTemplate] = []
        for _, t in w.open_trace():
            out.append(t)
            if len(out) >= TASK_SAMPLE:
                break
        return out
    assert w.profile is not None
    factory = TaskFactory(w.profile, w.label, np.random.default_rng(12345))
    return [factory.next() for _ in range(TASK_SAMPLE)]


def _latency_cap(slos: Sequence[Slo], work: _Work) -> tuple[float | None, float | None]:
    """Upper bounds the SLOs imply (times SLACK) on a call's latency and on a task's duration, if any."""
    by = {s.metric: s.target for s in slos}
    task = SLACK * by["task"] if "task" in by else None
    call: float | None = None
    if "e2e" in by:
        call = SLACK * by["e2e"]
    elif "ttft" in by and "tpot" in by:
        call = SLACK * (by["ttft"] + max(0.0, work.output - 1) * by["tpot"])
    return call, task


def _prefill_s(perf: PerfModel, tokens: float) -> float:
    """A step of ``tokens`` fresh prompt tokens in one chunk, spread evenly over data-parallel attention ranks
    (largest chunk 0: the most favourable split, as a lower bound must take; ``step_time`` would put the chunk on
    one rank)."""
    return perf.prefill_step_time(tokens, 0.0, 0.0, 0.0, tokens * tokens / 2.0, 0.0, 0.0)


def lower_bound(resolved: Resolved, pools: Sequence[int], slos: Sequence[Slo], minimum: int = 1) -> Bound:
    """The fewest replicas of the target pools (indices ``pools`` of ``resolved.pools``, one deployment) that
    could meet ``slos`` (module docstring)."""
    rp = resolved.pools[pools[0]]
    perf = rp.plan.perf
    engine = rp.plan.engine  # the resolved engine: the preset's values filled in
    budget = float(engine.max_batched_tokens)
    t_pf = max(0.0, (_prefill_s(perf, budget) - _prefill_s(perf, budget / 2)) / (budget / 2))
    t0 = perf.step_time(0.0, 1.0, 0.0)
    rate_work = 0.0
    rate_total = 0.0
    notes: list[str] = []
    for i, w in enumerate(resolved.workloads):
        work = _task_work(_tasks(resolved, i))
        ctx = max(1.0, work.context)
        best = math.inf
        b = 1
        cap = max(1, min(engine.max_num_seqs, int(rp.plan.kv_capacity_tokens // ctx)))
        while True:
            best = min(best, perf.step_time(0.0, float(b), b * ctx) / b)
            if b >= cap:
                break
            b = min(cap, 2 * b)
        per_task = max(work.new_prompt * t_pf, work.decode_tokens * best, work.steps * t0 / engine.max_num_seqs)
        rate: float | None
        if isinstance(w.workload, spec.TraceWorkload):
            rate = None  # a trace's recorded starts: not bounded here
        elif isinstance(w.workload.arrivals, spec.Closed):
            call_cap, task_cap = _latency_cap(slos, work)
            think = w.workload.arrivals.think_s
            z = _mean(think)
            if task_cap is not None:
                rate = w.workload.arrivals.agents / (z + task_cap)
            elif call_cap is not None:
                rate = w.workload.arrivals.agents / (z + work.gaps + work.calls * call_cap)
            else:
                rate = None
        else:
            rate = w.workload.arrivals.rate_per_s
        if rate is None:
            notes.append(f"{w.label}: no bound (closed loop without a latency SLO, or a trace)")
            continue
        rate_work += rate * per_task
        rate_total += rate
        notes.append(f"{w.label}: {rate:.4g} tasks/s x {per_task:.4g} replica-s")
    n = max(minimum, math.floor((1.0 - MARGIN) * rate_work) + 1 if rate_work > 0 else minimum)
    return Bound(n, rate_total or None, rate_work, "; ".join(notes))


def _mean(d: spec.Dist) -> float:
    from agentsim.workload.distributions import mean

    return float(mean(d))
