"""An FP4 checkpoint that keeps attention in BF16 (``fp4_checkpoint: nvfp4-ffn``, NVIDIA's DeepSeek-R1-FP4): its
FP4 and BF16 parameters from the shapes, its weight bytes against what NVIDIA states for the checkpoint and for
the per-GPU footprint, and its step time's BF16 attention projections, checked by hand; an all-NVFP4 model
(``nvfp4``) is the old one."""

from __future__ import annotations

import pytest

from agentsim import spec
from agentsim.catalog import ModelArch, load_catalog
from agentsim.perf import RooflinePerfModel
from agentsim.perf.efficiency import efficiencies
from agentsim.perf.memory import (
    NVFP4_BYTES,
    attention_bytes_per_param,
    bf16_params_b,
    dense_bytes_per_param,
    weight_bytes,
    weight_bytes_per_gpu,
)

CATALOG = load_catalog()
B200 = CATALOG.get_hardware("b200")
R1 = CATALOG.get_model("deepseek-r1")
ALL_FP4 = ModelArch.model_validate(R1.model_dump() | {"fp4_checkpoint": "nvfp4"})

# DeepSeek-V3/R1 shapes (config.json): hidden 7168, 61 layers of which the first 3 dense (intermediate 18432),
# 58 MoE layers of 256 routed experts and 1 shared expert of width 2048
H, DENSE_LAYERS, MOE_LAYERS, WIDTH, EXPERT_WIDTH = 7168, 3, 58, 18432, 2048


def deployment(**extra: object) -> spec.Deployment:
    data = {"model": "deepseek-r1", "hardware": "b200", "tp": 8, "ep": 8, "precision": "fp4",
            "data_parallel_attention": True} | extra  # fmt: skip
    return spec.Deployment.model_validate(data)


def test_feed_forward_parameters_from_the_shapes() -> None:
    assert R1.fp4_checkpoint == "nvfp4-ffn"
    routed = R1.experts * R1.expert_params_b  # 3 x 7168 x 2048 x 58 an expert, from the shapes
    by_hand = routed + (DENSE_LAYERS * 3 * H * WIDTH + MOE_LAYERS * 3 * H * EXPERT_WIDTH) / 1e9
    assert R1.ffn_params_b == pytest.approx(by_hand, rel=1e-12)
    assert R1.fp4_params_b == pytest.approx(by_hand, rel=1e-12)  # nvfp4-ffn: the feed-forward weights, by hand
    assert bf16_params_b(R1, "fp4") == pytest.approx(R1.params_b - by_hand, rel=1e-12)
    # what stays BF16 is attention (11.4B) and embeddings + LM head (2 x 129280 x 7168 = 1.85B), to params_b's rounding
    assert bf16_params_b(R1, "fp4") == pytest.approx(R1.attention_params_b + 2 * 129280 * H / 1e9, abs=0.6)
    assert bf16_params_b(ALL_FP4, "fp4") == 0.0 and bf16_params_b(R1, "fp8") == 0.0


def test_checkpoint_bytes_match_nvidia_figures() -> None:
    fp4 = R1.ffn_params_b * 1e9
    expected = NVFP4_BYTES * fp4 + 2.0 * (R1.params_b * 1e9 - fp4)
    assert weight_bytes(R1, deployment()) == pytest.approx(expected, rel=1e-12)
    # TensorRT-LLM tech blog 3: "the NVIDIA provided DeepSeek R1 FP4 quantized model is only about 400 GB"
    assert expected == pytest.approx(400e9, rel=0.02)
    assert weight_bytes(ALL_FP4, deployment()) == pytest.approx(NVFP4_BYTES * 671e9, rel=1e-12)  # 377 GB
    # blog 3, 8 B200 with attention DP: "the weights and activation occupies about 80 GB memory for each GPU";
    # each GPU holds all of attention in BF16 and an eighth of the rest
    attention = 2.0 * R1.attention_params_b * 1e9
    per_gpu = attention + (expected - attention) / 8
    assert weight_bytes_per_gpu(R1, deployment()) == pytest.approx(per_gpu, rel=1e-12)
    assert 65e9 < per_gpu < 80e9
    assert weight_bytes_per_gpu(ALL_FP4, deployment()) < 56e9  # the all-NVFP4 count left 25 GB of it out
    assert attention_bytes_per_param(R1, "fp4") == 2.0 and attention_bytes_per_param(ALL_FP4, "fp4") == NVFP4_BYTES


