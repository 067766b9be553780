"""The kernel floor of the roofline: a decode pass launches its kernels one after another and none takes less than
``kernel_latency_s``, so a step's GPU time is at least ``forward_kernels x kernel_latency_s``. Checked: the kernel
counts by hand from the architectures, the floor binding where the work is small (DeepSeek-R1 at batch 1) and not
where it is large (Llama-3.3-70B), steps above the floor unchanged to the bit, and the closed-form segment total
equal to the sum of its steps across the crossover; the quantization kernels of FP8 checkpoints whose activation
scales are computed at run time, and the unfused dequantization of vLLM V0 on ROCm."""

from __future__ import annotations

import numpy as np
import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf import RooflinePerfModel
from agentsim.perf.efficiency import efficiencies
from agentsim.perf.roofline import forward_kernels
from agentsim.planning.calibrate import Measurement

CATALOG = load_catalog()


def model(name: str, hardware: str, tp: int, precision: str, **perf: float) -> RooflinePerfModel:
    d = spec.Deployment.model_validate({"model": name, "hardware": hardware, "tp": tp, "precision": precision})
    p = spec.RooflinePerf.model_validate({"overhead_s": 0.002, "overhead_s_per_seq": 1e-4, **perf})
    return RooflinePerfModel(CATALOG.get_hardware(hardware), CATALOG.get_model(name), d, p)


def deployment(name: str, tp: int) -> spec.Deployment:
    return spec.Deployment.model_validate({"model": name, "hardware": "h200", "tp": tp})


def test_kernel_counts_by_hand() -> None:
    # GQA layer: 5 attention + 4 dense FFN kernels (+ 2 all-reduces under TP); 4 outside the layers
    assert forward_kernels(CATALOG.get_model("llama-3.3-70b"), deployment("llama-3.3-70b", 1)) == 80 * 9 + 4
    assert forward_kernels(CATALOG.get_model("llama-3.3-70b"), deployment("llama-3.3-70b", 2)) == 80 * 11 + 4
    # DeepSeek-R1 at TP8: 3 dense layers of 9 MLA + 4 FFN + 2, 58 MoE layers of 9 MLA + 8 routed + 3 shared + 2
    assert forward_kernels(CATALOG.get_model("deepseek-r1"), deployment("deepseek-r1", 8)) == 3 * 15 + 58 * 22 + 4
    # gpt-oss-120b on one GPU: 36 MoE layers of 5 attention + 8 routed, no shared expert
    assert forward_kernels(CATALOG.get_model("gpt-oss-120b"), deployment("gpt-oss-120b", 1)) == 36 * 13 + 4


def test_the_floor_binds_where_the_work_is_small() -> None:
    on = model("deepseek-r1", "h200", 8, "fp8")
    off = model("deepseek-r1", "h200", 8, "fp8", kernel_latency_s=0.0)
    # the default 10 us per kernel; block-scaled FP8 quantizes the input of each FP8 linear layer in a kernel of its
    # own: 3 MLA projections and 2 feed-forward in the dense layers, + 2 routed and 2 shared in the MoE layers
    floor = (3 * (15 + 5) + 58 * (22 + 7) + 4) * 10e-6
    assert on.kernel_floor_s == pytest.approx(floor, rel=1e-12)
    work = off.step_time(0, 1, 1000) - 0.002 - 1e-4
    assert work < floor  # the roofline alone: a few ms for one token of a 37B-active MoE on 8 GPUs
    assert on.step_time(0, 1, 1000) == pytest.approx(floor + 0.002 + 1e-4, rel=1e-12)
    terms = on.breakdown(0, 1, 1000)
    assert terms.floor_s > 0 and terms.total_s == pytest.approx(on.step_time(0, 1, 1000), rel=1e-12)


