"""Engine realism in the roofline (issue 14): efficiencies per hardware and precision, MoE imbalance, MLA's
two attention forms. Checked against the formulas and the published figures they come from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf import RooflinePerfModel
from agentsim.perf.efficiency import (
    FALLBACK_MBU,
    FALLBACK_MFU,
    SERVING_GEMM_SHARE,
    SERVING_HBM_SHARE,
    efficiencies,
    resolved_roofline,
    serving_shares,
)
from agentsim.perf.memory import kv_bytes_per_token
from agentsim.perf.moe import a2a_split, imbalance, imbalance_curve
from agentsim.perf.roofline import grouped_gemm_efficiency

CATALOG = load_catalog()


def model_for(perf: dict[str, object] | None = None, **deployment: object) -> RooflinePerfModel:
    d = spec.Deployment.model_validate(deployment)
    p = spec.RooflinePerf.model_validate(perf or {})
    return RooflinePerfModel(CATALOG.get_hardware(d.hardware), CATALOG.get_model(d.model), d, p)


# --------------------------------------------------------------------------- efficiencies


def test_efficiency_defaults_come_from_the_catalog_measurements() -> None:
    # H100: sustained FP8 cuBLASLt 1382.2 of 1978.9 TFLOPS, STREAM triad 2.97 of 3.35 TB/s (Azure guide)
    h100 = CATALOG.get_hardware("h100")
    assert h100.efficiency is not None
    assert h100.efficiency.gemm_fp8 == pytest.approx(1382.2 / 1978.9, abs=0.005)
    assert h100.efficiency.hbm == pytest.approx(2.97 / 3.35, abs=0.005)
    # MI300X: hipBLASLt FP8 1159.2 of 2614.9, STREAM triad 4.09 of 5.3 (Azure guide, MI300X v5)
    mi = CATALOG.get_hardware("mi300x").efficiency
    assert mi is not None and mi.gemm_fp8 == pytest.approx(1159.2 / 2614.9, abs=0.005)
    eff = efficiencies(h100, "fp8", "bf16", spec.RooflinePerf())
    assert eff.mfu == pytest.approx(h100.efficiency.gemm_fp8 * SERVING_GEMM_SHARE)
    assert eff.mfu_attention == pytest.approx(h100.efficiency.gemm_bf16 * SERVING_GEMM_SHARE)  # KV precision
    assert eff.mbu == pytest.approx(h100.efficiency.hbm * SERVING_HBM_SHARE)
    # the serving shares are the documented fit: mean fitted mfu 0.594 over FP8 GEMM 0.694, median mbu 0.77
    # over STREAM 0.875 (docs/FIDELITY.md)
    assert pytest.approx(0.594 / 0.694, abs=0.005) == SERVING_GEMM_SHARE
    assert pytest.approx(0.77 / 0.875, abs=0.005) == SERVING_HBM_SHARE


def test_efficiency_precedence() -> None:
    mi325x, gaudi = CATALOG.get_hardware("mi325x"), CATALOG.get_hardware("gaudi3")
    assert mi325x.efficiency is not None and mi325x.efficiency.gemm_fp8 is None
    # an unmeasured precision takes the nearest measured one (fp8 -> bf16 on MI325X)
    assert efficiencies(mi325x, "fp8", "fp8", spec.RooflinePerf()).mfu == pytest.approx(0.60 * SERVING_GEMM_SHARE)
    # no measurements: the generic priors
    assert efficiencies(gaudi, "bf16", "bf16", spec.RooflinePerf()) == (FALLBACK_MFU, FALLBACK_MFU, FALLBACK_MBU)
    # the scenario's numbers win, for every precision
    assert efficiencies(mi325x, "fp8", "bf16", spec.RooflinePerf(mfu=0.3, mbu=0.4)) == (0.3, 0.3, 0.4)
    only_mbu = efficiencies(mi325x, "bf16", "bf16", spec.RooflinePerf(mbu=0.4))
    assert only_mbu.mbu == 0.4 and only_mbu.mfu == pytest.approx(0.60 * SERVING_GEMM_SHARE)
    # calibration starts from the resolved numbers
    d = spec.Deployment(model="llama-3.1-8b", hardware="mi325x", precision="fp8")
    start = resolved_roofline(spec.RooflinePerf(), mi325x, d)
    assert (start.mfu, start.mbu) == pytest.approx((0.60 * SERVING_GEMM_SHARE, 0.78 * SERVING_HBM_SHARE))


def test_blackwell_has_its_own_serving_shares() -> None:
    """B200 and GB200 carry the shares fitted on their FP4 tables (docs/FIDELITY.md, cause 24), B300 assumes them;
    every other GPU keeps the Hopper-fitted ones; a scenario's numbers still win."""
    for name in ("b200", "gb200", "b300"):
        hw = CATALOG.get_hardware(name)
        assert hw.efficiency is not None
        assert serving_shares(hw) == (0.60, 0.60)
        eff = efficiencies(hw, "fp4", "fp8", spec.RooflinePerf())
        assert eff.mfu == pytest.approx(hw.efficiency.gemm("fp4") * 0.60)  # type: ignore[operator]
        assert eff.mfu_attention == pytest.approx(hw.efficiency.gemm("fp8") * 0.60)  # type: ignore[operator]
        assert eff.mbu == pytest.approx(hw.efficiency.hbm * 0.60)  # type: ignore[operator]
        assert efficiencies(hw, "fp4", "fp8", spec.RooflinePerf(mfu=0.5, mbu=0.7)) == (0.5, 0.5, 0.7)
    for name in ("h100", "h200", "mi300x", "mi325x"):
        assert serving_shares(CATALOG.get_hardware(name)) == (SERVING_GEMM_SHARE, SERVING_HBM_SHARE)
    # a share is a fraction, and the catalog refuses anything else
    b200 = CATALOG.get_hardware("b200")
    assert b200.efficiency is not None
    with pytest.raises(ValueError, match="serving_hbm_share"):
        type(b200.efficiency).model_validate(b200.efficiency.model_dump() | {"serving_hbm_share": 1.2})
    # a share without the fraction it scales would be ignored (the generic prior applies): refused, named
    bare = {"source": "x", "serving_gemm_share": 0.6}
    with pytest.raises(ValueError, match="serving_gemm_share scales a GEMM fraction"):
        type(b200.efficiency).model_validate(bare)
    with pytest.raises(ValueError, match="serving_hbm_share scales the HBM fraction"):
        type(b200.efficiency).model_validate({"source": "x", "gemm_fp8": 0.7, "serving_hbm_share": 0.6})


