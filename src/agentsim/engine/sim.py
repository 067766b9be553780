"""``simulate_resolved(resolved, sinks) -> EngineRun``: wire a resolved scenario's workloads, cluster and agents onto a
clock, run it to the horizon, streaming the raw tables' rows to ``sinks`` as they are recorded.

Data flows one way: the resolved scenario (:mod:`agentsim.resolve`: perf models, KV capacities, profiles, trace
openers; nothing is looked up here) and one seeded :class:`~agentsim.rng.Streams` root give each workload its
task factory and arrivals (named streams ``tasks/<workload>``, ``arrivals/<workload>``, ``think/<workload>``,
``starts/<workload>``); the agents drive the cluster on a :class:`~agentsim.engine.clock.Clock` until the
horizon; the recorder hands its rows on, a record batch at a time, to the sinks it is given (a run's spill files,
:mod:`agentsim.spill`), so nothing here grows with the simulated time but what is live: tasks in flight, queued
calls, the prefix caches. Costs and the summary are the analysis layer's (:func:`agentsim.api.run` composes the
two).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agentsim import spec
from agentsim.engine.agents import Agents, Stream
from agentsim.engine.clock import Clock
from agentsim.engine.records import Recorder, Sink
from agentsim.errors import ScenarioError
from agentsim.resolve import TOOLS_POOL, Resolved, ResolvedWorkload
from agentsim.rng import Streams
from agentsim.serving.autoscale import Autoscaler
from agentsim.serving.cluster import Cluster
from agentsim.serving.replica import CallTooLarge
from agentsim.serving.tools import ToolPool
from agentsim.workload.arrivals import arrival_times, start_offsets, think_times
from agentsim.workload.profiles import TaskFactory
from agentsim.workload.replay import replay_stream
from agentsim.workload.taskgraph import NO_WINDOW

ProgressFn = Callable[[float, float], None]


@dataclass(frozen=True)
class EngineRun:
    """What the engine produced besides the rows it streamed: row counts and engine statistics."""

    calls: int
    tasks: int
    replicas: int
    steps_skipped_fraction: float | None
    autoscale: dict[str, dict[str, int]] = field(default_factory=dict)


def sample_times(horizon_s: float, interval_s: float, warmup_s: float) -> Iterator[float]:
    """When the replicas are sampled: ``k * interval_s`` below the horizon, and the warm-up's end, in order and
    once each; lazily, so a long horizon costs no memory (the grid ``np.arange(0, horizon_s, interval_s)``
    computes the same floats)."""
    extra: float | None = warmup_s if warmup_s < horizon_s else None
    for k in range(math.ceil(horizon_s / interval_s)):
        t = k * interval_s
        if t >= horizon_s:
            break
        if extra is not None and extra <= t:
            if extra < t:
                yield extra
            extra = None
        yield t
    if extra is not None:
        yield extra


def _trace_stream(w: ResolvedWorkload) -> Stream:
    assert w.open_trace is not None and isinstance(w.workload, spec.TraceWorkload)
    starts, templates = replay_stream(w.open_trace(), w.workload)
    window = NO_WINDOW if w.max_context_tokens is None else w.max_context_tokens
    return Stream(w.index, w.label, partial(next, templates), starts, [], lambda: 0.0, None, window, w.model)


def _streams(resolved: Resolved, root: Streams) -> list[Stream]:
    horizon_s = resolved.scenario.horizon_s
    out: list[Stream] = []
    for w in resolved.workloads:
        if w.open_trace is not None:
            out.append(_trace_stream(w))
            continue
        assert w.profile is not None and isinstance(w.workload, spec.WorkloadSpec)
        label = w.label
        window = w.max_context_tokens
        factory = TaskFactory(w.profile, label, root.get(f"tasks/{label}"), max_context_tokens=window, models=w.roles)
        limit = NO_WINDOW if window is None else window
        a = w.workload.arrivals
        if isinstance(a, spec.Closed):
            starts = [float(x) for x in start_offsets(a, root.get(f"starts/{label}"))]
            thinks = partial(next, think_times(a, root.get(f"think/{label}")))
            out.append(
                Stream(w.index, label, factory.next, None, starts, thinks, w.workload.max_tasks, limit, w.model)
            )
        else:
            times = arrival_times(a, root.get(f"arrivals/{label}"), horizon_s)
            out.append(
                Stream(w.index, label, factory.next, times, [], lambda: 0.0, w.workload.max_tasks, limit, w.model)
            )
    return out


def simulate_resolved(
    resolved: Resolved, sinks: Mapping[str, Sink], progress: ProgressFn | None = None
) -> EngineRun:
    """Simulate a resolved scenario to its horizon, handing the rows of the ``"calls"``, ``"tasks"`` (recorded
    columns only: :data:`~agentsim.engine.records.TASK_RECORD_SCHEMA`) and ``"replicas"`` tables to ``sinks`` as
    record batches (:class:`~agentsim.engine.records.Recorder`). Deterministic for a
    given ``scenario.seed``."""
    # A run allocates millions of small objects that live until its tables are built; the cyclic collector
    # would rescan them over and over (10-20% of a run, with full collections during the table conversion).
    # Nothing on the hot path makes reference cycles it needs collected (a finished task drops its calls), so
    # the collector is off for the run and the previous setting restored after.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _simulate(resolved, sinks, progress)
    finally:
        if was_enabled:
            gc.enable()


def _simulate(resolved: Resolved, sinks: Mapping[str, Sink], progress: ProgressFn | None) -> EngineRun:
    scenario = resolved.scenario
    tools_spec = scenario.cluster.tools
    labels = [w.label for w in scenario.workload]
    disaggregated = any(p.role == "prefill" for p in scenario.cluster.pools)
    rec = Recorder(labels, disaggregated=disaggregated, models=list(resolved.models), sinks=sinks)
    env = Clock()
    events = env.events

    tools = ToolPool(events, tools_spec.workers, tools_spec.speedup) if tools_spec is not None else None
    agents = Agents(events, _streams(resolved, Streams(scenario.seed)), scenario.horizon_s, rec, tools)
    agents.park_tools = any(
        p.kv_offload is not None and p.kv_offload.policy == "on_tool_wait" for p in scenario.cluster.pools
    )
    cluster = Cluster(events, resolved.plans, scenario.cluster, agents, resolved.models, resolved.windows)
    agents.start(cluster)
    scalers = [
        Autoscaler(events, cluster, p.name, p.autoscale) for p in scenario.cluster.pools if p.autoscale is not None
    ]

    # Replica samples on a fixed grid plus exactly at the warm-up end and the horizon (the metrics window).
    times = sample_times(scenario.horizon_s, scenario.sample_interval_s, scenario.warmup_s)

    def sample(now: float) -> None:
        for r in cluster.replicas:
            running, waiting, held, busy, out, prefill = r.progress(now)
            steps, cached, preempted, evicted = r.counters(now)
            rec.replica_sample(
                t_s=now,
                pool=r.pool,
                replica=r.index,
                running=running,
                waiting=waiting,
                kv_used_tokens=held,
                kv_capacity_tokens=r.kv.capacity,
                kv_dram_tokens=r.kv.lower_tokens(1),
                kv_nvme_tokens=r.kv.lower_tokens(2),
                busy_s=busy,
                busy_prompt_steps_s=r.busy_prefill(now),
                provisioned_s=r.provisioned_s(now),
                output_tokens=out,
                prefill_tokens=prefill,
                state=r.status,
                steps=steps,
                kv_cached_tokens=cached,
                preemptions=preempted,
                evicted_tokens=evicted,
            )
        if tools is not None:
            # One row for the whole tool pool; busy time in pool-equivalent seconds (worker-seconds / workers).
            running, queued, _, worker_s, _, _ = tools.progress(now)
            busy = worker_s / tools.workers
            rec.replica_sample(
                t_s=now,
                pool=TOOLS_POOL,
                replica=-1,
                running=running,
                waiting=queued,
                kv_used_tokens=0,
                kv_capacity_tokens=0,
                kv_dram_tokens=0,
                kv_nvme_tokens=0,
                busy_s=busy,
                busy_prompt_steps_s=busy,
                provisioned_s=now,
                output_tokens=0,
                prefill_tokens=0,
                state="active",
                steps=0,
                kv_cached_tokens=0,
                preemptions=0,
                evicted_tokens=0,
            )

    def sampler() -> Any:
        for t in times:
            yield env.timeout(t - env.now)
            sample(env.now)
            if progress is not None:
                progress(env.now, scenario.horizon_s)

    env.process(sampler())
    try:
        env.run(until=scenario.horizon_s)
    except CallTooLarge as e:
        raise ScenarioError(
            [
                (
                    "cluster",
                    f"{e}; give the pool more KV memory (more GPUs, lower precision) or lower the "
                    "workload's context_limit_tokens",
                )
            ],
            scenario.name,
        ) from None

    now = scenario.horizon_s
    for r in cluster.replicas:
        r.finalize(now)
    sample(now)
    agents.record_unfinished()
    if progress is not None:
        progress(now, now)

    # The engine's objects form reference cycles (environment <-> pending callbacks <-> replicas, agents) that
    # only the cyclic collector, off during the run, would free, after scanning millions of live objects
    # (seconds). Empty the containers instead: tasks, calls and cached nodes go now, by reference counting.
    events.clear()
    cluster.release()
    agents.release()
    if tools is not None:
        tools.release()
    autoscale = {
        a.pool: {"decisions": len(a.decisions), "max_replicas": max((d[1] for d in a.decisions), default=0)}
        for a in scalers
    }
    rec.close()
    return EngineRun(len(rec.calls), len(rec.tasks), len(rec.replicas), _skipped(cluster), autoscale)


def _skipped(cluster: Cluster) -> float | None:
    skipped = sum(r.steps_skipped for r in cluster.replicas)
    steps = sum(r.step for r in cluster.replicas)
    return skipped / steps if steps else None