def test_steps_above_the_floor_are_unchanged_to_the_bit() -> None:
    on = model("llama-3.3-70b", "h200", 1, "fp8")
    off = model("llama-3.3-70b", "h200", 1, "fp8", kernel_latency_s=0.0)
    assert on.kernel_floor_s == pytest.approx((80 * 9 + 4) * 10e-6)
    for p, d, c in ((0, 1, 100), (0, 64, 64 * 4000), (2048, 8, 8 * 1000)):
        assert on.step_time(p, d, c) == off.step_time(p, d, c)
        assert on.breakdown(p, d, c).floor_s == 0.0
    assert on.decode_total(16, 16 * 3000, 50) == off.decode_total(16, 16 * 3000, 50)
    assert np.array_equal(on.decode_segment(16, 16 * 3000, 50), off.decode_segment(16, 16 * 3000, 50))


def test_segment_across_the_crossover_is_the_sum_of_its_steps() -> None:
    """A decode segment whose first steps sit under the floor and whose later steps (longer contexts: more KV to
    read) rise above it: the closed form, the step array and the per-step times agree."""
    d, c0, steps = 32, 32 * 2000.0, 400
    off = model("deepseek-r1", "h200", 8, "fp8", kernel_latency_s=0.0)
    fixed = 0.002 + 32 * 1e-4
    first = off.step_time(0, d, c0) - fixed
    last = off.step_time(0, d, c0 + d * (steps - 1)) - fixed
    assert last > first
    # a floor halfway between the first and the last step's GPU time
    latency = 0.5 * (first + last) / forward_kernels(CATALOG.get_model("deepseek-r1"), off.deployment)
    on = model("deepseek-r1", "h200", 8, "fp8", kernel_latency_s=latency)
    per_step = [on.step_time(0, d, c0 + d * j) for j in range(steps)]
    lifted = sum(1 for j in range(steps) if on.step_time(0, d, c0 + d * j) > off.step_time(0, d, c0 + d * j))
    assert 0 < lifted < steps
    assert on.decode_total(d, c0, steps) == pytest.approx(sum(per_step), rel=1e-12)
    seg = on.decode_segment(d, c0, steps)
    assert seg[-1] == pytest.approx(sum(per_step), rel=1e-12)
    assert np.allclose(np.diff(seg, prepend=0.0), per_step, rtol=1e-12, atol=0)
    vec = on.step_times(np.zeros(steps), np.full(steps, float(d)), c0 + d * np.arange(steps))
    assert np.allclose(vec, per_step, rtol=1e-12, atol=0)


def test_dataflow_hardware_has_no_kernel_floor() -> None:
    """SambaNova's SN40L runs a decoder as one dataflow graph (catalog ``dataflow: true``), not a chain of kernels."""
    assert CATALOG.get_hardware("sn40l").dataflow and not CATALOG.get_hardware("h200").dataflow
    sn = model("llama-3.3-70b", "sn40l", 8, "bf16")
    assert sn.kernel_floor_s == 0.0


def test_a_measured_curve_point_below_the_kernel_floor_is_kept() -> None:
    """A curve's steps are measured; only the physical bound (peak rates, no overhead, no kernel floor) may raise
    them. TensorRT-LLM's DeepSeek-R1 at one user on 8 B200 (111 tokens/s: 9.0 ms a step) is faster than the 13.25 ms
    kernel floor of the vLLM preset's count and slower than the peak-rate bound: it is kept as measured."""
    from agentsim.perf.curve import CurvePerfModel

    d = spec.Deployment.model_validate({"model": "deepseek-r1", "hardware": "b200", "tp": 8, "precision": "fp4"})
    curve = spec.CurvePerf.model_validate(
        {"points": [{"concurrency": 1, "output_tokens_per_s": 111.0}], "subtract_prefill": False}
    )
    m = CurvePerfModel(curve, CATALOG.get_hardware("b200"), CATALOG.get_model("deepseek-r1"), d)
    assert m.floored_points == 0
    assert m.roofline.kernel_floor_s == pytest.approx(1325 * 10e-6)  # the curve's shaping roofline has one
    assert m.step_time(0, 1, curve.input_tokens + curve.output_tokens / 2) == pytest.approx(1 / 111.0, rel=1e-9)