def test_dense_bytes_are_the_mean_over_the_non_routed_weights() -> None:
    bf16 = bf16_params_b(R1, "fp4")
    dense = R1.dense_params_b
    assert dense_bytes_per_param(R1, "fp4") == pytest.approx((2.0 * bf16 + NVFP4_BYTES * (dense - bf16)) / dense)
    assert dense_bytes_per_param(ALL_FP4, "fp4") == NVFP4_BYTES
    gpt_oss = CATALOG.get_model("gpt-oss-120b")
    assert dense_bytes_per_param(gpt_oss, "fp4") == 2.0  # all but the routed experts BF16, as before


def test_attention_projections_multiply_at_the_bf16_rate() -> None:
    d = deployment()
    r1, full = RooflinePerfModel(B200, R1, d), RooflinePerfModel(B200, ALL_FP4, d)
    perf = spec.RooflinePerf.model_validate({})
    # the KV cache is the weights' precision, fp4, counted at fp8 (perf.memory)
    fp4_flops = 8 * B200.dense_tflops("fp4") * 1e12 * efficiencies(B200, "fp4", "fp8", perf).mfu
    bf16_flops = 8 * B200.dense_tflops("bf16") * 1e12 * efficiencies(B200, "bf16", "fp8", perf).mfu
    # what multiplies in BF16: attention, router, embeddings (from the shapes) less the weights no token multiplies,
    # which the card's active count leaves out: its input embedding (129,280 x 7,168 = 0.93B, a lookup), within the
    # card's rounding of 37B to the nearest billion (671 - 653.9 routed - (37 - 20.4 routed active) = 0.52B)
    assert abs(R1.unmultiplied_params_b - 129280 * H / 1e9) <= 0.5
    # exactly: the card's totals less the routed experts (58 MoE layers x 256 experts x 3 x 7168 x 2048 of them,
    # 8 active) -- what neither the card's active count nor a routed expert covers
    assert R1.unmultiplied_params_b == pytest.approx(671 - 37 - 248 * 58 * 3 * H * 2048 / 1e9, rel=1e-9)
    stored = bf16_params_b(R1, "fp4") * 1e9
    bf16 = stored - R1.unmultiplied_params_b * 1e9
    # by hand from config.json, per layer: q_a 7168 x 1536, q_b 1536 x 128 heads x 192, kv_a 7168 x (512 + 64),
    # kv_b 512 x 128 x (128 + 128), o 128 x 128 x 7168; the router 7168 x 256 in the 58 MoE layers; the LM head
    attention = 61 * (H * 1536 + 1536 * 24576 + H * 576 + 512 * 32768 + 16384 * H)
    assert attention == 11_413_422_080 == round(R1.attention_params_b * 1e9)
    hand = attention + 58 * H * 256 + 129280 * H  # 12.4B: the card's rounding away from what the roofline keeps
    assert bf16 == pytest.approx(hand, rel=0.04)
    routed_active = 2.0 * R1.experts_per_token * R1.expert_params_b * 1e9
    by_hand = (2.0 * R1.active_params_b * 1e9 - 2.0 * bf16 - routed_active) / fp4_flops + 2.0 * bf16 / bf16_flops
    assert r1.lin_s_per_token == pytest.approx(by_hand, rel=1e-12)
    assert full.lin_s_per_token == pytest.approx((2.0 * R1.active_params_b * 1e9 - routed_active) / fp4_flops)
    # B200: BF16 2,250 dense TFLOPS against FP4's 9,000, so the BF16 part is the larger share of the time
    assert r1.lin_s_per_token > 2.5 * full.lin_s_per_token
    # data-parallel attention's busiest rank and MLA's prefill up-projection are attention work: BF16 too
    assert r1.att_lin_s_per_token == pytest.approx(2.0 * R1.attention_params_b * 1e9 / bf16_flops, rel=1e-12)
    assert r1.att_lin_s_per_token / full.att_lin_s_per_token == pytest.approx(fp4_flops / bf16_flops, rel=1e-12)
    assert r1.kv_up_s / full.kv_up_s == pytest.approx(fp4_flops / bf16_flops, rel=1e-12)
    # the routed experts are NVFP4 in both
    assert r1.moe_s_per_token == full.moe_s_per_token and r1.all_experts_s == full.all_experts_s