def test_fp4_weights_without_fp4_units_compute_in_bf16() -> None:
    """Hopper has no FP4 tensor cores: MXFP4 MoE kernels there take BF16 activations (vLLM get_mxfp4_backend,
    TensorRT-LLM's GPT-OSS guide), so FP4 weights get the BF16 peak and BF16 GEMM fraction; on B200 FP4 keeps
    its own. A compute-bound prefill step then takes the BF16 model's GEMM time with FP4's weight bytes."""
    h100, b200 = CATALOG.get_hardware("h100"), CATALOG.get_hardware("b200")
    assert h100.efficiency is not None and b200.efficiency is not None
    fp4 = efficiencies(h100, "fp4", "bf16", spec.RooflinePerf())
    assert fp4.mfu == pytest.approx(h100.efficiency.gemm_bf16 * SERVING_GEMM_SHARE)
    assert efficiencies(b200, "fp4", "bf16", spec.RooflinePerf()).mfu == pytest.approx(
        b200.efficiency.gemm("fp4") * serving_shares(b200)[0]  # type: ignore[operator]
    )
    # gpt-oss-20b on one H100: the FLOP time per token of the linear layers and experts is BF16's (same math
    # rate and fraction; vLLM's Marlin multiplies the experts padded from 2,880 x 2,880 to 2,944 x 3,072), the
    # weights read are FP4's
    a = model_for(model="gpt-oss-20b", hardware="h100", precision="fp4")
    b = model_for(model="gpt-oss-20b", hardware="h100", precision="bf16")
    assert a.deployment.engine.preset == "vllm"
    assert a.lin_s_per_token == pytest.approx(b.lin_s_per_token, rel=1e-12)
    assert a.moe_s_per_token == pytest.approx(b.moe_s_per_token * 2944 * 3072 / 2880**2, rel=1e-12)
    assert a.all_experts_s < 0.5 * b.all_experts_s


