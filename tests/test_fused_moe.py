"""vLLM's and SGLang's routed experts run Triton's fused_moe (cause 15 in docs/FIDELITY.md): measured at 256
tokens per expert on Hopper, 327.6 TFLOPS at a 704-wide expert slice (Gemma-4 MoE on H200, vLLM PR #44818) and
432.7 at 7,168 (Mixtral-8x7B at TP2 on H100, PR #24700), 0.331 and 0.437 of the BF16 peak (989.4), whatever the
weights' precision (SGLang's tuned block-FP8 kernel, PR #29652: 0.345 at a 256-wide slice). The experts' compute
runs at that rate where it is below the default's at 256 tokens per expert (0.73 x peak x mfu)."""

from __future__ import annotations

import math

import pytest

from agentsim import spec
from agentsim.catalog import Efficiency, load_catalog
from agentsim.perf.roofline import RooflinePerfModel, log_interp

CATALOG = load_catalog()


def _perf(
    model: str, hw: str, tp: int, ep: int, precision: str, preset: str = "vllm", mfu: float = 0.5
) -> RooflinePerfModel:
    dep = spec.Deployment(
        model=model, hardware=hw, tp=tp, ep=ep, precision=precision, engine=spec.EngineSpec(preset=preset)
    )
    return RooflinePerfModel(CATALOG.get_hardware(hw), CATALOG.get_model(model), dep, spec.RooflinePerf(mfu=mfu))


def test_the_kernel_rate_by_width() -> None:
    points = ((704.0, 0.331), (7168.0, 0.437))
    assert log_interp(points, 256) == 0.331  # thinner than measured: the thinnest point
    assert log_interp(points, 20_000) == 0.437
    assert log_interp(points, math.sqrt(704 * 7168)) == pytest.approx((0.331 + 0.437) / 2, rel=1e-12)


def test_deepseek_at_tp8_by_hand() -> None:
    """DeepSeek-R1 FP8 on 8 H200 under vLLM at mfu 0.5: each GPU holds a 2048 / 8 = 256-wide slice of every expert,
    so the kernel runs at 0.331 x 989.4 TFLOPS against the default's 0.73 x 1978.9 x 0.5: the experts' compute
    takes 1 / 0.4535 as long. Not under TensorRT-LLM, nor with FP8 experts under EP (DeepGEMM on whole experts);
    BF16 experts whole under EP (Qwen3-235B, 1,536 wide, at mfu 0.8) run at 0.331 + 0.106 x ln(1536 / 704) /
    ln(7168 / 704) of the peak."""
    ratio = 0.331 * 989.4 / (0.73 * 1978.9 * 0.5)
    k = 8 * 2 * 2048 * 7168 * 3 * 58 / 1e9  # top-8 experts of 3 x 7168 x 2048 in 58 MoE layers, GFLOP a token
    vllm, trt = _perf("deepseek-r1", "h200", 8, 1, "fp8"), _perf("deepseek-r1", "h200", 8, 1, "fp8", "trtllm")
    assert vllm.moe_kernel == pytest.approx(ratio, rel=1e-12)
    assert trt.moe_kernel == 1.0
    assert vllm.moe_s_per_token == pytest.approx(trt.moe_s_per_token / ratio, rel=1e-12)
    assert trt.moe_s_per_token == pytest.approx(k * 1e9 / (8 * 1978.9e12 * 0.5), rel=0.01)  # the catalog's shapes
    assert _perf("deepseek-r1", "h200", 8, 8, "fp8").moe_kernel == 1.0
    whole = 0.331 + (0.437 - 0.331) * math.log(1536 / 704) / math.log(7168 / 704)
    ep = _perf("qwen3-235b-a22b", "h200", 8, 8, "bf16", mfu=0.8)
    assert ep.moe_kernel == pytest.approx(whole * 989.4 / (0.73 * 989.4 * 0.8), rel=1e-12)


def test_no_points_no_change() -> None:
    """Hardware without measured points (MI300X) and dense models keep the default."""
    assert _perf("qwen3-235b-a22b", "mi300x", 8, 1, "bf16").moe_kernel == 1.0
    assert _perf("llama-3.1-8b", "h100", 1, 1, "bf16").moe_kernel == 1.0


def test_points_need_increasing_widths() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Efficiency(fused_moe_bf16=((7168.0, 0.4), (704.0, 0.3)), source="x")
    with pytest.raises(ValueError):
        Efficiency(fused_moe_bf16=((704.0, 1.5),), source="x")


def test_the_curve_models_physical_floor_has_peak_kernels() -> None:
    """A measured curve's steps are floored at the physical roofline (peak rates, no overheads). Kernel shares (the
    Triton fused-MoE rate, attention kernels' share) are not physics: the floor runs the experts and attention at
    the peak, so a fast measured point is not raised to a slow kernel's time."""
    from agentsim.perf.curve import CurvePerfModel

    dep = spec.Deployment(model="deepseek-r1", hardware="h200", tp=8, precision="fp8")
    curve = spec.CurvePerf(
        points=[spec.CurvePoint(concurrency=64, output_tokens_per_s=3000.0)], input_tokens=1000, output_tokens=1000
    )
    model = CurvePerfModel(curve, CATALOG.get_hardware("h200"), CATALOG.get_model("deepseek-r1"), dep)
    assert model.roofline.moe_kernel < 1.0  # the model's own roofline: vLLM's Triton experts
    assert model.floor.moe_kernel == 1.0
    peak = RooflinePerfModel(
        CATALOG.get_hardware("h200"), CATALOG.get_model("deepseek-r1"), dep, spec.RooflinePerf(mfu=1.0)
    )
    # attention at the peak: 61 layers x 2 x 128 heads x (576 + 512) FLOPs per decode pair over 8 x 1978.9 TFLOPS
    assert model.floor.pair_decode_s == pytest.approx(61 * 2 * 128 * (576 + 512) / (8 * 1978.9e12), rel=1e-12)
    assert peak.pair_decode_s > model.floor.pair_decode_s  # a roofline at mfu 1 still carries FlashMLA's share
