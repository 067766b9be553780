"""The engine's per-sequence step cost (``overhead_s_per_seq``, the presets' ``step_overhead_s_per_seq``).

Against the mathematics: with the cost 0 every step-time path equals the model without it, bit for bit; with a
cost ``s`` each step grows by exactly ``D s`` (``D`` decoding sequences of the whole step, pipeline stages
included), a decode segment of ``k`` steps by ``k D s``; the event-skipping engine still agrees with the
step-by-step reference engine to 1e-9 s on a roofline that carries the cost; a preset's value reaches the
roofline unless the scenario sets one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf import RooflinePerfModel
from agentsim.perf.base import FloatArray, PerfModel
from agentsim.resolve import resolve_engine
from agentsim.serving.admission import FCFS_PREEMPT, NEW_TOKEN_RATIO, NO_EVICT
from agentsim.serving.presets import SGLANG_SEQ_OVERHEAD_S, TRTLLM_SEQ_OVERHEAD_S, VLLM_SEQ_OVERHEAD_S
from engine_harness import run_engine
from reference_engine import RefCall, run_reference
from test_engine_reference import random_case

CATALOG = load_catalog()
DEPLOYMENTS = [
    spec.Deployment(model="llama-3.3-70b", hardware="h200", tp=4, precision="fp8"),
    spec.Deployment(model="llama-3.1-8b", hardware="h100"),
    spec.Deployment(model="llama-3.3-70b", hardware="h100", tp=2, pp=2, precision="fp8"),
    spec.Deployment(model="qwen3-235b-a22b", hardware="b200", tp=8, ep=8, precision="fp8"),
    spec.Deployment(model="deepseek-r1", hardware="h200", tp=8, ep=8, data_parallel_attention=True, precision="fp8"),
    spec.Deployment(model="gpt-oss-120b", hardware="h100", tp=2, precision="fp4"),
]


def roofline(which: int, per_seq: float | None, mfu: float = 0.5, mbu: float = 0.7) -> RooflinePerfModel:
    dep = DEPLOYMENTS[which]
    perf = spec.RooflinePerf(mfu=mfu, mbu=mbu, overhead_s_per_seq=per_seq)
    return RooflinePerfModel(CATALOG.get_hardware(dep.hardware), CATALOG.get_model(dep.model), dep, perf)


step_shape = {
    "which": st.integers(0, len(DEPLOYMENTS) - 1),
    "p": st.sampled_from([0.0, 1.0, 37.0, 512.0, 8192.0]),
    "d": st.integers(0, 2048),
    "c": st.floats(0, 5e7),
    "mfu": st.floats(0.05, 1.0),
    "mbu": st.floats(0.05, 1.0),
}


@settings(max_examples=120, deadline=None)
@given(**step_shape)
def test_zero_cost_is_the_model_without_it(which: int, p: float, d: int, c: float, mfu: float, mbu: float) -> None:
    old, zero = roofline(which, None, mfu, mbu), roofline(which, 0.0, mfu, mbu)
    assert zero.step_time(p, d, c) == old.step_time(p, d, c)
    pairs = p * (0.25 * c + 0.5 * p)
    assert zero.prefill_step_time(p, d, c, 0.25 * c, pairs) == old.prefill_step_time(p, d, c, 0.25 * c, pairs)
    assert np.array_equal(zero.step_times([p, 0.0], [d, d], [c, c]), old.step_times([p, 0.0], [d, d], [c, c]))
    assert zero.decode_total(d, c, 40) == old.decode_total(d, c, 40)
    assert np.array_equal(zero.decode_segment(d, c, 40), old.decode_segment(d, c, 40))
    assert zero.breakdown(p, d, c) == old.breakdown(p, d, c)


@settings(max_examples=120, deadline=None)
@given(**step_shape, cost=st.floats(1e-7, 1e-3))
def test_each_step_grows_by_decoding_sequences_times_cost(
    which: int, p: float, d: int, c: float, mfu: float, mbu: float, cost: float
) -> None:
    old, new = roofline(which, None, mfu, mbu), roofline(which, cost, mfu, mbu)
    extra = d * cost  # every decoding sequence of the step, whatever the pipeline depth
    k = 37
    # differences of two sums of floats: exact up to rounding of the larger terms (seconds of long contexts)
    tol = 1e-13 * old.decode_total(d, c, k) + 1e-15
    assert new.step_time(p, d, c) - old.step_time(p, d, c) == pytest.approx(extra, rel=1e-9, abs=tol)
    pairs = p * (0.25 * c + 0.5 * p)
    grown = new.prefill_step_time(p, d, c, 0.25 * c, pairs) - old.prefill_step_time(p, d, c, 0.25 * c, pairs)
    assert grown == pytest.approx(extra, rel=1e-9, abs=tol + 1e-13 * old.step_time(p, d, c))
    diff = new.step_times([p, 0.0], [d, d], [c, c]) - old.step_times([p, 0.0], [d, d], [c, c])
    assert diff == pytest.approx([extra, extra], rel=1e-9, abs=tol + 1e-13 * old.step_time(p, d, c))
    assert new.decode_total(d, c, k) - old.decode_total(d, c, k) == pytest.approx(k * extra, rel=1e-9, abs=tol)
    steps = new.decode_segment(d, c, k) - old.decode_segment(d, c, k)
    assert steps == pytest.approx(extra * np.arange(1, k + 1), rel=1e-9, abs=tol)
    terms = new.breakdown(p, d, c)
    assert terms.overhead_s == pytest.approx(old.breakdown(p, d, c).overhead_s + extra, rel=1e-12)
    assert terms.total_s == pytest.approx(new.step_time(p, d, c), rel=1e-9)


def test_by_hand_one_decode_step() -> None:
    """70B FP8 on 4 H200, 256 sequences of 2,000 tokens: the step without the cost plus 256 x 100 us."""
    old, new = roofline(0, None), roofline(0, 1e-4)
    assert new.step_time(0, 256, 512_000) == pytest.approx(old.step_time(0, 256, 512_000) + 0.0256, rel=1e-12)


class StepOnly(PerfModel):
    """A roofline seen through ``step_time`` only (prefill chunks not split into prompts), the reference
    engine's view, with its closed-form decode segments: the fast engine's event skipping is what is tested."""

    closed_form_total = True

    def __init__(self, base: RooflinePerfModel) -> None:
        self.base = base

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        return self.base.step_time(prefill_tokens, decode_seqs, context_tokens)

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        return self.base.step_times(prefill_tokens, decode_seqs, context_tokens)

    def decode_segment(self, decode_seqs: int, context0: float, steps: int) -> FloatArray:
        return self.base.decode_segment(decode_seqs, context0, steps)

    def decode_total(self, decode_seqs: int, context0: float, steps: int) -> float:
        return self.base.decode_total(decode_seqs, context0, steps)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), admission=st.sampled_from([FCFS_PREEMPT, NEW_TOKEN_RATIO, NO_EVICT]))
def test_fast_engine_equals_reference_with_per_sequence_cost(seed: int, admission: int) -> None:
    arrivals, roots, engine, capacity = random_case(seed, admission)
    perf = StepOnly(roofline(1, 2e-4))
    fast, rep = run_engine(arrivals, perf, engine, capacity, roots)
    ref = [RefCall(t, p, o, parent, rk, rl) for (t, p, o, parent), (rk, rl) in zip(arrivals, roots, strict=True)]
    busy, _ = run_reference(ref, perf, engine, capacity)
    for f, r in zip(fast, ref, strict=True):
        assert f.first_token_s == pytest.approx(r.first_token_s, abs=1e-9), f.id
        assert f.done_s == pytest.approx(r.done_s, abs=1e-9), f.id
        assert f.preemptions == r.preemptions, f.id
    assert rep.busy_s == pytest.approx(busy, abs=1e-9)


def resolved_perf(pool: spec.PoolSpec) -> spec.RooflinePerf:
    dep = pool.deployment
    filled, _, _ = resolve_engine(pool, CATALOG.get_model(dep.model), CATALOG.get_hardware(dep.hardware))
    assert isinstance(filled.perf, spec.RooflinePerf)
    return filled.perf


@pytest.mark.parametrize(
    ("preset", "value"),
    [("vllm", VLLM_SEQ_OVERHEAD_S), ("sglang", SGLANG_SEQ_OVERHEAD_S), ("trtllm", TRTLLM_SEQ_OVERHEAD_S)],
)
def test_the_preset_fills_the_roofline_and_the_scenario_wins(preset: str, value: float) -> None:
    dep = spec.Deployment(model="llama-3.1-8b", hardware="h100", engine=spec.EngineSpec(preset=preset))
    pool = spec.PoolSpec(name="p", deployment=dep)
    assert resolved_perf(pool).overhead_s_per_seq == value
    engine_set = dep.model_copy(update={"engine": spec.EngineSpec(preset=preset, step_overhead_s_per_seq=7e-5)})
    assert resolved_perf(pool.model_copy(update={"deployment": engine_set})).overhead_s_per_seq == 7e-5
    perf_set = pool.model_copy(update={"perf": spec.RooflinePerf(overhead_s_per_seq=3e-5)})
    assert resolved_perf(perf_set).overhead_s_per_seq == 3e-5