def test_memory_bound_decode_runs_at_the_catalog_bandwidth_fraction() -> None:
    # one Llama-3.1-8B sequence, FP8 on one MI300X: weights + KV over 5.3 TB/s x hbm x share
    perf = model_for({"overhead_s": 0}, model="llama-3.1-8b", hardware="mi300x", precision="fp8")
    mbu = 0.78 * SERVING_HBM_SHARE
    kv = kv_bytes_per_token(CATALOG.get_model("llama-3.1-8b"), perf.deployment)
    elementwise = (8 * 4096 + 3 * 14336) * 2 * 32  # norms, residual adds and SwiGLU of the new token, 16-bit
    expected = (8.03e9 + 1001 * kv + elementwise) / (5.3e12 * mbu)
    assert perf.breakdown(0, 1, 1000).memory_s == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- MoE imbalance


def test_imbalance_function_against_its_formula_and_monte_carlo() -> None:
    # DeepSeek-V3 (256 experts, top-8) at EP32: s = 1.87 (sigma 0.8 skew), z = 2.07; mu = T k / ep
    for t in (32, 128, 2048):
        mu = t * 8 / 32
        assert imbalance(t, 256, 8, 32) == pytest.approx(1.87 + 2.07 * math.sqrt(1.87 / mu), rel=1e-12)
    # the noise part alone reproduces the research notes' Monte Carlo of uniform routing within 10% for mu >= 1
    # (DS-V3 EP32 at T = 128: 1.37; EP8 at T = 32: 1.26): s = 1 gives 1 + z / sqrt(mu)
    assert 1 + 2.07 / math.sqrt(128 * 8 / 32) == pytest.approx(1.37, rel=0.1)
    assert 1 + 1.42 / math.sqrt(32 * 8 / 8) == pytest.approx(1.26, rel=0.1)
    # larger batches are better balanced; more ranks worse; no EP, none
    assert imbalance(64, 256, 8, 32) > imbalance(4096, 256, 8, 32) > imbalance(4096, 256, 8, 8) > 1.0
    assert imbalance(1, 256, 8, 1) == 1.0
    # a GPU cannot hold more than all of one token's k copies: cap = ep * min(k, E / ep) / k
    assert imbalance(1, 128, 8, 128) == pytest.approx(128 * 1 / 8)


def test_moe_imbalance_one_is_the_balanced_model() -> None:
    """``moe_imbalance: 1.0`` reproduces the balanced expert terms exactly (expected coverage of T tokens)."""
    dep = {"model": "qwen3-235b-a22b", "hardware": "h200", "tp": 8, "ep": 8, "data_parallel_attention": True,
           "precision": "fp8"}  # fmt: skip
    knobs = {"mfu": 0.5, "mbu": 0.7, "overhead_s": 0.0, "collective_latency_s": 0.0, "kernel_latency_s": 0.0}
    balanced = model_for({**knobs, "moe_imbalance": 1.0}, **dep)
    m = CATALOG.get_model("qwen3-235b-a22b")
    # FP8 experts under EP run DeepGEMM's grouped kernels, not Triton's fused_moe (test_fused_moe.py)
    assert balanced.moe_kernel == 1.0
    for t in (1, 16, 300, 5000):
        experts_read = m.experts * m.expert_params_b * 1e9 / 8 * (1 - (1 - 8 / 128) ** t) / (4.8e12 * 0.7)
        experts_math = 2 * 8 * m.expert_params_b * 1e9 * t / (8 * 1978.9e12 * 0.5)
        lin_read, lin_math = balanced.dense_weight_s, balanced.lin_s_per_token * t
        kv = t * balanced.kv_s_per_token
        att = max(balanced.pair_decode_s * 0.0, kv)
        g = grouped_gemm_efficiency(t * 8 / 128)
        token = (balanced.comm_s_per_token + balanced.elementwise_s_per_token) * t
        expected = max(lin_math, lin_read) + max(experts_math, experts_read) / g + att + token
        assert balanced.step_time(0, t, 0) == pytest.approx(expected, rel=1e-12)
    # the default imbalance only adds time: little while decode streams every expert anyway (64 tokens touch
    # 98% of Qwen3's 128 experts), the skew s = 1.24 and more once the expert GEMMs are compute-bound
    default = model_for(knobs, **dep)
    ratios = [default.step_time(0, t, 0) / balanced.step_time(0, t, 0) for t in (64, 4096)]
    assert 1.0 < ratios[0] < 1.03 and ratios[1] > 1.05
    # vectorized, segments and scalar agree under imbalance
    steps = [default.step_time(0, 64, 1e5 + 64 * j) for j in range(30)]
    assert default.decode_segment(64, 1e5, 30) == pytest.approx(np.cumsum(steps), rel=1e-12)
    assert default.decode_total(64, 1e5, 30) == pytest.approx(sum(steps), rel=1e-12)
    assert float(default.step_times(512, 64, 1e5)) == pytest.approx(default.step_time(512, 64, 1e5), rel=1e-12)


