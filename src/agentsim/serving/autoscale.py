"""Autoscaling: a pool grows and shrinks with its load.

Every ``interval_s`` the policy of a pool measures its *active* replicas (those taking calls): with
``metric: utilization`` their continuous-batching load over the last interval, with ``metric: queue`` the mean
number of calls waiting per replica now.

Why not the busy fraction: a continuous-batching replica runs steps whenever it holds one call, so it is "busy"
nearly all the time at any load. The load that matters is how much of each step is token work rather than the
fixed per-step cost: with ``t0`` the time of a minimal step (one decode token, no context) and ``n`` steps in
the interval, ``utilization = (busy - n * t0) / interval``. For a linear step model this is the ``rho`` of the
closed-form queue (``T_iter = alpha / (1 - rho)``, research.md section 4): 0 when idle, 1 at saturation.

When the value is above ``target * (1 + tolerance)`` the policy requests
``ceil(n * (value / target - 1))`` more replicas (at least one), which are provisioned (and paid for) at once
but take calls only after ``cold_start_s`` (loading weights, warming up). When it is below
``target * (1 - tolerance)`` it drains ``floor(n * (1 - value / target))`` replicas, the least loaded first: a
draining replica takes no new calls, finishes what it holds, and is removed (no longer paid for) when empty. No
call is ever dropped. Bounds ``[min_replicas, max_replicas]`` count active and starting replicas.
"""

from __future__ import annotations

import math

from agentsim import spec
from agentsim.engine.events import EventQueue
from agentsim.serving.cluster import Cluster
from agentsim.serving.replica import Replica


class Autoscaler:
    """The scaling policy of one pool, driven by the simulation clock."""

    def __init__(self, clock: EventQueue, cluster: Cluster, pool: str, policy: spec.Autoscale) -> None:
        self.clock = clock
        self.cluster = cluster
        self.pool = pool
        self.policy = policy
        self._busy_at: dict[int, tuple[float, int]] = {}  # replica index -> (busy s, steps) at the last decision
        self.decisions: list[tuple[float, int, float]] = []  # (time, replicas wanted, measured value)
        for r in self._members():
            r.on_drained = self._drained
        clock.later(policy.interval_s, self._decide)

    def _members(self) -> list[Replica]:
        return [r for r in self.cluster.replicas if r.pool == self.pool]

    def _decide(self) -> None:
        now = self.clock.now
        p = self.policy
        members = self._members()
        active = [r for r in members if r.status == "active"]
        starting = [r for r in members if r.status == "starting"]
        if active:
            if p.metric == "utilization":
                work = 0.0
                for r in active:
                    busy, steps = r.progress(now)[3], r.step
                    busy0, steps0 = self._busy_at.get(r.index, (busy, steps))
                    work += max((busy - busy0) - (steps - steps0) * r.perf.step_time(0, 1, 0), 0.0)
                value = work / (len(active) * p.interval_s)
            else:
                value = sum(len(r.waiting) for r in active) / len(active)
            n = len(active) + len(starting)
            ratio = value / p.target
            if ratio > 1 + p.tolerance:
                add = max(1, math.ceil(len(active) * (ratio - 1)))
                for _ in range(min(add, p.max_replicas - n)):
                    self._start_one(now)
            elif ratio < 1 - p.tolerance and not starting:
                remove = min(math.floor(len(active) * (1 - ratio)), n - p.min_replicas)
                for r in sorted(active, key=lambda r: (r.outstanding, -r.index))[: max(remove, 0)]:
                    self._drain(r, now)
            self.decisions.append((now, len(active) + sum(r.status == "starting" for r in self._members()), value))
        for r in self._members():
            self._busy_at[r.index] = (r.progress(now)[3], r.step)
        self.clock.later(p.interval_s, self._decide)

    def _start_one(self, now: float) -> None:
        r = self.cluster.add_replica(self.pool, accepting=False)
        r.status = "starting"
        r.on_drained = self._drained
        self.clock.later(self.policy.cold_start_s, self._ready, r)

    def _ready(self, r: Replica) -> None:
        r.status = "active"
        self.cluster.activate(r)

    def _drain(self, r: Replica, now: float) -> None:
        r.status = "draining"
        self.cluster.deactivate(r)
        r.drain_if_empty(now)

    def _drained(self, r: Replica, now: float) -> None:
        r.status = "removed"
        r.removed_s = now
