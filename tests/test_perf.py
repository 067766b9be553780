"""Perf models against hand computation and physics: memory arithmetic, the roofline's bounds, agreement of
the scalar, vectorized and segment paths, and table interpolation with each out-of-range policy."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsim import spec
from agentsim.catalog import Catalog, CatalogError, load_catalog
from agentsim.perf import (
    DoesNotFitError,
    FunctionPerf,
    LinearPerfModel,
    PerfModel,
    PerfRangeError,
    RooflinePerfModel,
    TablePerfModel,
    build_perf,
    kv_bytes_per_token,
    kv_capacity_tokens,
    kv_replication,
    weight_bytes_per_gpu,
)
from agentsim.perf.memory import ACTIVATION_RESERVE_GB

CATALOG = load_catalog()
DENSE = ["llama-3.1-8b", "llama-3.3-70b", "llama-3.1-405b"]
FAST = settings(max_examples=60, deadline=None)


def dep(model: str, hardware: str = "h100", tp: int = 1, pp: int = 1, **kw: object) -> spec.Deployment:
    return spec.Deployment.model_validate({"model": model, "hardware": hardware, "tp": tp, "pp": pp, **kw})


def roofline(model: str, hardware: str = "h100", tp: int = 1, pp: int = 1, **kw: object) -> RooflinePerfModel:
    perf = spec.RooflinePerf.model_validate(kw.pop("perf", {}))
    d = dep(model, hardware, tp, pp, **kw)
    return RooflinePerfModel(CATALOG.get_hardware(hardware), CATALOG.get_model(model), d, perf)


# --------------------------------------------------------------------------- memory


def test_kv_bytes_llama_70b_is_320_kib() -> None:
    m = CATALOG.get_model("llama-3.3-70b")
    # 2 (K and V) x 80 layers x 8 KV heads x 128 dims x 2 bytes
    assert kv_bytes_per_token(m, dep("llama-3.3-70b")) == 2 * 80 * 8 * 128 * 2 == 327_680 == 320 * 1024
    assert kv_bytes_per_token(m, dep("llama-3.3-70b", kv_precision="fp8")) == 163_840
    assert kv_bytes_per_token(m, dep("llama-3.3-70b", precision="fp8")) == 163_840
    # an fp4 KV cache is counted at the fp8 size
    assert kv_bytes_per_token(m, dep("llama-3.3-70b", precision="fp4")) == 163_840


def test_kv_bytes_deepseek_mla() -> None:
    m = CATALOG.get_model("deepseek-r1")
    assert kv_bytes_per_token(m, dep("deepseek-r1")) == 61 * (512 + 64) * 2
    assert kv_bytes_per_token(m, dep("deepseek-r1", precision="fp8")) == 61 * (512 + 64)


def test_kv_replication() -> None:
    assert kv_replication(CATALOG.get_model("llama-3.3-70b"), dep("llama-3.3-70b", tp=8)) == 1.0
    # Qwen3-235B has 4 KV heads: at tp 8 each rank holds one head, each head stored twice
    assert kv_replication(CATALOG.get_model("qwen3-235b-a22b"), dep("qwen3-235b-a22b", tp=8)) == 2.0
    # MLA's latent is replicated on every TP rank
    assert kv_replication(CATALOG.get_model("deepseek-r1"), dep("deepseek-r1", tp=8)) == 8.0


def test_weight_bytes_per_gpu() -> None:
    m = CATALOG.get_model("llama-3.3-70b")
    assert weight_bytes_per_gpu(m, dep("llama-3.3-70b", tp=4)) == pytest.approx(70.6e9 * 2 / 4)
    assert weight_bytes_per_gpu(m, dep("llama-3.3-70b", tp=2, pp=2, precision="fp8")) == pytest.approx(
        70.6e9 / 4
    )
    # NVFP4: 4 bits and one FP8 scale per 16 weights = 4.5 bits
    assert weight_bytes_per_gpu(m, dep("llama-3.3-70b", precision="fp4")) == pytest.approx(70.6e9 * 4.5 / 8)


def test_405b_bf16_on_one_h100_does_not_fit() -> None:
    m, h = CATALOG.get_model("llama-3.1-405b"), CATALOG.get_hardware("h100")
    with pytest.raises(DoesNotFitError) as info:
        kv_capacity_tokens(m, h, dep("llama-3.1-405b"))
    message = str(info.value)
    weights_gb = m.params_b * 2
    assert f"weights {weights_gb:.1f} GB" in message
    # the engine sizes its memory from what the driver reports: 79.22 GiB on an H100 "80 GB" (vLLM's log)
    device = 79.22 * 2**30
    assert f"usable {0.9 * device / 1e9:.1f} GB ({device / 1e9:.1f} GB of device memory x 0.90)" in message
    assert message.startswith("llama-3.1-405b bf16 on 1x h100")
    assert isinstance(info.value, ValueError)
    # an overridden capacity does not skip the fit check
    override = dep("llama-3.1-405b", engine={"kv_capacity_tokens": 1000})
    with pytest.raises(DoesNotFitError):
        kv_capacity_tokens(m, h, override)


def test_kv_capacity_by_hand() -> None:
    m, h = CATALOG.get_model("llama-3.3-70b"), CATALOG.get_hardware("h100")
    free_per_gpu = 79.22 * 2**30 * 0.9 - 70.6e9 * 2 / 4 - ACTIVATION_RESERVE_GB * 1e9  # H100: 79.22 GiB seen
    expected = math.floor(free_per_gpu * 4 / 327_680)
    assert kv_capacity_tokens(m, h, dep("llama-3.3-70b", tp=4)) == expected
    # more memory utilization, more tokens; an override wins
    assert (
        kv_capacity_tokens(m, h, dep("llama-3.3-70b", tp=4, engine={"gpu_memory_utilization": 0.95}))
        > expected
    )
    assert kv_capacity_tokens(m, h, dep("llama-3.3-70b", tp=4, engine={"kv_capacity_tokens": 1234})) == 1234


def test_kv_capacity_counts_replication() -> None:
    m, h = CATALOG.get_model("deepseek-r1"), CATALOG.get_hardware("h200")
    d = dep("deepseek-r1", "h200", tp=8, precision="fp8")
    free_per_gpu = 139.81 * 2**30 * 0.9 - 671e9 / 8 - ACTIVATION_RESERVE_GB * 1e9  # H200: 139.81 GiB seen
    assert kv_capacity_tokens(m, h, d) == math.floor(free_per_gpu * 8 / (61 * 576 * 8))


# --------------------------------------------------------------------------- roofline physics


@FAST
@given(
    model=st.sampled_from(DENSE),
    hardware=st.sampled_from(sorted(CATALOG.hardware)),
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2]),
    precision=st.sampled_from(["bf16", "fp8", "fp4"]),
    mbu=st.floats(0.05, 1.0),
    mfu=st.floats(0.05, 1.0),
    decode_seqs=st.integers(1, 1024),
    context=st.floats(0, 4e6),
    prefill=st.sampled_from([0, 0, 1, 512, 8192]),
)
def test_step_never_beats_the_memory_bound(
    model: str,
    hardware: str,
    tp: int,
    pp: int,
    precision: spec.Precision,
    mbu: float,
    mfu: float,
    decode_seqs: int,
    context: float,
    prefill: int,
) -> None:
    perf = roofline(
        model, hardware, tp, pp, precision=precision, perf={"mbu": mbu, "mfu": mfu, "overhead_s": 0}
    )
    m, h = CATALOG.get_model(model), CATALOG.get_hardware(hardware)
    weights = weight_bytes_per_gpu(m, perf.deployment) * perf.deployment.gpus
    kv_read = context * kv_bytes_per_token(m, perf.deployment)
    bound = (weights + kv_read) / (tp * pp * h.hbm_bytes_per_s)
    assert perf.step_time(prefill, decode_seqs, context) >= bound * (1 - 1e-12)
    # and never beats the compute bound either: 2 FLOPs per active parameter per new token
    flops = 2 * m.active_params_b * 1e9 * (prefill + decode_seqs)
    compute_bound = flops / (tp * pp * h.dense_tflops(precision) * 1e12)
    assert perf.step_time(prefill, decode_seqs, context) >= compute_bound


def test_decode_step_by_hand() -> None:
    # Llama-3.1-8B on one H100, one sequence with 1000 tokens of context: memory-bound.
    perf = roofline("llama-3.1-8b", perf={"mfu": 0.5, "mbu": 0.7, "overhead_s": 0.002})
    kv = 2 * 32 * 8 * 128 * 2
    # norms and residual adds (8 hidden) and SwiGLU (3 intermediate) per layer, 16-bit, for the one new token
    elementwise = (8 * 4096 + 3 * 14336) * 2 * 32
    memory = (8.03e9 * 2 + (1000 + 1) * kv + elementwise) / (3.35e12 * 0.7)
    # attention at FlashAttention-3's share of the matmul rate at head dim 128: 616 of MAMF's 794.5 TFLOPS
    compute = 2 * 8.03e9 * 1 / (989.4e12 * 0.5) + 2 * 32 * 32 * (128 + 128) * 1000 / (989.4e12 * 0.5 * 616 / 794.5)
    terms = perf.breakdown(0, 1, 1000)
    assert terms.memory_s == pytest.approx(memory, rel=1e-12)
    assert terms.compute_s == pytest.approx(compute, rel=1e-12)
    assert terms.comm_s == 0.0
    assert perf.step_time(0, 1, 1000) == pytest.approx(max(memory, compute) + 0.002, rel=1e-12)


def test_prefill_chunk_attention_pairs() -> None:
    # one chunk of 100 tokens after 400 cached ones: each attends to the 400, and to the earlier chunk tokens
    perf = roofline("llama-3.1-8b", perf={"mfu": 1.0})
    a = 2 * 32 * 32 * 256
    attention = a * (100 * 400 + 100**2 / 2) / (989.4e12 * 616 / 794.5)  # FlashAttention-3's share at head dim 128
    expected = 2 * 8.03e9 * 100 / 989.4e12 + attention
    assert perf.breakdown(100, 0, 400).compute_s == pytest.approx(expected, rel=1e-12)


def test_tensor_parallel_comm_by_hand() -> None:
    perf = roofline("llama-3.3-70b", "h100", tp=4, perf={"comm_efficiency": 0.8, "collective_latency_s": 5e-6})
    # 2 ring all-reduces per layer of T * hidden * 2 bytes, 2(tp-1)/tp of it through each 450 GB/s link at 80%
    # of its bandwidth, plus 5 us per all-reduce
    t = 64
    expected = 2 * 80 * (t * 8192 * 2) * (2 * 3 / 4) / (450e9 * 0.8) + 2 * 80 * 5e-6
    assert perf.breakdown(0, t, 0).comm_s == pytest.approx(expected, rel=1e-12)
    assert roofline("llama-3.3-70b", "h100", tp=1).breakdown(0, t, 0).comm_s == 0.0


def test_pipeline_parallel_micro_batches_by_formula() -> None:
    """pp stages with pp micro-batches in flight: every sequence gets a token each T_full(N / pp) + pp (p2p +
    collective latency), T_full being the step of all layers on the tp GPUs (docs/FIDELITY.md, the PP model)."""
    knobs = {"comm_efficiency": 0.8, "collective_latency_s": 5e-6, "overhead_s": 0.002}
    one = roofline("llama-3.3-70b", "h100", tp=4, pp=1, perf=knobs)
    for pp, (p, d, c) in itertools.product((2, 4), ((0, 32, 64_000), (2048, 0, 0), (512, 96, 300_000))):
        staged = roofline("llama-3.3-70b", "h100", tp=4, pp=pp, perf=knobs)
        t_full = one.step_time(p / pp, d / pp, c / pp)
        # a hop moves the micro-batch's (p + d) / pp tokens of 8192 16-bit activations: over NVLink within one
        # 8-GPU node, over the 50 GB/s NIC when the 4 x pp GPUs span two nodes
        link = 450e9 if 4 * pp <= 8 else 50e9
        p2p = (p + d) / pp * 8192 * 2 / (link * 0.8)
        assert staged.step_time(p, d, c) == pytest.approx(t_full + pp * (p2p + 5e-6), rel=1e-12)
    # a long-context decode batch: each GPU still streams tp's share of the weights per step, but each stage
    # reads the KV of its own layers only, so twice the GPUs make the step faster
    two = roofline("llama-3.3-70b", "h100", tp=4, pp=2, perf=knobs)
    assert two.step_time(0, 64, 64 * 4000) < one.step_time(0, 64, 64 * 4000)
    # a short-context lone sequence gains next to nothing: every micro-batch still streams all the weights
    assert two.step_time(0, 1, 4000) > 0.99 * one.step_time(0, 1, 4000)
    # decode segments follow the same micro-batch shape
    steps = [two.step_time(0, 64, 64 * 4000 + 64 * j) for j in range(20)]
    assert two.decode_total(64, 64 * 4000, 20) == pytest.approx(sum(steps), rel=1e-12)
    assert two.decode_segment(64, 64 * 4000, 20) == pytest.approx(np.cumsum(steps), rel=1e-12)


def test_moe_reads_only_touched_experts() -> None:
    # per-tensor FP8 scales: this is about which experts a batch reads (block scales slow the dense layers,
    # tests/test_fp8_block_scales.py)
    perf = roofline("qwen3-235b-a22b", "h200", tp=8, precision="fp8", fp8_scales="tensor", perf={"mbu": 1.0})
    m = CATALOG.get_model("qwen3-235b-a22b")
    kv = kv_bytes_per_token(m, perf.deployment) * kv_replication(m, perf.deployment)
    bw = 8 * 4.8e12

    g = 0.73  # grouped GEMMs at <= 256 token copies per expert: DeepGEMM's 256-row efficiency

    def weights_read(tokens: int) -> float:
        memory = perf.breakdown(0, tokens, 0).memory_s - perf.elementwise_s_per_token * tokens
        return memory * bw - tokens * kv

    def expected(experts: float) -> float:
        return (m.dense_params_b + m.expert_params_b * experts / g) * 1e9

    # one token reads exactly its active parameters (1 byte each in fp8), the experts at the grouped efficiency
    assert weights_read(1) == pytest.approx(expected(8), rel=1e-9)
    # T tokens touch E(1 - (1 - k/E)^T) experts on average
    assert weights_read(16) == pytest.approx(expected(128 * (1 - (1 - 8 / 128) ** 16)), rel=1e-9)
    # a large batch reads (almost) every expert, never more
    assert weights_read(4096) == pytest.approx(expected(128), rel=1e-6)
    assert weights_read(4096) <= expected(128) * (1 + 1e-12)


def test_fp4_computes_in_bf16_without_fp4_units() -> None:
    # linear layers only (no context, so no attention math). Without FP4 units FP4 weights are weight-only and
    # the math runs in BF16 (Hopper's MXFP4 kernels take BF16 activations): BF16's peak and GEMM fraction
    h100_bf16 = roofline("llama-3.1-8b", "h100", precision="bf16").breakdown(0, 8192, 0).compute_s
    h100_fp4 = roofline("llama-3.1-8b", "h100", precision="fp4").breakdown(0, 8192, 0).compute_s
    b200_fp8 = roofline("llama-3.1-8b", "b200", precision="fp8").breakdown(0, 8192, 0).compute_s
    b200_fp4 = roofline("llama-3.1-8b", "b200", precision="fp4").breakdown(0, 8192, 0).compute_s
    assert h100_fp4 == pytest.approx(h100_bf16)
    # B200 has FP4 units: twice FP8's peak, at its own measured GEMM fraction
    eff = load_catalog().get_hardware("b200").efficiency
    assert eff is not None and eff.gemm_fp4 is not None and eff.gemm_fp8 is not None
    assert b200_fp4 == pytest.approx(b200_fp8 / 2 * eff.gemm_fp8 / eff.gemm_fp4)


# --------------------------------------------------------------------------- the three paths agree


def _models() -> list[PerfModel]:
    table = spec.TablePerf(
        points=[
            spec.TablePoint(
                prefill_tokens=p, decode_seqs=d, context_tokens=c, step_s=0.01 + 1e-5 * p + 1e-4 * d
            )
            for p in (0, 512, 4096)
            for d in (0, 8, 64, 256)
            for c in (0, 1e5, 1e6)
        ],
        out_of_range="extrapolate",
    )
    return [
        roofline("llama-3.3-70b", "h100", tp=4),
        roofline("qwen3-235b-a22b", "h200", tp=8, precision="fp8"),
        roofline("deepseek-r1", "b200", tp=8, precision="fp4", kv_precision="fp8"),
        LinearPerfModel(
            spec.LinearPerf(
                alpha_s=0.01,
                beta_s_per_prefill_token=1e-4,
                gamma_s_per_context_token=2e-8,
                delta_s_per_seq=1e-5,
            )
        ),
        TablePerfModel(table),
        FunctionPerf(lambda p, d, c: 0.001 + 1e-6 * p * d + math.sqrt(c) * 1e-7),
    ]


def _perf_id(perf: PerfModel) -> str:
    """The model's repr as the test id, but stable across processes: a lambda's repr holds its address, and
    pytest-xdist's workers must collect the same ids."""
    return "FunctionPerf(lambda)" if isinstance(perf, FunctionPerf) else repr(perf)


