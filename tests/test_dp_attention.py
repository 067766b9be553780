"""Data-parallel attention's ranks (cause 12 in docs/FIDELITY.md): each of the ``tp`` ranks runs the attention block
for its own sequences and schedules its own share of the token budget (SGLang divides ``--chunked-prefill-size`` by
``dp_size``; TensorRT-LLM's ``max_num_tokens`` is per rank), and the MoE layers wait for the busiest rank, so a step
whose prompt tokens sit on one rank takes that rank's attention time (TensorRT-LLM's "ADP Balance Strategy" blog:
"the iteration time is dominated by the slowest rank")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.engine.clock import Clock
from agentsim.perf.base import FloatArray, PerfModel
from agentsim.perf.linear import LinearPerfModel
from agentsim.perf.roofline import RooflinePerfModel
from agentsim.serving.admission import EngineConfig
from agentsim.serving.call import Call, Callbacks
from agentsim.serving.replica import Replica
from agentsim.spec import LinearPerf

CATALOG = load_catalog()
D = 0.01  # one engine step (alpha only), seconds


def _done_times(ranks: int, calls: int, prompt: int = 2048, budget: int = 1024) -> list[float]:
    """Finish times of ``calls`` prompts of one output token, all arriving at 0, on a replica whose steps take
    ``D`` each, with a ``budget``-token step split between ``ranks`` attention ranks."""
    env = Clock()
    done: list[float] = []
    engine = EngineConfig(max_num_seqs=64, max_batched_tokens=budget, chunked_prefill=True, attention_ranks=ranks)
    rep = Replica(
        env.events,
        0,
        "p",
        LinearPerfModel(LinearPerf(alpha_s=D)),
        engine,
        100_000,
        Callbacks(lambda c, t: None, lambda c, t: done.append(t)),
    )
    for i in range(calls):
        env.events.schedule(0.0, rep.submit, (Call(i, prompt, 1, 0.0),))
    env.run()
    return done


def test_a_calls_chunk_is_one_ranks_share_of_the_budget() -> None:
    """A 2,048-token prompt under a 1,024-token budget: two steps on one scheduler; on four attention ranks its
    rank's share is 256 tokens a step, eight steps."""
    assert _done_times(1, 1) == [pytest.approx(2 * D, abs=1e-12)]
    assert _done_times(4, 1) == [pytest.approx(8 * D, abs=1e-12)]


def test_four_prompts_fill_four_ranks_at_once() -> None:
    """Four such prompts on four ranks prefill side by side, 256 tokens each a step: all four finish after eight
    steps. One scheduler takes them one after another, two steps each (the same eight steps in all)."""
    assert _done_times(4, 4) == [pytest.approx(8 * D, abs=1e-12)] * 4
    assert _done_times(1, 4) == [pytest.approx(k * D, abs=1e-12) for k in (2, 4, 6, 8)]


def _deepseek(dpa: bool) -> RooflinePerfModel:
    dep = spec.Deployment(
        model="deepseek-r1",
        hardware="h200",
        tp=8,
        ep=8 if dpa else 1,
        data_parallel_attention=dpa,
        precision="fp8",
        kv_precision="bf16",
    )
    return RooflinePerfModel(CATALOG.get_hardware("h200"), CATALOG.get_model("deepseek-r1"), dep)


