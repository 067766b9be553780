"""An FP8 checkpoint that keeps part of the model in BF16 (``fp8_checkpoint: ffn-only``, Meta's Llama 3.1 405B
FP8): its weight bytes, its KV room and its linear-layer time, checked against the shapes by hand; the default
(``all``) reproduces the all-FP8 model."""

from __future__ import annotations

import pytest

from agentsim import spec
from agentsim.catalog import ModelArch, load_catalog
from agentsim.perf import RooflinePerfModel
from agentsim.perf.efficiency import efficiencies
from agentsim.perf.memory import (
    bf16_params_b,
    bytes_per_param,
    dense_bytes_per_param,
    kv_capacity_tokens,
    weight_bytes,
    weight_bytes_per_gpu,
)

CATALOG = load_catalog()
H100 = CATALOG.get_hardware("h100")
META = CATALOG.get_model("llama-3.1-405b-fbgemm")
ALL = CATALOG.get_model("llama-3.1-405b")


def deployment(model: str, precision: str = "fp8") -> spec.Deployment:
    return spec.Deployment.model_validate({"model": model, "hardware": "h100", "tp": 8, "precision": precision})


def test_meta_checkpoint_has_the_shapes_of_the_model_and_ffn_only_fp8() -> None:
    for field in ("layers", "hidden_size", "heads", "kv_heads", "head_dim", "intermediate_size", "params_b"):
        assert getattr(META, field) == getattr(ALL, field)
    assert ALL.fp8_checkpoint == "all" and META.fp8_checkpoint == "ffn-only"
    # FP8: gate, up and down of layers 1..124 (modules_to_not_convert: attention, layers 0 and 125's MLP, lm_head)
    fp8 = 124 * 3 * 16384 * 53248 / 1e9
    assert META.fp8_params_b == pytest.approx(fp8, rel=1e-12)
    assert fp8 == pytest.approx(324.5, abs=0.1)
    assert bf16_params_b(META, "fp8") == pytest.approx(405.85 - fp8, rel=1e-12)
    assert bf16_params_b(META, "bf16") == 0.0 and bf16_params_b(ALL, "fp8") == 0.0


def test_weight_bytes_count_the_bf16_part_at_two_bytes() -> None:
    fp8 = 124 * 3 * 16384 * 53248
    expected = 2.0 * (405.85e9 - fp8) + 1.0 * fp8  # 487.2 GB
    assert weight_bytes(META, deployment("llama-3.1-405b-fbgemm")) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(487.2e9, rel=1e-3)
    assert weight_bytes(ALL, deployment("llama-3.1-405b")) == pytest.approx(405.85e9, rel=1e-12)
    per_gpu = weight_bytes_per_gpu(META, deployment("llama-3.1-405b-fbgemm"))
    assert per_gpu == pytest.approx(expected / 8, rel=1e-12)
    # the default checkpoint is the old model: fp8 one byte, bf16 two, whatever fp8_checkpoint says at bf16
    assert dense_bytes_per_param(ALL, "fp8") == bytes_per_param("fp8") == 1.0
    assert dense_bytes_per_param(META, "bf16") == 2.0


def test_kv_room_is_what_the_heavier_weights_leave() -> None:
    # (79.22 GiB seen x 0.9 - weights per GPU - 2 GB reserve) x 8 GPUs / (2 x 126 x 8 x 128 x 2 bytes), rounded down
    per_token = 2 * 126 * 8 * 128 * 2
    for model, d in ((META, deployment("llama-3.1-405b-fbgemm")), (ALL, deployment("llama-3.1-405b"))):
        d = d.model_copy(update={"kv_precision": "bf16"})
        free = 79.22 * 2**30 * 0.9 - weight_bytes(model, d) / 8 - 2e9
        assert kv_capacity_tokens(model, H100, d) == int(free * 8 // per_token)


def test_linear_time_splits_fp8_and_bf16_flops() -> None:
    d_meta, d_all = deployment("llama-3.1-405b-fbgemm"), deployment("llama-3.1-405b")
    meta, full = RooflinePerfModel(H100, META, d_meta), RooflinePerfModel(H100, ALL, d_all)
    perf = spec.RooflinePerf.model_validate({})
    fp8_flops = 8 * H100.dense_tflops("fp8") * 1e12 * efficiencies(H100, "fp8", "fp8", perf).mfu
    bf16_flops = 8 * H100.dense_tflops("bf16") * 1e12 * efficiencies(H100, "bf16", "fp8", perf).mfu
    fp8 = 124 * 3 * 16384 * 53248
    by_hand = 2.0 * fp8 / fp8_flops + 2.0 * (405.85e9 - fp8) / bf16_flops
    assert meta.lin_s_per_token == pytest.approx(by_hand, rel=1e-12)
    assert full.lin_s_per_token == pytest.approx(2.0 * 405.85e9 / fp8_flops, rel=1e-12)
    # weights read per decode step in the ratio of the bytes
    assert meta.dense_weight_s / full.dense_weight_s == pytest.approx(
        weight_bytes(META, d_meta) / weight_bytes(ALL, d_all), rel=1e-12
    )


def test_ffn_only_is_refused_on_a_moe_model() -> None:
    data = CATALOG.get_model("qwen3-235b-a22b").model_dump() | {"fp8_checkpoint": "ffn-only"}
    with pytest.raises(ValueError, match="ffn-only"):
        ModelArch.model_validate(data)