@pytest.mark.parametrize("perf", _models(), ids=_perf_id)
def test_scalar_equals_vectorized(perf: PerfModel) -> None:
    rng = np.random.default_rng(7)
    n = 300
    p = rng.choice([0.0, 1.0, 100.0, 2048.0, 8192.0, 10_000.0], n) * rng.integers(0, 2, n)
    d = rng.integers(0, 400, n).astype(float)
    c = rng.uniform(0, 2e6, n) * (d + (p > 0) > 0)
    vector = perf.step_times(p, d, c)
    assert vector.dtype == np.float64 and vector.shape == (n,)
    scalar = np.array([perf.step_time(float(a), float(b), float(x)) for a, b, x in zip(p, d, c, strict=True)])
    np.testing.assert_allclose(vector, scalar, rtol=1e-12, atol=0)
    # broadcasting and 2-D shapes
    assert perf.step_times(p.reshape(20, 15), 4.0, 1000.0).shape == (20, 15)


@pytest.mark.parametrize("perf", _models(), ids=_perf_id)
def test_decode_segment_equals_summed_steps(perf: PerfModel) -> None:
    for seqs, context0, steps in [(1, 0.0, 1), (7, 1234.0, 50), (64, 100_000.0, 300), (300, 5e5, 17)]:
        ends = perf.decode_segment(seqs, context0, steps)
        clock, expected = 0.0, []
        for j in range(steps):
            clock += perf.step_time(0.0, float(seqs), context0 + seqs * j)
            expected.append(clock)
        np.testing.assert_allclose(ends, expected, rtol=1e-9)
    assert perf.decode_segment(4, 0.0, 0).shape == (0,)
    with pytest.raises(ValueError, match="steps"):
        perf.decode_segment(4, 0.0, -1)


