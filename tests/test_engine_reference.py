"""The event-skipping engine against the plain step-by-step reference engine, on random inputs.

Both must give every call the same first-token and completion times (to 1e-9 s), the same cached tokens and
preemptions, and the same busy-time shares. Inputs are drawn to exercise every mechanism: chunked prefill
(budgets smaller than prompts), admission limits, prefix-cache hits along chains and a shared system prompt,
LRU eviction and preemption by recompute (tight KV capacity), and the KV a call holds for sliding-window layers
(vLLM serving gpt-oss: a window's blocks per admitted call).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsim.perf.base import FunctionPerf
from agentsim.perf.linear import LinearPerfModel
from agentsim.serving.admission import FCFS_PREEMPT, NEW_TOKEN_RATIO, NO_EVICT, EngineConfig
from agentsim.serving.tiers import ON_EVICT, ON_TOOL_WAIT, OffloadPlan
from agentsim.spec import LinearPerf
from engine_harness import run_engine
from reference_engine import RefCall, run_reference

POLICIES = (FCFS_PREEMPT, NEW_TOKEN_RATIO, NO_EVICT)


def random_case(
    seed: int, admission: int = FCFS_PREEMPT, window: bool = False
) -> tuple[list[tuple[float, int, int, int | None]], list[tuple[int | None, int]], EngineConfig, int]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 120))
    t = np.cumsum(rng.exponential(rng.uniform(0.002, 0.2), n))
    arrivals: list[tuple[float, int, int, int | None]] = []
    roots: list[tuple[int | None, int]] = []
    shared = int(rng.integers(0, 400))
    for i in range(n):
        parent = None
        prompt = int(rng.integers(1, 900))
        if i and rng.random() < 0.5:
            parent = int(rng.integers(0, i))
            prompt = arrivals[parent][1] + int(rng.integers(0, 600))
        root = (-1, shared) if (shared and rng.random() < 0.5 and parent is None) else (None, 0)
        if root[0] is not None:
            prompt += shared
        arrivals.append((float(t[i]), prompt, int(rng.integers(1, 300)), parent))
        roots.append(root)
    engine = EngineConfig(
        admission=admission,
        max_num_seqs=int(rng.integers(1, 40)),
        max_batched_tokens=int(rng.integers(40, 2048)),
        chunked_prefill=bool(rng.random() < 0.8),
        prefix_caching=bool(rng.random() < 0.8),
        block_size_tokens=int(rng.choice([1, 16, 64])),
        # SGLang's ratio from its default down to 0: a low ratio over-admits, then retracts.
        init_new_token_ratio=float(rng.choice([0.7, 0.3, 0.05])),
    )
    biggest = max(p + o for _, p, o, _ in arrivals)
    if window:
        # Sliding-window layers (drawn apart, so that the other cases stay as they were): a window of up to 9
        # blocks, worth half, one or two blocks of capacity each (vLLM's groups per full-attention layers).
        wrng = np.random.default_rng(seed + 7)
        blocks = int(wrng.integers(1, 10))
        tokens = math.ceil(blocks * engine.block_size_tokens * float(wrng.choice([0.5, 1.0, 2.0])))
        engine = EngineConfig(
            admission=engine.admission,
            max_num_seqs=engine.max_num_seqs,
            max_batched_tokens=engine.max_batched_tokens,
            chunked_prefill=engine.chunked_prefill,
            prefix_caching=engine.prefix_caching,
            block_size_tokens=engine.block_size_tokens,
            init_new_token_ratio=engine.init_new_token_ratio,
            window_tokens=tokens,
            window_blocks=blocks,
        )
        biggest += tokens
    capacity = int(biggest * rng.uniform(1.0, 6.0))
    return arrivals, roots, engine, capacity


def hashed(arrivals: list[tuple[float, int, int, int | None]], rng: np.random.Generator,
           bt: int) -> list[tuple[int, ...] | None]:
    """Prefix-consistent block hash ids (as in Mooncake traces): a call with a prefix parent repeats the
    parent's leading blocks (sometimes only some of them), then gets fresh ids."""
    out: list[tuple[int, ...] | None] = []
    fresh = 0
    for _, prompt, _, parent in arrivals:
        n = -(-prompt // bt)
        ids: list[int] = []
        if parent is not None:
            pb = out[parent]
            assert pb is not None
            share = min(len(pb), prompt // bt, int(rng.integers(0, len(pb) + 1)))
            ids = list(pb[:share])
        while len(ids) < n:
            ids.append(fresh)
            fresh += 1
        out.append(tuple(ids))
    return out


def compare(seed: int, perf_kind: str, admission: int = FCFS_PREEMPT, window: bool | None = None) -> dict[str, int]:
    if window is None:
        window = bool(np.random.default_rng(seed + 2).random() < 0.3)
    arrivals, roots, engine, capacity = random_case(seed, admission, window)
    rng = np.random.default_rng(seed + 1)
    use_blocks = rng.random() < 0.4
    bt = int(rng.choice([16, 64, 512]))
    blocks = hashed(arrivals, rng, bt) if use_blocks else None
    # Some cases mix in calls that arrive with their KV (the decode side of disaggregated serving).
    # (A one-token call finishes on its prefill replica and is never handed over, so only o > 1 arrives ready.)
    ready = (
        [bool(x) and a[2] > 1 for x, a in zip(rng.random(len(arrivals)) < 0.3, arrivals, strict=True)]
        if rng.random() < 0.4
        else None
    )
    # Some cases give prompts a stable part shorter than the prompt (keep_reasoning: last): cached as two nodes,
    # the later calls sharing only the first.
    stables = (
        [int(rng.integers(1, a[1])) if a[1] > 1 and rng.random() < 0.5 else 0 for a in arrivals]
        if rng.random() < 0.4
        else None
    )
    # Some cases have lower KV tiers (serving/tiers.py): evicted prefixes demoted to DRAM (and NVMe), reloaded
    # at a bandwidth of the order of a step's tokens, agents' contexts parked while a tool runs.
    offload = None
    parks = None
    if rng.random() < 0.5:
        offload = OffloadPlan(
            int(rng.choice([ON_EVICT, ON_TOOL_WAIT])),
            int(capacity * rng.uniform(0.05, 2.0)),
            int(capacity * rng.uniform(0.1, 3.0)) if rng.random() < 0.5 else 0,
            float(rng.uniform(2e4, 2e6)),
            float(rng.uniform(5e3, 5e5)),
            1.0,
        )
        parks = [bool(x) for x in rng.random(len(arrivals)) < 0.4]
    if perf_kind == "linear":
        perf = LinearPerfModel(
            LinearPerf(
                alpha_s=0.004,
                beta_s_per_prefill_token=2e-5,
                gamma_s_per_context_token=3e-7,
                delta_s_per_seq=1e-4,
            )
        )
    else:
        perf = FunctionPerf(lambda p, d, c: 0.003 + 1e-5 * p + math.sqrt(1e-9 * c + 1e-8 * d))
    fast, rep = run_engine(
        arrivals, perf, engine, capacity, roots, blocks=blocks, block_tokens=bt, ready=ready, stables=stables,
        offload=offload, parks=parks,
    )
    ref = [
        RefCall(t, p, o, parent, rk, rl, blocks[i] if blocks else None, bt, bool(ready and ready[i]),
                stables[i] if stables else 0, bool(parks and parks[i]))
        for i, ((t, p, o, parent), (rk, rl)) in enumerate(zip(arrivals, roots, strict=True))
    ]
    for r in ref:
        if r.ready:
            r.generated = 1
            r.first_token_s = r.arrival_s
    busy, _ = run_reference(ref, perf, engine, capacity, offload)
    for f, r in zip(fast, ref, strict=True):
        assert f.done_s is not None and r.done_s is not None
        assert f.first_token_s == pytest.approx(r.first_token_s, abs=1e-9), f.id
        assert f.done_s == pytest.approx(r.done_s, abs=1e-9), f.id
        assert f.preemptions == r.preemptions, f.id
        assert f.cached == r.cached, f.id
        assert f.busy_share_s == pytest.approx(r.busy_s, abs=1e-9), f.id
        assert f.mixed_share_s == pytest.approx(r.busy_prompt_steps_s, abs=1e-9), f.id
        assert tuple(f.reloaded or (0, 0)) == r.reloaded, f.id
        assert f.reload_s == pytest.approx(r.reload_s, abs=1e-9), f.id
    assert rep.busy_s == pytest.approx(busy, abs=1e-9)
    # The calls' shares add up to the busy time: every step is charged to someone, once.
    assert sum(c.busy_share_s for c in fast) == pytest.approx(rep.busy_s, rel=1e-9)
    rep.kv.check()
    tiers = rep.tiers
    if tiers is not None:  # tokens conserved across tiers: what entered a tier left it or is still there
        assert tiers.demoted[1] - tiers.reloaded[1] - tiers.dropped[1] - tiers.moved_down() == tiers.used[1]
        assert tiers.demoted[2] - tiers.reloaded[2] - tiers.dropped[2] == tiers.used[2]
        assert tiers.demoted[1] + tiers.demoted[2] - tiers.moved_down() == rep.kv.evicted_tokens
    return {
        "windowed": int(engine.window_blocks > 0),
        "reloaded": sum(sum(c.reloaded or (0, 0)) for c in fast),
        "stable": int(stables is not None and blocks is None),
        "blocks": int(blocks is not None),
        "ready": sum(bool(x) for x in ready or []),
        "preemptions": sum(c.preemptions for c in fast),
        "cached": sum(c.cached for c in fast),
        "skipped": rep.steps_skipped,
        "evicted": rep.kv.evicted_tokens,
    }


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["linear", "function"]),
    admission=st.sampled_from(POLICIES),
)
def test_fast_engine_equals_reference(seed: int, kind: str, admission: int) -> None:
    compare(seed, kind, admission)


@pytest.mark.parametrize("admission", POLICIES)
@pytest.mark.parametrize("seed", range(6))
def test_sliding_window_cases_equal_reference(seed: int, admission: int) -> None:
    """With every call holding a window's blocks (gpt-oss under vLLM), the engines still agree, and tight KV still
    preempts or evicts somewhere in these seeds (checked below with the mechanisms)."""
    compare(seed, "linear", admission, window=True)


def test_random_cases_exercise_every_mechanism() -> None:
    """The comparison above is only meaningful if the random cases actually preempt (retract), hit the cache,
    evict and skip steps under every admission policy; check that they do, over a fixed set of seeds.
    Guaranteed-no-evict must never preempt."""
    for admission in POLICIES:
        names = ("windowed", "reloaded", "stable", "blocks", "ready", "preemptions", "cached", "skipped", "evicted")
        totals = dict.fromkeys(names, 0)
        for seed in range(40):
            for kind in ("linear", "function"):
                for k, v in compare(seed, kind, admission).items():
                    totals[k] += v
        if admission == NO_EVICT:
            assert totals.pop("preemptions") == 0, totals
        assert all(v > 0 for v in totals.values()), (admission, totals)