def test_block_scaled_fp8_quantizes_each_linear_input_in_a_kernel_of_its_own() -> None:
    """vLLM's, SGLang's and TensorRT-LLM's block-scaled FP8 linear layers run a per-1x128-group activation
    quantization before each GEMM (``per_token_group_quant_fp8`` / ``fp8_quantize_1x128``): Qwen3-8B's FP8
    release adds QKV, output, gate-up and down quantizations to each of its 36 layers; DeepSeek-R1's adds its three
    MLA projections' and its dense or shared feed-forward's two, and the routed experts' two grouped GEMMs'.
    Per-tensor FP8 (NVIDIA's ModelOpt checkpoints) and BF16 are unchanged."""

    def kernels(name: str, tp: int, precision: str, **extra: str) -> int:
        d = spec.Deployment.model_validate(
            {"model": name, "hardware": "h200", "tp": tp, "precision": precision, **extra}
        )
        return forward_kernels(CATALOG.get_model(name), d)

    assert kernels("qwen3-8b", 1, "bf16") == 36 * 9 + 4
    assert kernels("qwen3-8b", 1, "fp8") == 36 * (9 + 4) + 4
    assert kernels("deepseek-r1", 8, "fp8") == 3 * (15 + 3 + 2) + 58 * (22 + 3 + 2 + 2) + 4
    assert kernels("llama-3.3-70b", 2, "fp8") == 80 * 11 + 4  # per-tensor scales: no separate quantization
    assert kernels("llama-3.3-70b", 2, "fp8", fp8_scales="block") == 80 * (11 + 4) + 4


def test_fp8_weights_on_ampere_are_weight_only() -> None:
    """An A100 has no FP8 units: vLLM serves an FP8 checkpoint there with its Marlin W8A16 kernels
    (``quantization/fp8.py``: ``use_marlin`` below compute capability 8.9, "Activations not quantized for
    marlin"). Qwen3-8B's block-scaled FP8 release on an A100 launches the BF16 model's kernels (no input
    quantizations, where an H200 adds 4 a layer), multiplies at the BF16 peak and still streams one byte a
    weight: its prefill takes the BF16 deployment's time, its decode at one request about half of it."""
    on_h200 = model("qwen3-8b", "h200", 1, "fp8")
    fp8 = model("qwen3-8b", "a100", 1, "fp8")
    bf16 = model("qwen3-8b", "a100", 1, "bf16")
    assert on_h200.kernel_floor_s == pytest.approx((36 * (9 + 4) + 4) * 10e-6, rel=1e-12)
    assert fp8.kernel_floor_s == bf16.kernel_floor_s == pytest.approx((36 * 9 + 4) * 10e-6, rel=1e-12)
    # compute: the linear layers' seconds per token are the BF16 deployment's (same peak, same GEMM fraction)
    assert fp8.lin_s_per_token == pytest.approx(bf16.lin_s_per_token, rel=1e-12)
    # memory: the weights stream at the checkpoint's one byte each (the missing units change the math, not the
    # bytes): half the BF16 deployment's time, and half the H200's BF16 time scaled by the two GPUs' STREAM
    # bandwidths (the H200's FP8 layers are capped at DeepGEMM's block-scaled streaming rate, not compared)
    assert fp8.dense_weight_s == pytest.approx(0.5 * bf16.dense_weight_s, rel=1e-12)
    a100, h200 = CATALOG.get_hardware("a100"), CATALOG.get_hardware("h200")
    none = spec.RooflinePerf()
    bw = {hw: hw.hbm_tb_s * efficiencies(hw, "bf16", "bf16", none).mbu for hw in (a100, h200)}
    h200_bf16 = model("qwen3-8b", "h200", 1, "bf16")
    assert fp8.dense_weight_s * bw[a100] == pytest.approx(0.5 * h200_bf16.dense_weight_s * bw[h200], rel=1e-9)