def test_nvfp4_ffn_needs_feed_forward_weights_inside_the_model() -> None:
    data = R1.model_dump() | {"intermediate_size": 2_000_000}  # dense feed-forward of 129B: more than params_b
    with pytest.raises(ValueError, match="nvfp4-ffn"):
        ModelArch.model_validate(data)
    dense = CATALOG.get_model("llama-3.3-70b").model_dump() | {"fp4_checkpoint": "mxfp4-experts"}
    with pytest.raises(ValueError, match="mxfp4-experts"):
        ModelArch.model_validate(dense)


def test_gpt_oss_bf16_layers_multiply_at_the_bf16_rate_where_fp4_has_its_own() -> None:
    """gpt-oss keeps all but its routed experts in BF16 (``mxfp4-experts``). On hardware with FP4 units (MI355X:
    10,000 dense FP4 TFLOPS against 2,500 BF16) those layers run at the BF16 rate; where FP4 math is BF16 math
    anyway (H100) the time is the single-rate one, bit for bit."""
    model = CATALOG.get_model("gpt-oss-120b")
    perf = spec.RooflinePerf.model_validate({})
    for hardware, split in (("mi355x", True), ("h100", False)):
        hw = CATALOG.get_hardware(hardware)
        d = spec.Deployment.model_validate({"model": "gpt-oss-120b", "hardware": hardware, "precision": "fp4"})
        rm = RooflinePerfModel(hw, model, d)
        kv = "fp8"  # the KV cache takes the weights' precision, FP4, counted at 8 bits (perf.memory)
        fp4_flops = hw.dense_tflops("fp4") * 1e12 * efficiencies(hw, "fp4", kv, perf).mfu
        bf16_flops = hw.dense_tflops("bf16") * 1e12 * efficiencies(hw, "bf16", kv, perf).mfu
        routed_active = 2.0 * model.experts_per_token * model.expert_params_b * 1e9
        if split:
            assert fp4_flops > 2.0 * bf16_flops
            # everything outside the routed experts is stored in BF16; what a token multiplies of it (the card's
            # active count less four experts: attention, router, LM head, not the input embedding's lookup) runs at
            # the BF16 rate
            assert bf16_params_b(model, "fp4") == pytest.approx(model.dense_params_b, rel=1e-12)
            # by hand from config.json: attention (q, o: 2,880 x 4,096; k, v: 2,880 x 512), router, LM head
            multiplied = 36 * (2 * 2880 * 4096 + 2 * 2880 * 512) + 36 * 2880 * 128 + 201088 * 2880
            assert multiplied < model.dense_params_b * 1e9 - 0.5e9
            assert rm.lin_s_per_token == pytest.approx(2.0 * multiplied / bf16_flops, rel=0.004)  # the card's 5.13B
            assert rm.att_lin_s_per_token == pytest.approx(2.0 * model.attention_params_b * 1e9 / bf16_flops)
        else:
            assert fp4_flops == bf16_flops
            assert rm.lin_s_per_token == (2.0 * model.active_params_b * 1e9 - routed_active) / fp4_flops
