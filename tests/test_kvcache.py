"""The prefix cache's accounting invariants under random operation sequences (hypothesis)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agentsim.serving.kvcache import KvCache, Node


def test_chain_shares_tokens_once() -> None:
    """A chain of agent steps stores each token once: node k holds only its increment over node k-1."""
    kv = KvCache(capacity=10_000, block=16)
    lengths = [1000, 1600, 2400]
    parent: Node | None = None
    for i, length in enumerate(lengths):
        kv.private += length - (parent.length if parent else 0)  # the call's uncached part, computed
        node = kv.insert(i, parent, length, now=float(i))
        kv.unref(node, now=float(i))
        parent = node
    assert kv.cached == lengths[-1]
    assert kv.private == 0
    assert kv.find([2, 1, 0]) is kv.nodes[2]
    kv.check()


def test_eviction_is_lru_over_leaves() -> None:
    kv = KvCache(capacity=3000, block=1)
    # insert() moves a call's private tokens into the node, so each call first holds them privately.
    kv.private += 1000
    a = kv.insert(0, None, 1000, now=0.0)
    kv.private += 500
    b = kv.insert(1, a, 1500, now=1.0)
    kv.private += 500
    c = kv.insert(2, None, 500, now=2.0)
    for n, t in ((a, 0.0), (b, 1.0), (c, 2.0)):
        kv.unref(n, now=t)
    # a has a child, so only b and c are evictable; b is older.
    assert kv.make_room(kv.free + 500)
    assert 1 not in kv.nodes and 0 in kv.nodes and 2 in kv.nodes
    # now a is a leaf again; it is older than c, so it goes next.
    assert kv.make_room(kv.free + 1000)
    assert 0 not in kv.nodes and 2 in kv.nodes
    kv.check()


def test_referenced_nodes_are_never_evicted() -> None:
    kv = KvCache(capacity=1000, block=1)
    kv.private += 600
    n = kv.insert(0, None, 600, now=0.0)  # referenced by its call
    assert not kv.make_room(500)  # only 400 free and nothing evictable
    assert 0 in kv.nodes
    kv.unref(n, now=1.0)
    assert kv.make_room(500)
    assert 0 not in kv.nodes
    kv.check()


ops = st.lists(
    st.tuples(st.sampled_from(["insert", "unref", "room", "ref"]), st.integers(0, 30), st.integers(1, 400)),
    max_size=120,
)


def walk(kv: KvCache, ops: list[tuple[str, int, int]]) -> int:
    """Apply ``ops`` (insert a node under any earlier node or as a new root, take or drop a reference, make
    room) and check after each: the accounting invariants and the eviction list and heap (``check``), that
    referenced nodes survive, and that eviction is least recently used first -- of the nodes evictable before a
    ``make_room``, none that stayed was used less recently than one it evicted. Returns how many evictions
    tested that order (some evicted, some kept)."""
    refs: dict[int, int] = {}
    tested = 0
    for step, (op, key, size) in enumerate(ops):
        now = float(step + 1)
        if op == "insert" and key not in kv.nodes:
            # Any earlier node, or none (a new root): trees with many leaves, so eviction order matters.
            parents = [n for n in kv.nodes.values() if n.key < key]
            pick = size % (len(parents) + 1)
            parent = parents[pick] if pick < len(parents) else None
            base = parent.length if parent is not None else 0
            need = kv.aligned(base + size) - base
            if need <= 0 or not kv.reserve(parent, need):  # pins the parent while making room, as the engine
                continue
            kv.private += need
            kv.insert(key, parent, base + need, now)
            if parent is not None:
                kv.unref(parent, now)
            refs[key] = refs.get(key, 0) + 1
        elif op == "ref" and key in kv.nodes:
            kv.ref(kv.nodes[key])
            refs[key] = refs.get(key, 0) + 1
        elif op == "unref" and refs.get(key, 0) > 0:
            kv.unref(kv.nodes[key], now)
            refs[key] -= 1
        elif op == "room":
            evictable = {k: n.last_use for k, n in kv.nodes.items() if n.refs == 0 and n.children == 0}
            kv.make_room(size)
            gone = [t for k, t in evictable.items() if k not in kv.nodes]
            kept = [t for k, t in evictable.items() if k in kv.nodes]
            if gone and kept:
                tested += 1
                assert max(gone) <= min(kept)
        kv.check()
        for k, r in refs.items():
            if r > 0:
                assert k in kv.nodes, "a referenced node was evicted"
    return tested


@settings(max_examples=200, deadline=None)
@given(ops=ops, capacity=st.integers(500, 5000), block=st.sampled_from([1, 16]))
def test_invariants_hold_under_random_operations(ops: list[tuple[str, int, int]], capacity: int, block: int) -> None:
    """Whatever the sequence, every check of :func:`walk` holds."""
    walk(KvCache(capacity=capacity, block=block), ops)


def test_evictions_are_least_recently_used_first_on_random_trees() -> None:
    """Seeded random walks of 120 operations over branching prefix trees. Hypothesis shrinks towards short,
    chain-like sequences with one evictable leaf, where order never matters (a newest-first mutant passed it);
    these walks test the order at dozens of evictions, counted so the test cannot pass vacuously."""
    tested = 0
    for trial in range(300):
        rnd = random.Random(trial)
        kv = KvCache(capacity=rnd.randint(500, 5000), block=rnd.choice([1, 16]))
        kinds = ["insert", "unref", "room", "ref"]
        tested += walk(kv, [(rnd.choice(kinds), rnd.randint(0, 30), rnd.randint(1, 400)) for _ in range(120)])
    assert tested > 40


def test_refused_reservation_undoes_the_pin_and_keeps_recency() -> None:
    """An admission that does not fit must leave the cache as it was: the prefix it pinned is evictable again
    and still ordered by its last real use (so an older node is still evicted before a newer one)."""
    kv = KvCache(capacity=1000, block=1)
    kv.private += 300
    old = kv.insert(0, None, 300, now=0.0)
    kv.unref(old, now=1.0)
    kv.private += 300
    new = kv.insert(1, None, 300, now=2.0)
    kv.unref(new, now=3.0)
    assert not kv.reserve(old, 2000)  # cannot fit even after evicting everything else
    assert old.refs == 0 and 0 in kv.nodes  # pin undone; the pinned node itself was never evicted
    assert 1 not in kv.nodes  # the unpinned one was evicted while trying
    assert old.last_use == 1.0
    assert kv.make_room(kv.capacity)  # and it is evictable again
    assert not kv.nodes
    kv.check()