def test_channel_scaled_fp8_quantizes_its_inputs_and_rocm_v0_dequantizes_unfused() -> None:
    """Meta's FBGEMM checkpoint of Llama-3.1-405B (per-channel weight scales, per-token activation scales computed
    at run time) holds the feed-forward of layers 1-124 in FP8: 248 linear layers, each with an input quantization
    kernel (``scaled_fp8_quant``). vLLM before ROCm's rowwise-scaled ``torch._scaled_mm`` runs each as a GEMM to
    FP32, two scaling multiplies and a cast (``fp8_dequant: unfused``): 3 kernels more each, and 24 bytes per output
    element (an FP32 output written, multiplied twice, cast). A per-tensor checkpoint is unaffected by the knob."""
    from agentsim.perf.roofline import elementwise_bytes_per_token, unfused_dequant_bytes_per_token

    m = CATALOG.get_model("llama-3.1-405b-fbgemm")

    def dep(name: str = "llama-3.1-405b-fbgemm", **engine: str) -> spec.Deployment:
        return spec.Deployment.model_validate(
            {"model": name, "hardware": "mi300x", "tp": 8, "precision": "fp8", "engine": engine}
        )

    per_layer = 5 + 4 + 2  # GQA attention, dense feed-forward, two all-reduces
    assert m.fp8_scales == "channel"
    assert forward_kernels(m, dep().model_copy(update={"precision": "bf16"})) == 126 * per_layer + 4
    assert forward_kernels(m, dep()) == 126 * per_layer + 4 + 2 * 124
    assert forward_kernels(m, dep(fp8_dequant="unfused")) == 126 * per_layer + 4 + (1 + 3) * 2 * 124
    # bytes: gate-up's output split over tp (2 x 53,248 / 8), down's the whole hidden state (16,384) on each GPU
    extra = 124 * (2 * 53248 / 8 + 16384) * 24
    assert unfused_dequant_bytes_per_token(m, dep(fp8_dequant="unfused")) == extra
    fused = elementwise_bytes_per_token(m, dep())
    assert elementwise_bytes_per_token(m, dep(fp8_dequant="unfused")) == pytest.approx(fused + extra, rel=1e-12)
    # an A100 has no FP8 units: its weight-only kernels dequantize inside the GEMM and quantize no input, so the
    # same checkpoint launches the BF16 count there and moves no dequantization bytes, whatever the knob says
    a100 = CATALOG.get_hardware("a100")
    assert forward_kernels(m, dep(fp8_dequant="unfused"), a100) == 126 * per_layer + 4
    assert unfused_dequant_bytes_per_token(m, dep(fp8_dequant="unfused"), a100) == 0.0
    assert elementwise_bytes_per_token(m, dep(fp8_dequant="unfused"), a100) == fused
    amd = CATALOG.get_model("llama-3.1-405b")  # AMD's per-tensor FP8-KV checkpoint
    assert forward_kernels(amd, dep("llama-3.1-405b", fp8_dequant="unfused")) == 126 * per_layer + 4
    assert unfused_dequant_bytes_per_token(amd, dep("llama-3.1-405b", fp8_dequant="unfused")) == 0.0


def test_the_harness_dequantizes_unfused_for_vllm_v0_on_amd_only() -> None:
    """dstack's MI300X sweep of Meta's FBGEMM checkpoint ran vLLM 0.6.3 on ROCm: the harness runs it with
    ``fp8_dequant: unfused``; a newer vLLM, or the same release on an H100 (CUTLASS fuses the scales), keeps the
    presets' fused dequantization."""
    from agentsim.planning.calibrate import HarnessOptions, pool_from_labels
    from agentsim.planning.calibrate.harness import plan_condition
    from agentsim.serving.presets import fill_engine

    def dequant(hardware: str, version: str) -> str | None:
        labels = {"model": "Llama-3.1-405B-FBGEMM-FP8", "hardware": hardware, "precision": "fp8", "engine": "vLLM",
                  "tp": "8", "engine_version": version, "load": "burst"}  # fmt: skip
        m = Measurement(isl=128, osl=2048, concurrency=4, labels=labels)
        pool = pool_from_labels(m, CATALOG)
        return plan_condition(pool, m, CATALOG, HarnessOptions()).engine.fp8_dequant

    assert dequant("MI300X", "0.6.3.post2") == "unfused"
    assert dequant("MI300X", "0.11.0") is None  # the preset's: fused
    assert dequant("H100", "0.6.3.post2") is None
    d = spec.Deployment(model="llama-3.1-405b-fbgemm", hardware="mi300x", tp=8, precision="fp8")
    assert fill_engine(d, CATALOG.get_hardware("mi300x"), CATALOG.get_model(d.model)).engine.fp8_dequant == "fused"
