"""Routers: each policy's choice on replicas whose state is set by hand, and end-to-end properties."""

from __future__ import annotations

from typing import Any

import agentsim
from agentsim import spec
from agentsim.engine.clock import Clock
from agentsim.perf.base import FunctionPerf
from agentsim.serving.admission import EngineConfig
from agentsim.serving.call import Call, Callbacks
from agentsim.serving.replica import Replica
from agentsim.serving.routing import make_router


def replicas(n: int) -> list[Replica]:
    env = Clock().events
    eng = EngineConfig(block_size_tokens=16)
    return [Replica(env, i, "p", FunctionPerf(lambda p, d, c: 0.01), eng, 100_000, Callbacks(lambda c, t: None,
                    lambda c, t: None)) for i in range(n)]


class Owner:
    affinity: Any = None


def call(i: int, parent: Call | None = None, owner: Any = None) -> Call:
    return Call(i, 1000, 10, 0.0, parent=parent, owner=owner)


def test_round_robin_cycles() -> None:
    rs = replicas(3)
    r = make_router(spec.RoundRobin())
    assert [r.pick(call(i), rs) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_least_load_picks_fewest_outstanding_tokens_ties_lowest_index() -> None:
    rs = replicas(3)
    rs[0].outstanding, rs[1].outstanding, rs[2].outstanding = 50, 10, 10
    assert make_router(spec.LeastLoad()).pick(call(0), rs) == 1


def test_session_affinity_keeps_a_task_on_one_replica() -> None:
    rs = replicas(3)
    r = make_router(spec.SessionAffinity())
    owner = Owner()
    rs[0].outstanding = 5
    first = r.pick(call(0, owner=owner), rs)
    assert first == 1
    rs[1].outstanding = 10**6  # even when that replica becomes the busiest
    assert r.pick(call(1, owner=owner), rs) == first
    # When it stops taking calls (scaled down), the task moves once to the least loaded, and stays.
    rs[1].accepting = False
    rest = [rs[0], rs[2]]
    moved = r.pick(call(2, owner=owner), rest)
    assert rest[moved] is rs[2]
    rs[2].outstanding = 10**7
    assert rest[r.pick(call(3, owner=owner), rest)] is rs[2]


def test_prefix_aware_prefers_the_cached_prefix_then_load() -> None:
    rs = replicas(3)
    parent = call(0)
    # Replica 2 holds the parent's prompt as a cached node; replica 1 is the least loaded.
    kv = rs[2].kv
    kv.private += 992
    node = kv.insert(parent.id, None, 992, now=0.0)
    kv.unref(node, 0.0)
    rs[0].outstanding, rs[1].outstanding, rs[2].outstanding = 500, 0, 400
    child = call(1, parent=parent)
    assert make_router(spec.PrefixAware()).pick(child, rs) == 2
    # Beyond the balance bound the cached replica loses to load.
    rs[2].outstanding = 10**6
    assert make_router(spec.PrefixAware(balance_tokens=1000)).pick(child, rs) == 1
    # Without any cached prefix it is least-load.
    assert make_router(spec.PrefixAware()).pick(call(5), rs) == 1


def _scenario(router: str) -> spec.Scenario:
    return agentsim.load_scenario(agentsim.default_scenario(), [
        "horizon_s=400", "warmup_s=100", f"cluster.router.kind={router}",
        "workload[0].arrivals={kind: closed, agents: 32, ramp_s: 20}",
    ])


def test_affinity_routers_reuse_the_cache_better_than_round_robin() -> None:
    """An agent's next step finds its previous prompt only where that prompt was computed: the cache hit rate
    of session-affinity and prefix-aware routing must beat round-robin across 4 replicas."""
    hit = {k: agentsim.simulate(_scenario(k)).summary["cache_hit_rate"]
           for k in ("round-robin", "session-affinity", "prefix-aware")}
    assert hit["session-affinity"] > hit["round-robin"] + 0.1
    assert hit["prefix-aware"] > hit["round-robin"] + 0.1