def test_the_busiest_rank_adds_its_attention_block_by_hand() -> None:
    """DeepSeek-R1 on 8 H200 with attention DP: a step of 8,192 prompt tokens in one chunk against the same tokens
    and pairs split evenly over the 8 ranks. The one rank holding the chunk computes all of it where the balanced
    split gave it 1/8: it adds 7/8 of the chunk's attention projections (2 x attention parameters FLOPs a token)
    and 7/8 of its attention core (2 x heads x (192 + 128) FLOPs per query-key pair and layer, MLA's
    unabsorbed prefill), each on one GPU at the efficiencies the model reports for those layers (attention at
    its kernel's share)."""
    m = _deepseek(True)
    model, hw = CATALOG.get_model("deepseek-r1"), CATALOG.get_hardware("h200")
    p = 8192.0
    pairs = p * p / 2.0
    one = m.prefill_step_time(p, 0, 0, 0, pairs, p, pairs)
    even = m.prefill_step_time(p, 0, 0, 0, pairs, p / 8, pairs / 8)
    gpu_dense = hw.dense_tflops("fp8") * 1e12 * m.dense_efficiencies.mfu
    # bf16 KV cache: bf16 attention, at FlashAttention-3's share of the matmul rate for 192-wide queries
    # (616 and 642 of MAMF's 794.5 TFLOPS at head dims 128 and 256, interpolated in log2)
    fa3_192 = (616 + (642 - 616) * math.log2(192 / 128)) / 794.5
    gpu_att = hw.dense_tflops("bf16") * 1e12 * m.efficiencies.mfu_attention * fa3_192
    projections = 2.0 * model.attention_params_b * 1e9 * p / gpu_dense
    core = model.full_attention_layers * 2.0 * model.heads * (192 + 128) * pairs / gpu_att
    assert one - even == pytest.approx((projections + core) * 7 / 8, rel=1e-9)
    assert one - even > 0.1 * even  # not a rounding: a tenth of the step at least


def test_a_balanced_step_and_plain_attention_are_unchanged() -> None:
    """Chunks no larger than a rank's share leave the step as it was; without attention DP the chunk sizes do not
    matter at all (bit for bit)."""
    dpa, tp = _deepseek(True), _deepseek(False)
    p, d, c = 4096.0, 64.0, 64 * 3000.0
    pairs = p * (1000 + p / 2)
    assert dpa.prefill_step_time(p, d, c, 1000, pairs, p / 8, pairs / 8) == dpa.prefill_step_time(
        p, d, c, 1000, pairs, p / 16, pairs / 16
    )
    base = tp.prefill_step_time(p, d, c, 1000, pairs)
    assert all(tp.prefill_step_time(p, d, c, 1000, pairs, big, big * 100) == base for big in (1.0, p / 8, p))
    # the scalar and vectorized one-chunk paths agree
    assert math.isclose(float(dpa.step_times([p], [d], [c])[0]), dpa.step_time(p, d, c), rel_tol=1e-12)


def test_the_plan_lower_bound_takes_the_balanced_split() -> None:
    """The planner's lower bound on replicas must not charge a prefill to one rank (that would raise the bound past
    counts that may meet the targets): its prefill step is the balanced one, below ``step_time``'s one-chunk step
    under DP attention and equal to it without."""
    from agentsim.planning.plan.bounds import _prefill_s

    dpa, tp = _deepseek(True), _deepseek(False)
    p = 8192.0
    assert _prefill_s(dpa, p) == dpa.prefill_step_time(p, 0, 0, 0, p * p / 2, p / 8, p * p / 2 / 8)
    assert _prefill_s(dpa, p) < dpa.step_time(p, 0, 0)
    assert _prefill_s(tp, p) == tp.step_time(p, 0, 0)


def test_speculative_draft_tokens_spread_over_the_ranks() -> None:
    """Speculative verification checks a few draft tokens per sequence: under DP attention they sit on every rank,
    so 64 sequences' 3 draft tokens each on 8 ranks cost the balanced split, not one 192-token chunk on one rank."""
    from agentsim.perf.speculative import SpeculativePerf

    base = _deepseek(True)
    d, c, k = 64.0, 64 * 2000.0, 3
    spec_model = SpeculativePerf(base, k, tokens_per_step=2.0, draft_cost=0.1)
    verify = base.spread_step_time(d * k, d, c, float(k))
    assert verify == base.spread_step_time(d * k, d, c, d * k / 8)  # the even split
    assert verify < base.step_time(d * k, d, c)  # one chunk on one rank
    draft = 0.1 * base.step_time(0.0, d, c)
    assert spec_model.step_time(0.0, d, c) == pytest.approx((verify + k * draft) / 2.0, rel=1e-12)
    # the vectorized path agrees
    assert float(spec_model.step_times([0.0], [d], [c])[0]) == pytest.approx(spec_model.step_time(0.0, d, c), rel=1e-12)


