"""A plain step-by-step engine: the reference the event-skipping engine must agree with to 1e-9 s.

It implements the model written in ``agentsim/serving/replica.py``'s docstring the obvious way: one loop
iteration per engine step, explicit per-call token counts, no step counter arithmetic, no segments, no simpy.
Every admission policy of ``agentsim/serving/admission.py`` is written out here from its description, and so is the
KV an admitted call holds for sliding-window layers (vLLM: ``min(cdiv(n, block), window_blocks)`` blocks of its
longest sequence ``n`` = prompt + output - 1, worth ``window_tokens`` when whole, from admission until freed):
vLLM's fcfs-preempt, TensorRT-LLM's guaranteed-no-evict and SGLang's new-token-ratio (prefill batches first,
retraction by fewest generated tokens, the ratio's decay and reset).
It shares only the prefix-cache bookkeeping (:class:`agentsim.serving.kvcache.KvCache`, tested on its own
invariants) so that the comparison isolates the scheduling, the event skipping and the accounting.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from agentsim.perf.base import PerfModel
from agentsim.serving.admission import (
    NEW_TOKEN_RATIO,
    NO_EVICT,
    RESERVE_CLIP_TOKENS,
    RETRACT_DECODE_STEPS,
    EngineConfig,
)
from agentsim.serving.call import BLOCK_KEY_BASE, STABLE_KEY_BASE
from agentsim.serving.kvcache import KvCache, Node
from agentsim.serving.tiers import NONE, ON_TOOL_WAIT, OffloadPlan, Tiers


@dataclass
class RefCall:
    """Input: one call; output fields are filled by :func:`run_reference`."""

    arrival_s: float
    prompt: int
    output: int
    parent: int | None = None  # index of the call whose prompt is this call's prefix
    root_key: int | None = None
    root_len: int = 0
    blocks: tuple[int, ...] | None = None  # hash ids of block_tokens-token blocks (trace replay)
    block_tokens: int = 0
    ready: bool = False  # arrives with its prompt KV computed elsewhere (decode side of disaggregation)
    stable: int = 0  # the part of its prompt later calls share, when less than the prompt (keep_reasoning: last)
    park: bool = False  # a tool call follows: under on_tool_wait its context leaves HBM when it ends
    # results
    first_token_s: float | None = None
    done_s: float | None = None
    preemptions: int = 0
    cached: int = 0
    busy_s: float = 0.0
    busy_prompt_steps_s: float = 0.0  # share in steps that computed prompt tokens
    reloaded: tuple[int, int] = (0, 0)  # tokens reloaded from DRAM, NVMe at its (first-token) admission
    reload_s: float = 0.0
    # state
    generated: int = 0
    target: int = 0
    computed: int = 0
    kv: int = 0  # tokens of this call in KV (cached part included)
    held: int = 0
    window: int = 0  # KV held for sliding-window layers while admitted
    nodes: list[Node] = field(default_factory=list)
    decoding: bool = False
    loading_until: float | None = None  # admitted, its prefix reloading from a lower KV tier until then


def run_reference(
    calls: list[RefCall], perf: PerfModel, engine: EngineConfig, capacity: int, offload: OffloadPlan | None = None
) -> tuple[float, KvCache]:
    """Simulate ``calls`` (sorted by arrival) on one replica, step by step. Returns (busy seconds, cache).

    ``offload``: lower KV tiers (serving/tiers.py). Their bookkeeping (demotion, spilling, which chain is still
    held, the host link's FIFO) is the shared :class:`Tiers`, as the prefix tree is the shared KvCache; the
    scheduling around it is written out here: an admitted call whose prefix is reloaded waits until its reload
    ends, holding its KV, then joins the prefilling calls (in the order the reloads end)."""
    kv = KvCache(capacity, engine.block_size_tokens, engine.prefix_caching)
    tiers: Tiers | None = None
    if offload is not None and offload.policy != NONE and engine.prefix_caching:
        tiers = Tiers(offload)
        kv.lower = tiers
    park_tools = tiers is not None and offload is not None and offload.policy == ON_TOOL_WAIT
    pre: list[int] = []  # calls computing their prompt, in the order they became able to (admission or reload)
    adm = engine.admission
    sglang = adm == NEW_TOKEN_RATIO
    ratio_start = engine.init_new_token_ratio  # SGLang's new-token ratio: its value when last set ...
    ratio_steps = 0  # ... and the decode steps since
    waiting: deque[int] = deque()
    running: list[int] = []  # admission order
    arrivals = deque(sorted(range(len(calls)), key=lambda i: calls[i].arrival_s))
    t = 0.0
    busy = 0.0

    def keys_of(i: int) -> list[int]:
        c = calls[i]
        if c.blocks is not None:
            full = min(len(c.blocks), c.prompt // c.block_tokens)
            return [BLOCK_KEY_BASE + h for h in reversed(c.blocks[:full])]
        keys = [i] + ([STABLE_KEY_BASE + i] if c.stable else [])
        p = c.parent
        while p is not None:
            keys.append(STABLE_KEY_BASE + p if calls[p].stable else p)  # what later calls share of p
            p = calls[p].parent
        if c.root_key is not None:
            keys.append(c.root_key)
        return keys

    def find(i: int) -> Node | None:
        if not kv.enabled:
            return None
        return kv.find(keys_of(i))

    def release_nodes(c: RefCall, now: float) -> None:
        for n in c.nodes:
            kv.unref(n, now)
        c.nodes = []

    def cache_prompt(i: int, now: float) -> None:
        c = calls[i]
        if kv.enabled and c.blocks is not None:
            parent = c.nodes[-1] if c.nodes else None
            for b in range(c.held // c.block_tokens, min(len(c.blocks), c.prompt // c.block_tokens)):
                key = BLOCK_KEY_BASE + c.blocks[b]
                node = kv.nodes.get(key)
                if node is None:
                    node = kv.insert(key, parent, (b + 1) * c.block_tokens, now)
                else:
                    kv.ref(node)
                    kv.private -= node.length - c.held
                c.nodes.append(node)
                c.held = node.length
                parent = node
        elif kv.enabled and i not in kv.nodes:
            if not c.nodes and c.root_key is not None and c.root_key not in kv.nodes:
                root = kv.aligned(c.root_len)
                if root > 0:
                    c.nodes.append(kv.insert(c.root_key, None, root, now))
                    c.held = root
            if c.stable and kv.aligned(c.stable) > c.held:
                # The shared part of a prompt that keeps reasoning later prompts drop: a node of its own.
                stable = kv.aligned(c.stable)
                c.nodes.append(kv.insert(STABLE_KEY_BASE + i, c.nodes[-1] if c.nodes else None, stable, now))
                c.held = stable
            length = kv.aligned(c.prompt)
            parent = c.nodes[-1] if c.nodes else None
            if length > c.held:
                c.nodes.append(kv.insert(i, parent, length, now))
                c.held = length

    def release(i: int) -> None:
        """Preempt / retract running call ``i`` by recompute; it goes back to the front of the queue."""
        c = calls[i]
        running.remove(i)
        if i in pre:
            pre.remove(i)
        kv.private -= c.kv - c.held + c.window
        release_nodes(c, t)
        c.kv = c.held = c.computed = c.window = 0
        c.decoding = False
        c.loading_until = None
        c.ready = False
        c.preemptions += 1
        waiting.appendleft(i)

    def future_kv() -> int:
        """KV tokens the running calls will still add by decoding (guaranteed-no-evict)."""
        return sum(calls[j].output - calls[j].generated - (0 if calls[j].decoding else 1) for j in running)

    def window(i: int) -> int:
        """KV tokens call ``i`` holds for sliding-window layers while admitted, written out from the rule."""
        if engine.window_blocks == 0:
            return 0
        c = calls[i]
        blocks = min(math.ceil((c.prompt + c.output - 1) / engine.block_size_tokens), engine.window_blocks)
        return math.ceil(engine.window_tokens * blocks / engine.window_blocks)

    def clipped(i: int) -> int:
        return min(calls[i].output - calls[i].generated, RESERVE_CLIP_TOKENS)

    hold = 0  # SGLang: tokens held back for the running calls and this batch's earlier admissions

    def extra(i: int, ready: bool, decodes: int) -> int:
        """KV beyond the uncached prompt that must be free to admit call ``i``."""
        c = calls[i]
        left = c.output - c.generated
        if adm == NO_EVICT:
            return (left if ready else left - 1) + future_kv()
        if sglang:
            return clipped(i) + hold
        return decodes + 1 if ready else 0

    while arrivals or waiting or running:
        if not waiting and not running:
            t = max(t, calls[arrivals[0]].arrival_s)
        while arrivals and calls[arrivals[0]].arrival_s <= t:
            waiting.append(arrivals.popleft())
        # Reloads that have ended: those calls compute their prompt from this step on.
        loading = [j for j in running if calls[j].loading_until is not None]
        for i in sorted(loading, key=lambda j: calls[j].loading_until or 0.0):
            until = calls[i].loading_until
            if until is not None and until <= t:
                calls[i].loading_until = None
                pre.append(i)

        dec = [i for i in running if calls[i].decoding]
        hold = 0
        if sglang and waiting:
            ratio = engine.new_token_ratio(ratio_start, ratio_steps)
            hold = math.ceil(ratio * sum(clipped(j) for j in running))
        # 1. KV room for decode tokens: evict, then preempt the newest (SGLang: at its decode batch, below).
        if not sglang and dec and kv.free < len(dec) and not kv.make_room(len(dec)):
            while dec and kv.free < len(dec):
                release(running[-1])
                dec = [j for j in running if calls[j].decoding]
        # 1b. KV-ready calls join the decode batch directly.
        while waiting and calls[waiting[0]].ready and len(running) < engine.max_num_seqs:
            i = waiting[0]
            c = calls[i]
            target = c.prompt + c.generated - 1  # KV of the prompt; the first token is not in KV yet
            node = find(i)
            while node is not None and node.length > target:
                node = node.parent
            hit = 0 if node is None else node.length
            c.window = window(i)
            if not kv.reserve(node, target - hit + c.window + extra(i, True, len(dec))):
                c.window = 0
                break
            waiting.popleft()
            if sglang:
                hold += clipped(i)
            kv.private += target - hit + c.window
            c.target, c.held, c.computed, c.kv = target, hit, target, target
            if node is not None:
                c.nodes.append(node)
                node.last_use = t
            running.append(i)
            cache_prompt(i, t)
            c.decoding = True
            dec.append(i)
        # 2. Budget (SGLang: a prefill batch, the decodes take none of it).
        shared = 0 if sglang else len(dec)
        budget = engine.max_batched_tokens - shared
        chunks: dict[int, int] = {}
        ctx = 0 if sglang else sum(calls[i].kv for i in dec)
        for i in pre:
            c = calls[i]
            if budget <= 0:
                continue
            left = c.target - c.computed
            chunk = left if (left <= budget or not engine.chunked_prefill) else budget
            if chunk > budget and (shared or chunks):
                chunk = 0
            if chunk:
                chunks[i] = chunk
                budget -= chunk
                ctx += c.computed
        while waiting and budget > 0 and len(running) < engine.max_num_seqs:
            i = waiting[0]
            c = calls[i]
            if c.ready:
                break  # a KV-ready call refused memory above: FCFS, nobody passes it
            target = c.prompt + c.generated
            node = find(i)
            while node is not None and node.length >= target:
                node = node.parent
            hit = 0 if node is None else node.length
            need = target - hit
            path: list[Node] = []
            if tiers is not None:
                path = tiers.path(keys_of(i), kv, node)
                while path and path[-1].length >= target:
                    path.pop()
            compute = target - path[-1].length if path else need
            if (
                not engine.chunked_prefill
                and compute > budget
                and (running or budget < engine.max_batched_tokens)
            ):
                break
            c.window = window(i)
            if not kv.reserve(node, need + c.window + extra(i, False, len(dec))):
                c.window = 0
                break
            waiting.popleft()
            if sglang:
                hold += clipped(i)
            moved = 0
            deepest: Node | None = None
            if path:
                assert tiers is not None
                deepest, dram, nvme, wait = tiers.reload(path, kv, t)
                moved = dram + nvme
                if c.generated == 0:
                    c.reloaded, c.reload_s = (dram, nvme), wait
            kv.private += need - moved + c.window
            if node is not None:
                c.nodes.append(node)
                node.last_use = t
            if deepest is not None:
                kv.ref(deepest)
                c.nodes.append(deepest)
                hit = deepest.length
            c.target, c.held, c.computed, c.kv = target, hit, hit, target
            if c.generated == 0:
                c.cached = hit
            running.append(i)
            if moved:
                c.loading_until = t + wait
                continue
            pre.append(i)
            chunk = need if not engine.chunked_prefill else min(need, budget)
            chunks[i] = chunk
            budget -= chunk
            ctx += c.computed
        p_tokens = sum(chunks.values())
        if sglang:
            if p_tokens:
                dec = []  # a prefill batch: the decodes wait
            else:
                # The decode batch: evict, then retract the fewest-generated call (ties: longest prompt, newest).
                retracted = False
                if dec and kv.free < len(dec) and not kv.make_room(len(dec)):
                    while dec and kv.free < len(dec):
                        victim = min(dec, key=lambda j: (calls[j].generated, -calls[j].prompt, -j))
                        release(victim)
                        dec.remove(victim)
                    left = [calls[j] for j in dec]
                    max_new = sum(c.output for c in left)
                    decoded = sum(c.generated for c in left)
                    ratio_start = (
                        min(1.0, (decoded + RETRACT_DECODE_STEPS * len(left)) / max_new)
                        if max_new
                        else engine.init_new_token_ratio
                    )
                    ratio_steps = 0
                    retracted = True
                    if not dec:
                        continue  # all retracted: plan again now (their recompute is the next prefill)
                if dec and not retracted:
                    ratio_steps += 1
                ctx = sum(calls[i].kv for i in dec)
        d = len(dec)
        if p_tokens == 0 and d == 0:
            # Nothing runnable: wait for the next arrival or the end of a reload.
            ends = [calls[j].loading_until for j in running if calls[j].loading_until is not None]
            nxt = [x for x in ends if x is not None] + ([calls[arrivals[0]].arrival_s] if arrivals else [])
            if nxt:
                t = max(t, min(nxt))
            continue
        # 3. One step.
        dt = perf.step_time(p_tokens, d, ctx)
        t += dt
        busy += dt
        tokens = p_tokens + d
        finished: list[int] = []  # decode finishers
        first: list[int] = []  # calls finishing in their prefill step
        for i in dec:
            c = calls[i]
            c.busy_s += dt / tokens
            if p_tokens:
                c.busy_prompt_steps_s += dt / tokens
            c.generated += 1
            c.computed += 1
            c.kv += 1
            kv.private += 1
            if c.generated >= c.output:
                finished.append(i)
        for i, chunk in chunks.items():
            c = calls[i]
            c.busy_s += dt * chunk / tokens
            c.busy_prompt_steps_s += dt * chunk / tokens
            c.computed += chunk
            if c.computed < c.target:
                continue
            cache_prompt(i, t)
            pre.remove(i)
            c.generated += 1
            if c.first_token_s is None:
                c.first_token_s = t
            if c.generated >= c.output:
                first.append(i)
            else:
                c.decoding = True
        # Same order as the engine: prefill finishers in admission order, then decode finishers by id.
        for i in first + sorted(finished):
            c = calls[i]
            kv.private -= c.kv - c.held + c.window
            c.window = 0
            deepest_node = c.nodes[-1] if c.nodes else None
            release_nodes(c, t)
            if park_tools and c.park and deepest_node is not None:
                kv.park(deepest_node)  # a tool call follows: the agent's context leaves HBM
            c.done_s = t
            c.decoding = False
            running.remove(i)
    return busy, kv
