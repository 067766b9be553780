"""Block-scaled FP8 checkpoints (``fp8_scales: block``: DeepSeek-V3/R1, Qwen3's FP8 releases): their dense linear
layers run at no more than the block-scaled kernels' measured fractions (DeepGEMM's README on H800), checked
against that table's arithmetic; per-tensor checkpoints, experts, other hardware and explicit efficiencies are
untouched."""

from __future__ import annotations

import pydantic
import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf import RooflinePerfModel
from agentsim.perf.efficiency import SERVING_GEMM_SHARE, SERVING_HBM_SHARE

CATALOG = load_catalog()
H100, H200, B200 = (CATALOG.get_hardware(h) for h in ("h100", "h200", "b200"))

# deepseek-ai/DeepGEMM@78cacf7 README, "Normal GEMMs for dense models" on H800 (3,350 GB/s HBM3, 1,978.9 FP8 TFLOPS)
M64_GB_S = (1688, 2455, 2143, 2668, 2320, 2470)
M4096_TFLOPS = (1058, 990, 590, 1358, 1304, 1025)


def deployment(model: str, hardware: str = "h100", **extra: object) -> spec.Deployment:
    return spec.Deployment.model_validate({"model": model, "hardware": hardware, "precision": "fp8", **extra})


def test_catalog_fractions_are_the_deepgemm_means() -> None:
    hbm = sum(M64_GB_S) / len(M64_GB_S) / 3350
    gemm = sum(M4096_TFLOPS) / len(M4096_TFLOPS) / 1978.9
    for hw in (H100, H200):
        assert hw.efficiency is not None
        assert hw.efficiency.hbm_fp8_block == pytest.approx(hbm, abs=5e-4)
        assert hw.efficiency.gemm_fp8_block == pytest.approx(gemm, abs=5e-4)
    # both below the serving defaults they cap: a cap that never binds would change nothing
    assert H100.efficiency is not None and H100.efficiency.hbm is not None and H100.efficiency.gemm_fp8 is not None
    assert hbm < H100.efficiency.hbm * SERVING_HBM_SHARE and gemm < H100.efficiency.gemm_fp8 * SERVING_GEMM_SHARE


def test_published_checkpoints() -> None:
    for name in ("deepseek-r1", "deepseek-v3", "qwen3-8b", "qwen3-235b-a22b"):
        assert CATALOG.get_model(name).fp8_scales == "block"
    for name in ("llama-3.3-70b", "llama-3.1-405b", "gpt-oss-120b"):
        assert CATALOG.get_model(name).fp8_scales == "tensor"
    assert CATALOG.get_model("llama-3.1-405b-fbgemm").fp8_scales == "channel"  # fbgemm_fp8: per channel, per token


def test_block_scaled_dense_layers_read_and_compute_at_the_kernel_fractions() -> None:
    model = CATALOG.get_model("qwen3-8b")
    block = RooflinePerfModel(H100, model, deployment("qwen3-8b"))
    tensor = RooflinePerfModel(H100, model, deployment("qwen3-8b", fp8_scales="tensor"))
    assert H100.efficiency is not None and H100.efficiency.hbm is not None and H100.efficiency.gemm_fp8 is not None
    hbm_default = H100.efficiency.hbm * SERVING_HBM_SHARE
    gemm_default = H100.efficiency.gemm_fp8 * SERVING_GEMM_SHARE
    # a decode step reads the dense weights: 8.19 GB of FP8 at 0.684 of 3.35 TB/s instead of the default fraction
    assert block.dense_weight_s == pytest.approx(8.19e9 / (3.35e12 * 0.684), rel=1e-9)
    assert block.dense_weight_s / tensor.dense_weight_s == pytest.approx(hbm_default / 0.684, rel=1e-12)
    assert block.lin_s_per_token / tensor.lin_s_per_token == pytest.approx(gemm_default / 0.533, rel=1e-12)
    # attention and the KV cache keep the default bandwidth
    assert block.kv_s_per_token == tensor.kv_s_per_token
    assert block.step_time(0, 4, 8000) > tensor.step_time(0, 4, 8000)


def test_experts_keep_their_grouped_gemm_efficiency() -> None:
    model = CATALOG.get_model("deepseek-r1")
    kw = {"tp": 8}
    block = RooflinePerfModel(H200, model, deployment("deepseek-r1", "h200", **kw))
    tensor = RooflinePerfModel(H200, model, deployment("deepseek-r1", "h200", fp8_scales="tensor", **kw))
    assert block.all_experts_s == tensor.all_experts_s and block.moe_s_per_token == tensor.moe_s_per_token
    assert block.dense_weight_s > tensor.dense_weight_s


def test_untouched_elsewhere() -> None:
    qwen = CATALOG.get_model("qwen3-8b")
    # hardware without measured block-scaled kernels (B200: native block scales in its tensor cores)
    b = RooflinePerfModel(B200, qwen, deployment("qwen3-8b", "b200"))
    t = RooflinePerfModel(B200, qwen, deployment("qwen3-8b", "b200", fp8_scales="tensor"))
    assert b.dense_weight_s == t.dense_weight_s and b.lin_s_per_token == t.lin_s_per_token
    # bf16 weights
    bf16 = spec.Deployment.model_validate({"model": "qwen3-8b", "hardware": "h100", "precision": "bf16"})
    assert RooflinePerfModel(H100, qwen, bf16).dense_efficiencies == RooflinePerfModel(H100, qwen, bf16).efficiencies
    # numbers given in the scenario (or a calibration's) keep the measured block-scaled ratio for these layers
    assert H100.efficiency is not None and H100.efficiency.hbm is not None and H100.efficiency.gemm_fp8 is not None
    perf = spec.RooflinePerf.model_validate({"mfu": 0.6, "mbu": 0.8})
    given = RooflinePerfModel(H100, qwen, deployment("qwen3-8b"), perf)
    hbm_ratio = 0.684 / (H100.efficiency.hbm * SERVING_HBM_SHARE)
    gemm_ratio = 0.533 / (H100.efficiency.gemm_fp8 * SERVING_GEMM_SHARE)
    assert given.dense_efficiencies.mbu == pytest.approx(0.8 * hbm_ratio, rel=1e-12)
    assert given.dense_efficiencies.mfu == pytest.approx(0.6 * gemm_ratio, rel=1e-12)
    assert given.efficiencies.mbu == 0.8  # attention, KV and experts take the number as given
    # the defaults made explicit (calibration's start) give the default model
    default = RooflinePerfModel(H100, qwen, deployment("qwen3-8b"))
    explicit = spec.RooflinePerf.model_validate({"mfu": default.efficiencies.mfu, "mbu": default.efficiencies.mbu})
    start = RooflinePerfModel(H100, qwen, deployment("qwen3-8b"), explicit)
    assert start.step_time(0, 1, 500) == pytest.approx(default.step_time(0, 1, 500), rel=1e-12)
    assert start.step_time(4096, 0, 0) == pytest.approx(default.step_time(4096, 0, 0), rel=1e-12)


def test_fp8_scales_needs_fp8_weights() -> None:
    with pytest.raises(pydantic.ValidationError, match="fp8_scales describes fp8 weights"):
        spec.Deployment.model_validate(
            {"model": "qwen3-8b", "hardware": "h100", "precision": "bf16", "fp8_scales": "block"}
        )