def test_a2a_split() -> None:
    assert a2a_split(8, 8) == (7 / 8, 0.0)
    assert a2a_split(16, 8) == (7 / 16, 8 / 16)
    assert a2a_split(32, 72) == (31 / 32, 0.0)
    assert imbalance_curve(256, 8, 32, fixed=1.1) == (1.1, 0.0, 1.1)


# --------------------------------------------------------------------------- MLA


def test_mla_absorbed_decode_and_plain_prefill_flops() -> None:
    """DeepSeek-R1 (61 layers, 128 heads, latent 512, RoPE 64, head 128): decode pairs cost 2 h (576 + 512)
    FLOPs per layer (FlashMLA's count), prefill pairs 2 h (192 + 128) plus 2 * 512 * h * 256 per cached token."""
    knobs = {"mfu": 1.0, "mbu": 1.0, "overhead_s": 0.0, "moe_imbalance": 1.0}
    # per-tensor scales: the FLOP counts at one rate (block scales slow the dense layers: test_fp8_block_scales.py)
    perf = model_for(knobs, model="deepseek-r1", hardware="h200", tp=8, precision="fp8", fp8_scales="tensor")
    r_att = 8 * 1978.9e12  # FP8 KV by default with FP8 weights: attention at the FP8 peak
    # at the kernels' shares of the matmul rate (MAMF 794.5 TFLOPS on H100): FlashMLA's absorbed decode 660;
    # FlashAttention-3 at head dims 128 and 256, 616 and 642, interpolated in log2 at the 192-wide queries
    flash_mla = 660 / 794.5
    fa3_192 = (616 + (642 - 616) * math.log2(192 / 128)) / 794.5
    assert perf.pair_decode_s == pytest.approx(61 * 2 * 128 * (576 + 512) / (r_att * flash_mla), rel=1e-12)
    assert perf.pair_prefill_s == pytest.approx(61 * 2 * 128 * (192 + 128) / (r_att * fa3_192), rel=1e-12)
    assert perf.kv_up_s == pytest.approx(61 * 2 * 512 * 128 * 256 / (8 * 1978.9e12), rel=1e-12)
    # a decode-only step's attention math: C pairs at the absorbed cost
    g = 0.73  # grouped expert GEMMs at <= 256 token copies per expert
    lin = perf.lin_s_per_token * 64 + perf.moe_s_per_token * 64 / g
    assert perf.breakdown(0, 64, 64 * 8000).compute_s == pytest.approx(lin + perf.pair_decode_s * 64 * 8000)
    # a prefill chunk of 1000 after 3000 cached tokens: plain pairs + the prefix's up-projection
    pf = perf.breakdown(1000, 0, 3000).compute_s - (perf.lin_s_per_token + perf.moe_s_per_token / g) * 1000
    assert pf == pytest.approx(perf.pair_prefill_s * (1000 * 3000 + 1000**2 / 2) + perf.kv_up_s * 3000, rel=1e-12)
    # GQA models keep one form
    gqa = model_for(knobs, model="llama-3.1-8b", hardware="h100")
    assert gqa.pair_decode_s == gqa.pair_prefill_s and gqa.kv_up_s == 0.0


def test_grouped_gemm_efficiency_follows_deepgemm() -> None:
    """DeepGEMM's H800 FP8 grouped GEMMs over their large-group mean (1194 TFLOPS): 256 rows per group
    (815-932) 0.73, 512 (916-1040) 0.82, 1024 (925-1233) 0.90; flat below 256 and above 4096 rows."""
    assert grouped_gemm_efficiency(256) == pytest.approx((815 + 932) / 2 / 1194, abs=0.005)
    assert grouped_gemm_efficiency(512) == pytest.approx((916 + 1040) / 2 / 1194, abs=0.005)
    assert grouped_gemm_efficiency(1024) == pytest.approx((925 + 1233) / 2 / 1194, abs=0.005)
    assert grouped_gemm_efficiency(4) == grouped_gemm_efficiency(256)
    assert grouped_gemm_efficiency(1e6) == 1.0
    assert grouped_gemm_efficiency(256) < grouped_gemm_efficiency(700) < grouped_gemm_efficiency(1024)