@FAST
@given(
    alpha=st.floats(0, 0.1),
    beta=st.floats(0, 1e-3),
    gamma=st.floats(0, 1e-6),
    delta=st.floats(0, 1e-3),
    seqs=st.integers(0, 512),
    context0=st.floats(0, 1e6),
    steps=st.integers(1, 400),
)
def test_linear_closed_form_segment(
    alpha: float, beta: float, gamma: float, delta: float, seqs: int, context0: float, steps: int
) -> None:
    perf = LinearPerfModel(
        spec.LinearPerf(
            alpha_s=alpha,
            beta_s_per_prefill_token=beta,
            gamma_s_per_context_token=gamma,
            delta_s_per_seq=delta,
        )
    )
    clock = 0.0
    for j in range(steps):
        clock += perf.step_time(0.0, seqs, context0 + seqs * j)
    ends = perf.decode_segment(seqs, context0, steps)
    assert len(ends) == steps
    assert ends[-1] == pytest.approx(clock, rel=1e-9, abs=1e-300)


# --------------------------------------------------------------------------- table


def _trilinear(p: float, d: float, c: float) -> float:
    """A function multilinear interpolation reproduces exactly (products of different axes only)."""
    return (
        0.01
        + 1e-5 * p
        + 2e-4 * d
        + 3e-8 * c
        + 1e-8 * p * d
        + 2e-12 * p * c
        + 3e-10 * d * c
        + 1e-14 * p * d * c
    )


