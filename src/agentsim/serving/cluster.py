"""The cluster: pools of replicas behind one router.

A pool is a set of identical replicas (one deployment, one perf model, one KV capacity). Every call is routed
across the replicas of all unified pools, so heterogeneous pools share the load as the router sees fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentsim import spec
from agentsim.perf.base import PerfModel
from agentsim.serving.call import Call
from agentsim.serving.replica import Replica
from agentsim.serving.routing import Router, make_router


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """What the cluster needs to build one pool: its spec, perf model and KV capacity per replica."""

    spec: spec.PoolSpec
    perf: PerfModel
    kv_capacity_tokens: int


class Cluster:
    """Replicas of every pool, in pool order, and the router that spreads calls over them."""

    def __init__(
        self,
        env: Any,
        pools: Sequence[PoolPlan],
        router: spec.RouterSpec,
        on_first_token: Callable[[Call, float], None],
        on_done: Callable[[Call, float], None],
    ) -> None:
        self.replicas: list[Replica] = []
        for plan in pools:
            for _ in range(plan.spec.replicas):
                self.replicas.append(
                    Replica(
                        env,
                        len(self.replicas),
                        plan.spec.name,
                        plan.perf,
                        plan.spec.deployment.engine,
                        plan.kv_capacity_tokens,
                        on_first_token,
                        on_done,
                    )
                )
        self.router: Router = make_router(router)

    def route(self, call: Call) -> Replica:
        """Send ``call`` to the replica the router picks, now."""
        r = self.replicas[self.router.pick(call, self.replicas)]
        r.submit(call)
        return r
