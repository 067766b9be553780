"""``run(scenario) -> RunResult``: the one place that wires spec, workload, cluster, agents and records.

Data flows one way: the validated scenario and one seeded :class:`~agentsim.rng.Streams` root give each
workload its task factory and arrivals (named streams ``tasks/<workload>``, ``arrivals/<workload>``,
``think/<workload>``, ``starts/<workload>``); the agents drive the cluster on a simpy clock until the horizon;
records become Arrow tables; costs and metrics turn tables into dollars and a summary.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from agentsim import spec
from agentsim._version import __version__
from agentsim.analysis.costs import TOOLS_POOL, PoolRates, attach_call_costs, attach_task_costs, pool_rates, tool_rates
from agentsim.analysis.metrics import summarize
from agentsim.build import compiled_modules
from agentsim.catalog import Catalog, load_catalog, scenario_catalog
from agentsim.engine.agents import Agents, Stream
from agentsim.engine.clock import Clock
from agentsim.engine.records import Recorder
from agentsim.errors import ScenarioError
from agentsim.resolve import plan_pools
from agentsim.rng import Streams
from agentsim.serving.autoscale import Autoscaler
from agentsim.serving.cluster import Cluster
from agentsim.serving.replica import CallTooLarge
from agentsim.serving.tools import ToolPool
from agentsim.workload.arrivals import arrival_times, start_offsets, think_times
from agentsim.workload.profiles import TaskFactory, resolve_profile
from agentsim.workload.replay import replay_stream, replay_template

ProgressFn = Callable[[float, float], None]


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced: Arrow tables, the summary, and where it came from."""

    scenario: spec.Scenario
    calls: pa.Table
    tasks: pa.Table
    replicas: pa.Table
    pools: pa.Table
    summary: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)


def _trace_stream(i: int, w: spec.TraceWorkload) -> Stream:
    from agentsim.traces.io import read_trace

    pairs = (
        (t.start_s, replay_template(t.template, list(t.hash_ids), list(t.release_s), t.start_s, w))
        for t in read_trace(w.path)
    )
    starts, templates = replay_stream(pairs, w)
    return Stream(i, w.label, partial(next, templates), starts, [], lambda: 0.0, None)


def _streams(scenario: spec.Scenario, root: Streams) -> list[Stream]:
    out: list[Stream] = []
    for i, w in enumerate(scenario.workload):
        if isinstance(w, spec.TraceWorkload):
            out.append(_trace_stream(i, w))
            continue
        label = w.label
        factory = TaskFactory(resolve_profile(w), label, root.get(f"tasks/{label}"))
        a = w.arrivals
        if isinstance(a, spec.Closed):
            starts = [float(x) for x in start_offsets(a, root.get(f"starts/{label}"))]
            thinks = think_times(a, root.get(f"think/{label}"))
            out.append(Stream(i, label, factory.next, None, starts, partial(next, thinks), w.max_tasks))
        else:
            times = arrival_times(a, root.get(f"arrivals/{label}"), scenario.horizon_s)
            out.append(Stream(i, label, factory.next, times, [], lambda: 0.0, w.max_tasks))
    return out