GRID = {"p": [0.0, 512.0, 2048.0, 8192.0], "d": [0.0, 16.0, 256.0], "c": [0.0, 1e5, 1e6]}


def _never(p: float, d: float, c: float) -> bool:
    return False


def _table(
    fn: Callable[[float, float, float], float] = _trilinear,
    policy: Literal["clip", "extrapolate", "error"] = "clip",
    grid: dict[str, list[float]] = GRID,
    skip: Callable[[float, float, float], bool] = _never,
) -> TablePerfModel:
    points = [
        spec.TablePoint(prefill_tokens=p, decode_seqs=d, context_tokens=c, step_s=fn(p, d, c))
        for p in grid["p"]
        for d in grid["d"]
        for c in grid["c"]
        if not skip(p, d, c)
    ]
    return TablePerfModel(spec.TablePerf(points=points, out_of_range=policy))


def test_table_exact_at_points_and_multilinear_between() -> None:
    rng = np.random.default_rng(3)
    values = {(p, d, c): float(rng.uniform(0.01, 1)) for p in GRID["p"] for d in GRID["d"] for c in GRID["c"]}
    table = _table(lambda p, d, c: values[(p, d, c)])
    assert table.filled_nodes == 0
    for (p, d, c), v in values.items():
        assert table.step_time(p, d, c) == v
    # halfway along one axis: the mean of the two neighbouring nodes
    assert table.step_time(1280.0, 16.0, 1e5) == pytest.approx(
        (values[(512.0, 16.0, 1e5)] + values[(2048.0, 16.0, 1e5)]) / 2
    )
    # a multilinear function is reproduced everywhere inside the grid
    smooth = _table()
    for p, d, c in [(100.0, 3.0, 12345.0), (5000.0, 200.0, 9e5), (8192.0, 0.0, 5e5)]:
        assert smooth.step_time(p, d, c) == pytest.approx(_trilinear(p, d, c), rel=1e-12)
    assert smooth.out_of_range_count == 0


