"""KV offload: a replica's lower KV tiers (host DRAM, local NVMe) and the reload of a prefix found there.

**What is modelled** (docs/DESIGN.md, KV offload, gives the sources). vLLM's offloading connector, LMCache and
NVIDIA Dynamo's KV block manager (KVBM) keep KV blocks that leave GPU memory in host memory (G2) and on local disk
(G3), and load a prefix found there back into GPU blocks before the request's prefill, asynchronously: the
request waits while other requests keep computing. Here, with ``kv_offload`` on a pool:

* **Eviction demotes** (``on_evict``): a prefix-cache node that HBM evicts (a leaf, least recently used first:
  :meth:`KvCache.make_room <agentsim.serving.kvcache.KvCache.make_room>`) goes to host DRAM instead of being
  dropped; when DRAM is full its oldest nodes go down to NVMe, and NVMe's oldest are dropped. Each lower tier
  is a FIFO in demotion order, which is least-recently-used order (HBM evicts by last use) and takes children
  before parents (a parent leaves HBM only after its children). Demotion costs no time: the connectors write
  blocks out as they fill (write-through), off the critical path, so an evicted block is already below.
* **Reload**: a call admitted with a prefix deeper in a lower tier than in HBM reserves HBM for its whole
  prompt, takes the nodes between back into HBM (:meth:`Tiers.path`), and waits ``reload_s = wait for the
  replica's host link + sum over tiers of tokens x KV bytes per token / bandwidth``; one reload at a time per
  replica (FIFO link), overlapped with the other calls' steps, as vLLM's ``WAITING_FOR_REMOTE_KVS``. Reloaded
  tokens count as cached (not computed).
* **on_tool_wait** also moves an agent's own context out of HBM when its call ends and a tool call follows
  (:meth:`KvCache.park <agentsim.serving.kvcache.KvCache.park>`), so waiting agents hold no HBM; the next call
  reloads it.

A node in a lower tier keeps its parent pointer; a prefix is usable only while every node between it and HBM is
still held (:meth:`Tiers.path` checks the chain). Everything is in tokens; capacities and bandwidths are
resolved per replica from the catalog (``resolve.py``). Pure bookkeeping: no clock (times are passed in).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from agentsim.serving.kvcache import KvCache, LowerTier, Node

NONE: Final = 0
ON_EVICT: Final = 1
ON_TOOL_WAIT: Final = 2
POLICIES: Final = {"none": NONE, "on_evict": ON_EVICT, "on_tool_wait": ON_TOOL_WAIT}

DRAM: Final = 1
NVME: Final = 2


class OffloadPlan:
    """One replica's lower tiers, resolved: the policy, each tier's capacity (tokens) and reload bandwidth
    (bytes/s), and the KV bytes per token of the deployment."""

    def __init__(
        self,
        policy: int,
        dram_tokens: int,
        nvme_tokens: int,
        dram_bytes_per_s: float,
        nvme_bytes_per_s: float,
        kv_bytes_per_token: float,
    ) -> None:
        self.policy = policy
        self.dram_tokens = dram_tokens
        self.nvme_tokens = nvme_tokens
        self.dram_bytes_per_s = dram_bytes_per_s
        self.nvme_bytes_per_s = nvme_bytes_per_s
        self.kv_bytes_per_token = kv_bytes_per_token

    def __repr__(self) -> str:
        return (
            f"OffloadPlan(policy={self.policy}, dram_tokens={self.dram_tokens}, nvme_tokens={self.nvme_tokens}, "
            f"dram_bytes_per_s={self.dram_bytes_per_s}, nvme_bytes_per_s={self.nvme_bytes_per_s})"
        )


class Tiers(LowerTier):
    """Host DRAM (tier 1) and NVMe (tier 2) below one replica's HBM, and its host link (module docstring).

    Counters (tokens) for the conservation check: ``demoted[t]`` entered tier ``t``, ``reloaded[t]`` went back to
    HBM from it, ``dropped[t]`` left it for nowhere; ``used[t]`` is what it holds: ``demoted - reloaded -
    dropped - (moved down, for DRAM) = used``."""

    def __init__(self, plan: OffloadPlan) -> None:
        self.plan = plan
        self.capacity = [0, plan.dram_tokens, plan.nvme_tokens]
        self.used = [0, 0, 0]
        self.demoted = [0, 0, 0]
        self.reloaded = [0, 0, 0]
        self.dropped = [0, 0, 0]
        self.nodes: dict[int, Node] = {}  # every node held below HBM, by key
        self.tier_of: dict[int, int] = {}  # ... and its tier
        # One FIFO per tier (demotion order) linked through the nodes' older/newer fields (free outside HBM).
        self._head: list[Node | None] = [None, None, None]
        self._tail: list[Node | None] = [None, None, None]
        self.link_free_at = 0.0  # the host link: when the reload in progress ends
        self._moved_down = 0

    # ------------------------------------------------------------------ demotion
    def held(self, tier: int) -> int:
        return self.used[tier]

    def take(self, node: Node) -> None:
        """``node`` left HBM: demoted to DRAM (or NVMe, when DRAM is absent or too small), making room there."""
        node.refs = 0
        node.children = 0
        tier = DRAM if node.own <= self.capacity[DRAM] else NVME
        self._put(node, tier)

    def _put(self, node: Node, tier: int) -> None:
        if node.own > self.capacity[tier]:
            if tier == DRAM:
                self._put(node, NVME)
                return
            self.demoted[tier] += node.own
            self.dropped[tier] += node.own
            return
        while self.used[tier] + node.own > self.capacity[tier]:
            self._spill(tier)
        self.nodes[node.key] = node
        self.tier_of[node.key] = tier
        self.used[tier] += node.own
        self.demoted[tier] += node.own
        tail = self._tail[tier]
        node.older = tail
        node.newer = None
        if tail is None:
            self._head[tier] = node
        else:
            tail.newer = node
        self._tail[tier] = node

    def _spill(self, tier: int) -> None:
        """The oldest node of ``tier`` moves down (DRAM -> NVMe) or is dropped (NVMe, or DRAM without NVMe)."""
        n = self._head[tier]
        assert n is not None
        self._remove(n, tier)
        if tier == DRAM and self.capacity[NVME] > 0:
            self._moved_down += n.own
            self._put(n, NVME)
        else:
            self.dropped[tier] += n.own

    def _remove(self, n: Node, tier: int) -> None:
        older, newer = n.older, n.newer
        if older is None:
            self._head[tier] = newer
        else:
            older.newer = newer
        if newer is None:
            self._tail[tier] = older
        else:
            newer.older = older
        n.older = n.newer = None
        del self.nodes[n.key]
        del self.tier_of[n.key]
        self.used[tier] -= n.own

    def discard(self, key: int) -> None:
        n = self.nodes.get(key)
        if n is not None:
            tier = self.tier_of[key]
            self._remove(n, tier)
            self.dropped[tier] += n.own

    # ------------------------------------------------------------------ reload
    def path(self, keys: Iterable[int], kv: KvCache, hbm: Node | None) -> list[Node]:
        """The lower-tier nodes that extend ``hbm`` (the call's deepest HBM hit) deepest along ``keys`` (the
        call's prefix keys, deepest first), shallowest first; empty when no lower tier holds a deeper prefix.

        The deepest held key is followed up its parent pointers to HBM; a node no longer held (dropped) cuts the
        chain, and only the part above it counts."""
        nodes = self.nodes
        stop = -1 if hbm is None else hbm.key
        found: Node | None = None
        for k in keys:
            if k == stop:
                return []
            n = nodes.get(k)
            if n is not None:
                found = n
                break
        out: list[Node] = []
        n2 = found
        while n2 is not None:
            if nodes.get(n2.key) is n2:
                out.append(n2)
            elif kv.nodes.get(n2.key) is n2:
                break  # reached HBM
            else:
                out.clear()  # dropped: nothing below it is usable
            n2 = n2.parent
        if n2 is not hbm:
            return []  # the chain reaches HBM elsewhere than the call's hit (or not at all, while it has one)
        out.reverse()
        return out

    def reload(self, nodes: list[Node], kv: KvCache, now: float) -> tuple[Node | None, int, int, float]:
        """Take ``nodes`` (shallowest first, from :meth:`path`; HBM room made for them) back into HBM, as far as
        they are still held; returns (the deepest node reloaded, DRAM tokens, NVMe tokens, seconds until the
        reload ends on the host link)."""
        moved = [0, 0, 0]
        deepest: Node | None = None
        for n in nodes:
            tier = self.tier_of.get(n.key, 0)
            if tier == 0 or self.nodes.get(n.key) is not n:
                break  # spilled while HBM room was made: the rest is computed
            self._remove(n, tier)
            self.reloaded[tier] += n.own
            moved[tier] += n.own
            kv.promote(n, now)
            deepest = n
        plan = self.plan
        seconds = 0.0
        if moved[DRAM]:
            seconds += moved[DRAM] * plan.kv_bytes_per_token / plan.dram_bytes_per_s
        if moved[NVME]:
            seconds += moved[NVME] * plan.kv_bytes_per_token / plan.nvme_bytes_per_s
        if seconds == 0.0:
            return deepest, moved[DRAM], moved[NVME], 0.0
        start = now if self.link_free_at < now else self.link_free_at
        self.link_free_at = start + seconds
        return deepest, moved[DRAM], moved[NVME], start + seconds - now

    def moved_down(self) -> int:
        """Tokens that went from DRAM down to NVMe."""
        return self._moved_down

    def clear(self) -> None:
        """After the run: unlink every node (frees them by reference counting)."""
        for n in self.nodes.values():
            n.older = n.newer = None
            n.parent = None
        self.nodes.clear()
        self.tier_of.clear()
        self._head = [None, None, None]
        self._tail = [None, None, None]