def test_the_replica_hands_its_largest_chunk_to_the_perf_model() -> None:
    """Three prompts of 300, 500 and 200 tokens arriving together fill one step: the perf model is told 1,000
    prompt tokens whose largest chunk is 500 tokens with 500 x 250 query-key pairs."""
    seen: list[tuple[float, ...]] = []

    class Recording(PerfModel):
        def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
            return D

        def step_times(self, prefill_tokens: object, decode_seqs: object, context_tokens: object) -> FloatArray:
            return np.full(np.shape(np.asarray(decode_seqs, dtype=float)), D)

        def prefill_step_time(
            self,
            prefill_tokens: float,
            decode_seqs: float,
            context_tokens: float,
            prefill_context: float,
            prefill_pairs: float,
            largest_chunk: float = -1.0,
            largest_pairs: float = -1.0,
            largest_context: float = -1.0,
        ) -> float:
            seen.append((prefill_tokens, prefill_pairs, largest_chunk, largest_pairs, largest_context))
            return D

    env = Clock()
    engine = EngineConfig(max_num_seqs=8, max_batched_tokens=2048, chunked_prefill=True)
    rep = Replica(
        env.events, 0, "p", Recording(), engine, 100_000,
        Callbacks(lambda c, t: None, lambda c, t: None),
    )  # fmt: skip
    for i, prompt in enumerate((300, 500, 200)):
        env.events.schedule(0.0, rep.submit, (Call(i, prompt, 1, 0.0),))
    env.run()
    pairs = sum(n * n / 2 for n in (300, 500, 200))
    assert seen[0] == (1000, pairs, 500, 500 * 250, 0)


def test_speculative_prefill_takes_the_replicas_largest_chunk() -> None:
    """With speculative decoding the replica's largest chunk still decides the busiest rank: eight 1,024-token
    chunks on eight ranks cost less than the same tokens as one chunk; a prompt shorter than the draft length with
    no decodes is not inflated to the draft length."""
    from agentsim.perf.speculative import SpeculativePerf

    base = _deepseek(True)
    spec_model = SpeculativePerf(base, 3, tokens_per_step=2.0, draft_cost=0.1)
    p, d, c = 8192.0, 64.0, 64 * 2000.0
    spread = spec_model.prefill_step_time(p, d, c, 0.0, p * p / 2, 1024.0, 1024.0 * 512)
    assert spread < spec_model.step_time(p, d, c)
    assert spec_model.prefill_step_time(1.0, 0.0, 0.0, 0.0, 0.5) == spec_model.step_time(1.0, 0.0, 0.0)
    assert spec_model.step_time(1.0, 0.0, 0.0) == pytest.approx(base.step_time(2.0, 0.0, 0.0) / 2.0, rel=1e-12)


def test_the_busiest_rank_up_projects_its_chunks_cached_prefix() -> None:
    """MLA prefill up-projects a chunk's cached latent prefix (2 x 512 x 128 heads x 2 x 128 FLOPs per cached token
    and layer, 61 layers, on the dense layers' rate): under DP attention the rank holding a 1,024-token chunk after
    40,000 cached tokens does that alone, 8 x 40,000 - 40,000 token-equivalents beyond the balanced split."""
    m = _deepseek(True)
    hw = CATALOG.get_hardware("h200")
    per_token = 61 * 2 * 512 * 128 * 2 * 128 / (8 * hw.dense_tflops("fp8") * 1e12 * m.dense_efficiencies.mfu)
    assert m.kv_up_s == pytest.approx(per_token, rel=1e-12)
    p, cp = 1024.0, 40_000.0
    pairs = p * (cp + p / 2)
    c = cp  # no decodes: the step's context is the chunk's prefix
    alone = m.prefill_step_time(p, 0, c, cp, pairs, p, pairs, cp)
    shared = m.prefill_step_time(p, 0, c, cp, pairs, p, pairs, cp / 8)
    assert alone - shared == pytest.approx(m.kv_up_s * 7 * cp, rel=1e-9)