def test_table_fills_missing_nodes_from_a_linear_fit() -> None:
    def linear(p: float, d: float, c: float) -> float:
        return 0.005 + 2e-5 * p + 1e-4 * d + 1e-8 * c

    # only pure-prefill and pure-decode measurements: the mixed nodes are missing
    table = _table(linear, skip=lambda p, d, c: p > 0 and d > 0)
    assert table.filled_nodes == 3 * 2 * 3
    assert table.step_time(1000.0, 100.0, 3e5) == pytest.approx(linear(1000.0, 100.0, 3e5), rel=1e-9)


def test_table_averages_repeated_points() -> None:
    points = [
        spec.TablePoint(prefill_tokens=0, decode_seqs=1, context_tokens=0, step_s=0.010),
        spec.TablePoint(prefill_tokens=0, decode_seqs=1, context_tokens=0, step_s=0.012),
        spec.TablePoint(prefill_tokens=0, decode_seqs=3, context_tokens=0, step_s=0.020),
    ]
    table = TablePerfModel(spec.TablePerf(points=points))
    assert table.step_time(0, 1, 0) == pytest.approx(0.011)
    assert table.step_time(0, 2, 0) == pytest.approx(0.0155)
    # single-valued axes (P and C here) are constant; leaving them is out of range
    assert table.out_of_range_count == 0
    assert table.step_time(0, 2, 500) == pytest.approx(0.0155)
    assert table.out_of_range_count == 1


