"""Prefix-cache bookkeeping of a call on a replica: find its longest cached prefix, cache its prompt.

A call names its prefix in one of two ways. Agent steps link to the call whose prompt they extend (``parent``)
and to the workload's shared system prompt (``root_key``): :func:`find` walks up the chain to the deepest cached
ancestor, and :func:`cache_prompt` stores the call's block-aligned prompt as one node holding only its increment
(docs/DESIGN.md, Engine, KV granularity). A prompt of which later calls share only a part (``Call.stable``: the
reasoning it keeps is dropped from the next prompts) is stored as two nodes, that part (found under
``share_key``) and the rest. Replayed traces name it by block hashes (Mooncake ``hash_ids``): one
node per full block, shared by every prompt that starts with the same blocks (:func:`insert_blocks`).

Pure functions of a :class:`~agentsim.serving.kvcache.KvCache` and a :class:`~agentsim.serving.call.Call`;
the replica (:mod:`agentsim.serving.replica`) calls them at admission and when a prefill completes.
"""

from __future__ import annotations

from collections.abc import Iterator

from agentsim.serving.call import BLOCK_KEY_BASE, Call
from agentsim.serving.kvcache import KvCache, Node


def find(kv: KvCache, c: Call) -> Node | None:
    """The deepest node of ``kv`` that holds a prefix of ``c``'s prompt, or None."""
    if not kv.enabled:
        return None
    nodes = kv.nodes
    if c.blocks is not None:
        blocks = c.blocks
        for i in range(min(len(blocks), c.prompt // c.block_tokens) - 1, -1, -1):
            n = nodes.get(BLOCK_KEY_BASE + blocks[i])
            if n is not None:
                return n
        return None
    n = nodes.get(c.id)
    if n is not None:
        return n
    if c.stable:  # its own stable part, cached while it ran before a preemption
        n = nodes.get(c.share_key)
        if n is not None:
            return n
    # Walk up the chain of prompts this one extends, to the deepest cached one. Under KV pressure whole
    # chains get evicted, and a waiting call is looked up at every step: remember where the walk got to.
    # An ancestor that is finished and not cached here can never be cached here again (a call's node is
    # made only while it runs), so the next lookup on this cache -- this call's, or a later call's whose
    # walk passes through this one -- resumes past it (path compression, as in union-find).
    p = c.memo_from if c.memo_kv is kv else c.parent
    resume = p
    # Every ancestor skipped so far is finished (and uncached). Not with lower KV tiers: a node demoted there can
    # come back into HBM (serving/tiers.py), so no ancestor is settled.
    settled = kv.lower is None
    while p is not None:
        n = nodes.get(p.share_key)  # what a later call shares of p: its prompt, or its stable part
        if n is not None:
            break
        if p.done_s is None:
            settled = False
        p = p.memo_from if p.memo_kv is kv else p.parent
        if settled:
            resume = p
    c.memo_kv = kv
    c.memo_from = resume
    if n is not None:
        return n
    if c.root_key is not None:
        return nodes.get(c.root_key)
    return None


def cache_prompt(kv: KvCache, c: Call, now: float) -> None:
    """The block-aligned prompt becomes a cache node the agent's next step will find."""
    if kv.enabled and c.blocks is not None:
        insert_blocks(kv, c, now)
    elif kv.enabled and c.id not in kv.nodes:
        if not c.nodes and c.root_key is not None and c.root_key not in kv.nodes:
            # First call on this replica to start with the workload's shared system prompt: cache it
            # as its own node so every other task's first call can share it.
            root = kv.aligned(c.root_len)
            if root > 0:
                c.nodes.append(kv.insert(c.root_key, None, root, now))
                c.held = root
        if c.stable:
            # Only the part before the reasoning this prompt keeps is a prefix of later prompts
            # (keep_reasoning: last): a node of its own, which they find under the call's share_key.
            stable = kv.aligned(c.stable)
            if stable > c.held:
                c.nodes.append(kv.insert(c.share_key, c.nodes[-1] if c.nodes else None, stable, now))
                c.held = stable
        length = kv.aligned(c.prompt)
        parent = c.nodes[-1] if c.nodes else None
        if length > c.held:
            node = kv.insert(c.id, parent, length, now)
            c.held = length
            c.nodes.append(node)


def insert_blocks(kv: KvCache, c: Call, now: float) -> None:
    """Cache a hash-identified prompt as a chain of one node per full block (a radix tree of blocks), so
    any later prompt sharing a leading run of blocks finds it, whichever call computed it."""
    bt = c.block_tokens
    blocks = c.blocks
    assert blocks is not None
    parent = c.nodes[-1] if c.nodes else None
    nodes = kv.nodes
    for i in range(c.held // bt, min(len(blocks), c.prompt // bt)):
        key = BLOCK_KEY_BASE + blocks[i]
        node = nodes.get(key)
        if node is None:
            node = kv.insert(key, parent, (i + 1) * bt, now)
        else:
            # Computed concurrently by another call: share its copy and free ours.
            kv.ref(node)
            kv.private -= node.length - c.held
        c.nodes.append(node)
        c.held = node.length
        parent = node


def chain_keys(c: Call) -> Iterator[int]:
    """The cache keys of ``c``'s possible prefixes, deepest first (those :func:`find` looks up, without its
    memo): for the lower KV tiers, which a prefix may have been demoted to (serving/tiers.py). A generator: it runs at
    every admission try with tiers on, and the lookup stops at the first key held or at the call's HBM hit."""
    if c.blocks is not None:
        blocks = c.blocks
        for i in range(min(len(blocks), c.prompt // c.block_tokens) - 1, -1, -1):
            yield BLOCK_KEY_BASE + blocks[i]
        return
    yield c.id
    if c.stable:
        yield c.share_key
    p = c.parent
    while p is not None:
        yield p.share_key
        p = p.parent
    if c.root_key is not None:
        yield c.root_key
