"""Paged KV memory with a prefix cache, at token granularity.

A replica has room for ``capacity`` tokens of KV. Tokens are held in two ways:

* **private** tokens belong to one running call (its uncached prompt while it is computed, then its output);
* **cached** tokens live in prefix *nodes*. A node is the block-aligned prompt of one call (or a workload's
  shared system prompt); it stores only its increment over its cached parent, so a chain of agent steps whose
  contexts extend each other costs each token once, like vLLM's hashed blocks or SGLang's radix tree.

A node is *evictable* when no running call references it and it has no cached children: eviction always takes a
leaf, so a cached node implies its whole prefix is cached, and the cached prefix length of a call is the full
length of the deepest cached node on its ancestry (one dict lookup in the common case). Among evictable nodes
the least recently used goes first (a heap keyed by last use, with lazy invalidation).

This module is pure logic: no clock, no simpy. Times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from agentsim.minheap import Keyed, pop, push


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
    _stamp: int = 0
    evicted_tokens: int = 0

    # ------------------------------------------------------------------ queries
    @property
    def free(self) -> int:
        """Tokens not held by anyone (evictable cached tokens are *not* counted: they are still held)."""
        return self.capacity - self.private - self.cached

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
        node.refs += 1

    def unref(self, node: Node, now: float) -> None:
        """Drop one reference; a node left unreferenced and childless becomes evictable."""
        node.refs -= 1
        node.last_use = now
        if node.refs == 0 and node.children == 0:
            self._push(node)

    def _push(self, node: Node) -> None:
        self._stamp += 1
        node.stamp = self._stamp
        push(self._heap, Candidate(node.last_use, self._stamp, node.key))

    # ------------------------------------------------------------------ allocation
    def make_room(self, tokens: int) -> bool:
        """Evict least-recently-used leaves until ``tokens`` are free. True if they are.

        Evicting a leaf may make its parent a leaf; it then competes by its own last use.
        """
        heap = self._heap
        nodes = self.nodes
        while self.free < tokens and heap:
            e = cast(Candidate, pop(heap))
            key = e.key
            n = nodes.get(key)
            if n is None or n.stamp != e.seq or n.refs or n.children:
                continue  # stale entry: the node was used again, gained a child, or is gone
            del nodes[key]
            self.cached -= n.own
            self.evicted_tokens += n.own
            p = n.parent
            if p is not None:
                p.children -= 1
                if p.children == 0 and p.refs == 0:
                    self._push(p)
        return self.free >= tokens

    def reserve(self, node: Node | None, tokens: int) -> bool:
        """Admission: pin ``node`` (the call's cached prefix, if any) and make ``tokens`` free. On failure the pin
        is undone without touching the node's recency (a refused admission is not a use) and False returned."""
        if node is not None:
            node.refs += 1
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
        n = Node(key, parent, length, length - base, refs=1, last_use=now)
        self.nodes[key] = n
        self.cached += n.own
        self.private -= n.own
        if parent is not None:
            parent.children += 1
        return n

    def clear(self) -> None:
        """Forget every cached node (the end of a run: frees them by reference counting, at once)."""
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