def test_out_of_range_clip() -> None:
    table = _table(policy="clip")
    assert table.step_time(20_000.0, 16.0, 1e5) == pytest.approx(_trilinear(8192.0, 16.0, 1e5), rel=1e-12)
    assert table.step_time(100.0, 1000.0, 5e6) == pytest.approx(_trilinear(100.0, 256.0, 1e6), rel=1e-12)
    assert table.out_of_range_count == 2
    table.step_times([0.0, 20_000.0, 30_000.0], 0.0, 0.0)
    assert table.out_of_range_count == 4


def test_out_of_range_extrapolate() -> None:
    def linear(p: float, d: float, c: float) -> float:
        return 0.005 + 2e-5 * p + 1e-4 * d + 1e-8 * c

    table = _table(linear, policy="extrapolate")
    # the edge slope continues: a linear function is reproduced outside the grid
    assert table.step_time(16_384.0, 512.0, 2e6) == pytest.approx(linear(16_384.0, 512.0, 2e6), rel=1e-12)
    assert table.out_of_range_count == 1
    falling = _table(lambda p, d, c: 1.0 - 1e-4 * p, policy="extrapolate")
    # never below the cheapest measured step
    assert falling.step_time(50_000.0, 0.0, 0.0) == pytest.approx(1.0 - 1e-4 * 8192)