def run(
    scenario: spec.Scenario,
    *,
    catalog: Catalog | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Simulate ``scenario`` and return its tables and summary. Deterministic for a given ``scenario.seed``."""
    # A run allocates millions of small objects that live until its tables are built; the cyclic collector
    # would rescan them over and over (10-20% of a run, with full collections during the table conversion).
    # Nothing on the hot path makes reference cycles it needs collected (a finished task drops its calls), so
    # the collector is off for the run and the previous setting restored after.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(scenario, catalog, progress)
    finally:
        if was_enabled:
            gc.enable()


def _run(scenario: spec.Scenario, catalog: Catalog | None, progress: ProgressFn | None) -> RunResult:
    wall0 = time.perf_counter()
    catalog = catalog if catalog is not None else load_catalog()
    catalog = scenario_catalog(scenario, catalog)  # issue 4: user catalog files listed in `scenario.catalog`
    plans = plan_pools(scenario, catalog)
    rates = [pool_rates(p, scenario.pricing, catalog) for p in scenario.cluster.pools]
    tools_spec = scenario.cluster.tools
    tools_rate = tool_rates(tools_spec, scenario.pricing, catalog) if tools_spec is not None else None
    if tools_rate is not None:
        rates.append(tools_rate)
    labels = [w.label for w in scenario.workload]
    rec = Recorder(labels, disaggregated=any(p.role == "prefill" for p in scenario.cluster.pools))
    env = Clock()
    events = env.events

    tools = ToolPool(events, tools_spec.workers, tools_spec.speedup) if tools_spec is not None else None
    agents = Agents(events, _streams(scenario, Streams(scenario.seed)), scenario.horizon_s, rec, tools)
    cluster = Cluster(events, plans, scenario.cluster, agents)
    agents.start(cluster)
    scalers = [
        Autoscaler(events, cluster, p.name, p.autoscale) for p in scenario.cluster.pools if p.autoscale is not None
    ]

    # Replica samples on a fixed grid plus exactly at the warm-up end and the horizon (the metrics window).
    grid = set(np.arange(0.0, scenario.horizon_s, scenario.sample_interval_s).tolist())
    grid.add(scenario.warmup_s)
    sample_times = sorted(t for t in grid if t < scenario.horizon_s)

    def sample(now: float) -> None:
        for r in cluster.replicas:
            rec.sample(
                now,
                r.pool,
                r.index,
                r.progress(now),
                r.kv.capacity,
                r.provisioned_s(now),
                r.status,
                r.busy_prefill(now),
            )
        if tools is not None:
            # One row for the whole tool pool; busy time in pool-equivalent seconds (worker-seconds / workers).
            running, queued, _, worker_s, _, _ = tools.progress(now)
            busy = worker_s / tools.workers
            rec.sample(now, TOOLS_POOL, -1, (running, queued, 0, busy, 0, 0), 0, now, "active", busy)

    def sampler() -> Any:
        for t in sample_times:
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
    for task in agents.active:
        for c in task.calls:
            if c is not None and c.done_s is None:
                rec.on_call_done(c)
        rec.on_task_done(task)
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
    calls = attach_call_costs(rec.calls.table(), rates)
    tasks = attach_task_costs(rec.tasks_table(calls), calls, tools_rate)
    replicas = rec.replicas.table()
    pools = pools_table(rates, replicas, calls, now)
    summary = summarize(scenario, calls, tasks, replicas, rates)
    summary["steps_skipped_fraction"] = _skipped(cluster)
    if scalers:
        summary["autoscale"] = {
            a.pool: {"decisions": len(a.decisions), "max_replicas": max((d[1] for d in a.decisions), default=0)}
            for a in scalers
        }
    wall = time.perf_counter() - wall0
    manifest = {
        "agentsim_version": __version__,
        "source_sha256": source_digest(),
        "compiled_modules": list(compiled_modules()),  # mypyc-compiled hot path (setup.py); [] = pure Python
        "seed": scenario.seed,
        "scenario": scenario.model_dump(mode="json"),
        "wall_s": wall,
        "calls": calls.num_rows,
        "calls_per_wall_s": calls.num_rows / wall if wall > 0 else None,
    }
    return RunResult(scenario, calls, tasks, replicas, pools, summary, manifest)


@functools.cache
def source_digest() -> str:
    """SHA-256 of agentsim's own source and data files: which code made a run, even between releases."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.suffix in (".py", ".yaml") and f.is_file():
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _skipped(cluster: Cluster) -> float | None:
    skipped = sum(r.steps_skipped for r in cluster.replicas)
    steps = sum(r.step for r in cluster.replicas)
    return skipped / steps if steps else None


def pools_table(rates: list[PoolRates], replicas: pa.Table, calls: pa.Table, horizon_s: float) -> pa.Table:
    """Per pool over the whole run: provisioned cost, the part charged to calls, the idle remainder, energy."""
    t = np.asarray(replicas.column("t_s").to_numpy(), dtype=float)
    last = replicas.filter(pa.array(t == horizon_s))
    busy_by_pool: dict[str, float] = {}
    prompt_by_pool: dict[str, float] = {}
    prov_by_pool: dict[str, float] = {}
    count_by_pool: dict[str, int] = {}
    for pool, busy, prompt, prov in zip(
        last.column("pool").to_pylist(),
        last.column("busy_s").to_pylist(),
        last.column("busy_prompt_steps_s").to_pylist(),
        last.column("provisioned_s").to_pylist(),
        strict=True,
    ):
        busy_by_pool[pool] = busy_by_pool.get(pool, 0.0) + busy
        prompt_by_pool[pool] = prompt_by_pool.get(pool, 0.0) + prompt
        prov_by_pool[pool] = prov_by_pool.get(pool, 0.0) + prov
        count_by_pool[pool] = count_by_pool.get(pool, 0) + 1
    usd_s = {r.pool: r.usd_per_s for r in rates}
    # Each call's busy seconds priced at its pool's rate and summed per pool, on its replica's pool and then on
    # its prefill replica's: one np.bincount over both, so the sums run in the same row order as a loop would.
    number = {r.pool: i for i, r in enumerate(rates)}
    price = np.array([r.usd_per_s for r in rates])
    codes: list[np.ndarray] = []
    busy_parts: list[np.ndarray] = []
    for pool_col, busy_col in (("pool", "busy_s"), ("prefill_pool", "prefill_busy_s")):
        pools = calls.column(pool_col).combine_chunks().dictionary_encode()
        lut = np.array([number[p] for p in pools.dictionary.to_pylist()] + [-1], dtype=np.int64)
        code = lut[np.asarray(pools.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)]
        routed = code >= 0
        codes.append(code[routed])
        busy_parts.append(np.asarray(calls.column(busy_col).to_numpy(zero_copy_only=False), dtype=float)[routed])
    code = np.concatenate(codes)
    sums = np.bincount(code, weights=np.concatenate(busy_parts) * price[code], minlength=len(rates))
    usd_by_pool = {r.pool: float(sums[i]) for i, r in enumerate(rates)}
    if TOOLS_POOL in usd_s:
        # Tool work is charged to tasks, not calls: its "calls" cost is the busy part of the pool.
        usd_by_pool[TOOLS_POOL] = busy_by_pool.get(TOOLS_POOL, 0.0) * usd_s[TOOLS_POOL]
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "pool",
            "role",
            "replicas",
            "gpus",
            "usd_per_gpu_hour",
            "provisioned_usd",
            "calls_usd",
            "idle_usd",
            "busy_s",
            "idle_s",
            "busy_energy_j",
            "idle_energy_j",
        )
    }
    for r in rates:
        provisioned_s = prov_by_pool.get(r.pool, 0.0)
        busy = busy_by_pool.get(r.pool, 0.0)
        provisioned = r.usd_per_s * provisioned_s
        rows["pool"].append(r.pool)
        rows["role"].append(r.role)
        rows["replicas"].append(count_by_pool.get(r.pool, 0))
        rows["gpus"].append(count_by_pool.get(r.pool, 0) * r.gpus_per_replica)
        rows["usd_per_gpu_hour"].append(r.usd_per_gpu_hour)
        rows["provisioned_usd"].append(provisioned)
        rows["calls_usd"].append(usd_by_pool.get(r.pool, 0.0))
        rows["idle_usd"].append(r.usd_per_s * (provisioned_s - busy))
        rows["busy_s"].append(busy)
        rows["idle_s"].append(provisioned_s - busy)
        prompt = prompt_by_pool.get(r.pool, 0.0)
        rows["busy_energy_j"].append(prompt * r.busy_w_per_replica + (busy - prompt) * r.decode_w_per_replica)
        rows["idle_energy_j"].append((provisioned_s - busy) * r.idle_w_per_replica)
    return pa.table(rows)
