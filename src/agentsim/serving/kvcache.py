"""Paged KV memory with a prefix cache, at token granularity.

A replica has room for ``capacity`` tokens of KV. Tokens are held in two ways:

* **private** tokens belong to one running call (its uncached prompt while it is computed, then its output);
* **cached** tokens live in prefix *nodes*. A node is the block-aligned prompt of one call (or a workload's
  shared system prompt); it stores only its increment over its cached parent, so a chain of agent steps whose
  contexts extend each other costs each token once, like vLLM's hashed blocks or SGLang's radix tree.

A node is *evictable* when no running call references it and it has no cached children: eviction always takes a
leaf, so a cached node implies its whole prefix is cached, and the cached prefix length of a call is the full
length of the deepest cached node on its ancestry (one dict lookup in the common case). Among evictable nodes
the least recently used goes first, ties to the one that became evictable first: an LRU list for the nodes that
become evictable in time order (nearly all), plus a heap with lazy invalidation for the rest (see
:meth:`KvCache._push`).

This module is pure logic: no clock, no simpy. Times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from agentsim.engine.minheap import Keyed, pop, push


@dataclass(slots=True, init=False)
class Node:
    """One cached prefix: ``length`` tokens in total, ``own`` of them stored here (the rest in ancestors)."""

    key: int
    parent: Node | None
    length: int
    own: int
    refs: int
    children: int
    last_use: float
    stamp: int
    # Evictable nodes whose key is the newest are kept in a list in eviction order (see KvCache): links.
    older: Node | None = field(default=None, repr=False, compare=False)
    newer: Node | None = field(default=None, repr=False, compare=False)
    listed: bool = field(default=False, repr=False, compare=False)

    # Written out: a generated dataclass __init__ would run as interpreted code in this compiled module.
    def __init__(
        self,
        key: int,
        parent: Node | None,
        length: int,
        own: int,
        refs: int = 0,
        children: int = 0,
        last_use: float = 0.0,
        stamp: int = 0,
    ) -> None:
        self.key = key
        self.parent = parent
        self.length = length
        self.own = own
        self.refs = refs
        self.children = children
        self.last_use = last_use
        self.stamp = stamp
        self.older = None
        self.newer = None
        self.listed = False


class LowerTier:
    """Where HBM evictions go: the base drops them (no offload). :class:`agentsim.serving.tiers.Tiers` keeps them
    in host DRAM and NVMe instead (KV offload). The hook lives here so that this module need not import that one."""

    def take(self, node: Node) -> None:
        """``node`` (a leaf, unreferenced) has just left HBM: keep it or let it go."""

    def discard(self, key: int) -> None:
        """A node under ``key`` is being cached in HBM anew: forget any older copy below."""

    def held(self, tier: int) -> int:
        """Tokens held in lower tier ``tier`` (1: host DRAM, 2: NVMe)."""
        return 0


class Candidate(Keyed):
    """An eviction candidate: the node cached under ``key``, by last use (``t``), then push order (``seq``).
    Stale unless the node is still cached under ``key`` with the same ``stamp`` (see :meth:`KvCache.make_room`)."""

    __slots__ = ("key",)

    def __init__(self, last_use: float, stamp: int, key: int) -> None:
        super().__init__(last_use, stamp)
        self.key = key


@dataclass(slots=True)
class KvCache:
    """KV token accounting and the prefix tree of one replica.

    Invariant (checked by :meth:`check`): ``private + cached <= capacity`` where ``cached`` is the sum of
    ``own`` over nodes; a node's parent is cached; ``children`` counts cached children.
    """

    capacity: int
    block: int = 16
    enabled: bool = True
    private: int = 0
    cached: int = 0
    nodes: dict[int, Node] = field(default_factory=dict)
    _heap: list[Keyed] = field(default_factory=list)  # Candidate entries
    _oldest: Node | None = field(default=None, repr=False)  # the eviction list (see _push), oldest first
    _newest: Node | None = field(default=None, repr=False)
    _stamp: int = 0
    evicted_tokens: int = 0
    lower: LowerTier | None = None  # KV offload: evicted nodes are demoted there instead of dropped

    # ------------------------------------------------------------------ queries
    @property
    def free(self) -> int:
        """Tokens not held by anyone (evictable cached tokens are *not* counted: they are still held)."""
        return self.capacity - self.private - self.cached

    def lower_tokens(self, tier: int) -> int:
        """KV tokens held in lower tier ``tier`` (1: host DRAM, 2: NVMe; serving/tiers.py); 0 without one."""
        return 0 if self.lower is None else self.lower.held(tier)

    def aligned(self, tokens: int) -> int:
        """``tokens`` rounded down to whole blocks: only full blocks are cached and shared."""
        return tokens - tokens % self.block

    def find(self, keys: list[int]) -> Node | None:
        """The first cached node among ``keys`` (the call's own node, then its ancestors, deepest first)."""
        if not self.enabled:
            return None
        nodes = self.nodes
        for k in keys:
            n = nodes.get(k)
            if n is not None:
                return n
        return None

    # ------------------------------------------------------------------ references
    def ref(self, node: Node) -> None:
        """A running call uses ``node``: it may not be evicted until :meth:`unref`."""
        if node.listed:
            self._unlist(node)
        node.refs += 1

    def unref(self, node: Node, now: float) -> None:
        """Drop one reference; a node left unreferenced and childless becomes evictable."""
        node.refs -= 1
        node.last_use = now
        if node.refs == 0 and node.children == 0:
            self._push(node)

    def _push(self, node: Node) -> None:
        """``node`` became evictable: it competes by ``(last_use, stamp)``, the stamp a fresh push counter.

        Almost always its last use is now, the newest of all candidates, so it goes to the tail of the eviction
        list, which stays sorted by ``(last_use, stamp)`` and is unlinked from in O(1) when the node is used
        again (the next step of the agent pins it). Only a node whose last use is older than the tail's (a parent
        left childless by an eviction, a refused admission's prefix) goes to the heap, where an entry whose node
        was used again goes stale and is skipped. (With the heap alone, every such reuse left a stale entry
        behind, and popping them was a tenth of a long run.)"""
        self._stamp += 1
        node.stamp = self._stamp
        tail = self._newest
        if tail is None or node.last_use >= tail.last_use:
            node.listed = True
            node.older = tail
            node.newer = None
            if tail is None:
                self._oldest = node
            else:
                tail.newer = node
            self._newest = node
        else:
            push(self._heap, Candidate(node.last_use, self._stamp, node.key))

    def _unlist(self, node: Node) -> None:
        """Take ``node`` out of the eviction list."""
        older, newer = node.older, node.newer
        if older is None:
            self._oldest = newer
        else:
            older.newer = newer
        if newer is None:
            self._newest = older
        else:
            newer.older = older
        node.older = node.newer = None
        node.listed = False

    def _next_victim(self) -> Node | None:
        """The evictable node of smallest ``(last_use, stamp)``: the list's head or the heap's first live entry."""
        heap = self._heap
        nodes = self.nodes
        while heap:
            e = cast(Candidate, heap[0])
            n = nodes.get(e.key)
            if n is None or n.stamp != e.seq or n.refs or n.children:
                pop(heap)  # stale entry: the node was used again, gained a child, or is gone
                continue
            head = self._oldest
            if head is not None and (head.last_use < e.t or (head.last_use == e.t and head.stamp < e.seq)):
                return head
            pop(heap)
            return n
        return self._oldest

    # ------------------------------------------------------------------ allocation
    def make_room(self, tokens: int) -> bool:
        """Evict least-recently-used leaves until ``tokens`` are free. True if they are.

        Evicting a leaf may make its parent a leaf; it then competes by its own last use.
        """
        while self.free < tokens:
            n = self._next_victim()
            if n is None:
                break
            self.evict(n)
        return self.free >= tokens

    def evict(self, n: Node) -> None:
        """Take evictable node ``n`` out of HBM: dropped, or demoted to the lower tiers (KV offload)."""
        if n.listed:
            self._unlist(n)
        del self.nodes[n.key]
        self.cached -= n.own
        self.evicted_tokens += n.own
        p = n.parent
        if p is not None:
            p.children -= 1
            if p.children == 0 and p.refs == 0:
                self._push(p)
        if self.lower is not None:
            self.lower.take(n)

    def promote(self, n: Node, now: float) -> None:
        """Bring ``n`` (taken out of a lower tier; its parent cached in HBM) back into HBM, unreferenced: the
        caller makes room for its ``own`` tokens first."""
        self.nodes[n.key] = n
        self.cached += n.own
        n.refs = 0
        n.children = 0
        n.last_use = now
        n.older = n.newer = None
        n.listed = False
        p = n.parent
        if p is not None:
            if p.listed:
                self._unlist(p)
            p.children += 1
        self._push(n)

    def park(self, n: Node) -> None:
        """Demote ``n`` and its ancestors while they are evictable, up to (not including) a shared node (a
        workload's system prompt or a hash block: negative keys): an agent's own context leaves HBM while its
        tool runs (KV offload ``on_tool_wait``)."""
        cur: Node | None = n
        while cur is not None and cur.key >= 0 and cur.refs == 0 and cur.children == 0:
            if self.nodes.get(cur.key) is not cur:
                break
            p = cur.parent
            self.evict(cur)
            cur = p

    def reserve(self, node: Node | None, tokens: int) -> bool:
        """Admission: pin ``node`` (the call's cached prefix, if any) and make ``tokens`` free. On failure the pin
        is undone without touching the node's recency (a refused admission is not a use) and False returned."""
        if node is not None:
            self.ref(node)
        if self.make_room(tokens):
            return True
        if node is not None:
            node.refs -= 1
            if node.refs == 0 and node.children == 0:
                self._push(node)
        return False

    def insert(self, key: int, parent: Node | None, length: int, now: float) -> Node:
        """Cache a new node of total ``length`` tokens under ``parent`` and return it, referenced once.

        The caller moves ``length - parent.length`` tokens from its private holding into the node, so the
        total held does not change.
        """
        base = parent.length if parent is not None else 0
        if self.lower is not None:
            self.lower.discard(key)
        n = Node(key, parent, length, length - base, refs=1, last_use=now)
        self.nodes[key] = n
        self.cached += n.own
        self.private -= n.own
        if parent is not None:
            if parent.listed:
                self._unlist(parent)
            parent.children += 1
        return n

    def clear(self) -> None:
        """Forget every cached node (the end of a run: frees them by reference counting, at once)."""
        n = self._oldest
        while n is not None:  # unlink, so the list's references do not keep nodes alive in cycles
            nxt = n.newer
            n.older = n.newer = None
            n.listed = False
            n = nxt
        self._oldest = self._newest = None
        self.nodes.clear()
        self._heap.clear()

    def check(self) -> None:
        """Assert the accounting invariants (used by tests)."""
        assert self.private >= 0, self.private
        assert self.private + self.cached <= self.capacity, (self.private, self.cached, self.capacity)
        assert self.cached == sum(n.own for n in self.nodes.values())
        kids: dict[int, int] = {}
        for n in self.nodes.values():
            assert n.refs >= 0 and n.own >= 0
            if n.parent is not None:
                assert self.nodes.get(n.parent.key) is n.parent, "a cached node's parent must be cached"
                kids[n.parent.key] = kids.get(n.parent.key, 0) + 1
        for n in self.nodes.values():
            assert n.children == kids.get(n.key, 0)
        # The eviction list: cached, evictable nodes, sorted by (last_use, stamp), consistently linked.
        prev: Node | None = None
        at = self._oldest
        while at is not None:
            assert at.listed and self.nodes.get(at.key) is at and at.refs == 0 and at.children == 0
            assert at.older is prev
            if prev is not None:
                assert (prev.last_use, prev.stamp) < (at.last_use, at.stamp)
            prev, at = at, at.newer
        assert self._newest is prev
        # Every evictable node competes: listed, or with a live heap entry.
        live = set()
        for e in self._heap:
            c = self.nodes.get(cast(Candidate, e).key)
            if c is not None and c.stamp == e.seq:
                live.add(c.key)
        for n in self.nodes.values():
            if n.refs == 0 and n.children == 0:
                assert n.listed or n.key in live, n.key