def test_out_of_range_error() -> None:
    table = _table(policy="error")
    with pytest.raises(PerfRangeError, match=r"prefill_tokens 9000 \(table 0\.\.8192\)"):
        table.step_time(9000.0, 16.0, 1e5)
    assert table.out_of_range_count == 1
    with pytest.raises(PerfRangeError, match="2 of 3 steps"):
        table.step_times([0.0, 9000.0, 9001.0], 0.0, 0.0)
    assert table.out_of_range_count == 3
    assert isinstance(PerfRangeError("x"), ValueError)
    assert table.step_time(8192.0, 256.0, 1e6) == pytest.approx(_trilinear(8192.0, 256.0, 1e6))


def test_table_refuses_huge_grids() -> None:
    points = [
        spec.TablePoint(prefill_tokens=i, decode_seqs=i, context_tokens=i, step_s=1.0) for i in range(101)
    ]
    with pytest.raises(ValueError, match="grid"):
        TablePerfModel(spec.TablePerf(points=points))


# --------------------------------------------------------------------------- build_perf


def test_build_perf_dispatches_on_kind() -> None:
    catalog: Catalog = CATALOG
    d = dep("llama-3.3-70b", "h100", tp=4)
    assert isinstance(build_perf(spec.PoolSpec(name="a", deployment=d), catalog), RooflinePerfModel)
    linear = spec.LinearPerf(alpha_s=0.01)
    assert isinstance(
        build_perf(spec.PoolSpec(name="a", deployment=d, perf=linear), catalog), LinearPerfModel
    )
    table = spec.TablePerf(
        points=[spec.TablePoint(prefill_tokens=0, decode_seqs=1, context_tokens=0, step_s=0.01)]
    )
    assert isinstance(build_perf(spec.PoolSpec(name="a", deployment=d, perf=table), catalog), TablePerfModel)
    with pytest.raises(CatalogError, match="unknown hardware 'h300'"):
        build_perf(spec.PoolSpec(name="a", deployment=dep("llama-3.3-70b", "h300")), catalog)


def test_function_perf_is_a_test_double() -> None:
    perf = FunctionPerf(lambda p, d, c: 0.01)
    assert perf.step_time(1, 2, 3) == 0.01
    np.testing.assert_array_equal(perf.decode_segment(2, 0.0, 3), [0.01, 0.02, 0.03])
