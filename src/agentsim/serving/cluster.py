"""The cluster: pools of replicas behind routers, and the KV link of disaggregated serving.

A pool is a set of identical replicas (one deployment, one perf model, one KV capacity). A call enters at a
replica of a ``unified`` or ``prefill`` pool, chosen by the router across all of them (heterogeneous pools share
the load as the router sees fit). A unified replica serves the call to its end. A prefill replica computes the
prompt and the first token, then the call's KV is sent to a ``decode`` replica chosen by the decode router:
``bytes = tokens the decode replica does not already cache x KV bytes per token``, over the prefill replica's
link (one transfer at a time, FIFO: ``bytes / bandwidth`` of link time, plus the latency). The prefill replica
holds the KV until the transfer ends; the decode replica admits the call as soon as memory allows and it decodes
from that step.

Several models. Each pool serves one model (its ``deployment.model``); a call names the model it calls (an index
into :attr:`Cluster.models`) and the router picks among the accepting entry replicas of the pools serving that
model only. No call whose prompt + output passes its model's context window is ever simulated: the agents
reject such calls before sending them, and :meth:`Cluster.route` raises :class:`ContextWindowExceeded` if one
arrives all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agentsim import spec
from agentsim.engine.events import EventQueue
from agentsim.perf.base import PerfModel
from agentsim.serving.admission import EngineConfig
from agentsim.serving.call import Call, CallListener
from agentsim.serving.replica import Replica
from agentsim.serving.routing import Router, make_router
from agentsim.serving.tiers import OffloadPlan
from agentsim.workload.taskgraph import NO_WINDOW


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """What the cluster needs to build one pool: its spec (engine preset filled in), perf model, KV capacity per
    replica, KV size, the engine its replicas run and its lower KV tiers."""

    spec: spec.PoolSpec
    perf: PerfModel
    kv_capacity_tokens: int
    kv_bytes_per_token: float = 0.0
    engine: EngineConfig = field(default_factory=EngineConfig)
    offload: OffloadPlan | None = None  # lower KV tiers of each replica (serving/tiers.py)


class ContextWindowExceeded(Exception):
    """A call whose prompt + output passes a pool's context window reached the cluster: a bug, since the agents
    reject such calls before sending them (a real server would answer HTTP 400, never simulate it)."""


class Cluster:
    """Replicas of every pool, in pool order, and the router that spreads calls over them."""

    def __init__(
        self,
        clock: EventQueue,
        pools: Sequence[PoolPlan],
        cluster: spec.ClusterSpec,
        listener: CallListener,
        models: Sequence[str] | None = None,
        windows: Sequence[int] | None = None,
    ) -> None:
        self.clock = clock
        self.plans = {p.spec.name: p for p in pools}
        # The models the pools serve (a call's ``model`` indexes it); only a pool serving a call's model takes it.
        served = dict.fromkeys(p.spec.deployment.model for p in pools)
        self.models = list(models) if models is not None else list(served)
        self.model_of = {p.spec.name: self.models.index(p.spec.deployment.model) for p in pools}
        # The context window of each model (resolve.context_window: the smallest among the pools serving it, since
        # a call may reach an entry pool, then a decode pool); none for pools built by hand.
        self.windows = list(windows) if windows is not None else [NO_WINDOW] * len(self.models)
        self.listener = listener  # told of every call's first token and completion (the agents)
        self.replicas: list[Replica] = []  # every replica ever built, by index
        self.entry: list[Replica] = []  # accepting unified and prefill replicas
        # ... per model: the one list ``entry`` itself when the pools serve one model (the routers see exactly
        # the replicas they saw before models existed)
        self.entry_by_model: list[list[Replica]] = [self.entry] if len(self.models) <= 1 else [
            [] for _ in self.models
        ]
        self.decode: list[Replica] = []  # accepting decode replicas (one model: the spec checks it)
        for plan in pools:
            for _ in range(plan.spec.replicas):
                self.add_replica(plan.spec.name, accepting=True)
        self.router: Router = make_router(cluster.router)
        self.decode_router: Router = make_router(cluster.decode_router)
        self.link_bytes_per_s = cluster.kv_link.bandwidth_gb_s * 1e9
        self.link_latency_s = cluster.kv_link.latency_s
        self.link_free_at: dict[int, float] = {}  # per prefill replica: when its link is next free

    def add_replica(self, pool: str, *, accepting: bool) -> Replica:
        """Build one more replica of ``pool``; it takes calls once :meth:`activate` d (now if ``accepting``)."""
        plan = self.plans[pool]
        r = Replica(
            self.clock,
            len(self.replicas),
            pool,
            plan.perf,
            plan.engine,
            plan.kv_capacity_tokens,
            self.listener,
            role=plan.spec.role,
            on_prefilled=self._prefilled,
            offload=plan.offload,
        )
        r.accepting = False
        self.replicas.append(r)
        if accepting:
            self.activate(r)
        return r

    def _routing_lists(self, r: Replica) -> list[list[Replica]]:
        """The lists the routers pick ``r`` from: the decode replicas, or the entry replicas (and its model's, when
        the cluster serves several)."""
        if r.role == "decode":
            return [self.decode]
        by_model = self.entry_by_model[self.model_of[r.pool]]
        return [self.entry] if by_model is self.entry else [self.entry, by_model]

    def activate(self, r: Replica) -> None:
        """``r`` starts taking calls."""
        r.accepting = True
        for replicas in self._routing_lists(r):
            replicas.append(r)

    def deactivate(self, r: Replica) -> None:
        """``r`` takes no new calls (draining); it finishes what it holds."""
        r.accepting = False
        for replicas in self._routing_lists(r):
            replicas.remove(r)

    def release(self) -> None:
        """After the run: every replica drops its calls and cached nodes (see :meth:`Replica.release`)."""
        for r in self.replicas:
            r.release()

    def route(self, call: Call) -> Replica:
        """Send ``call`` to the entry replica, among those serving its model, that the router picks, now."""
        window = self.windows[call.model]
        if call.prompt + call.output > window:
            raise ContextWindowExceeded(
                f"call {call.id}: {call.prompt} prompt + {call.output} output tokens reached the cluster, past the "
                f"{window}-token context window of {self.models[call.model]}"
            )
        entry = self.entry_by_model[call.model]
        r = entry[self.router.pick(call, entry)]
        r.arrive(call)
        return r

    def _prefilled(self, call: Call, now: float) -> None:
        """A prefill replica finished ``call``'s prompt: pick its decode replica and send the KV."""
        src = call.replica
        assert isinstance(src, Replica)  # a call is prefilled on a replica of this cluster
        dst = self.decode[self.decode_router.pick(call, self.decode)]
        tokens = max(call.target - dst.longest_prefix(call), 0)
        link = tokens * self.plans[src.pool].kv_bytes_per_token / self.link_bytes_per_s
        start = max(now, self.link_free_at.get(src.index, 0.0))
        self.link_free_at[src.index] = start + link
        call.prefill_replica = src
        call.kv_transfer_s = start + link + self.link_latency_s - now
        self.clock.schedule(call.kv_transfer_s, self._transferred, (call, src, dst))

    def _transferred(self, call: Call, src: Replica, dst: Replica) -> None:
        src.release_transferred(call, self.clock.now)
        # The prefill replica's share of busy time is priced at its pool's rate; start afresh for the decode side.
        call.prefill_busy_s = call.busy_share_s
        call.prefill_mixed_s = call.mixed_share_s
        call.busy_share_s = 0.0
        call.mixed_share_s = 0.0
        dst.submit_ready(call)
