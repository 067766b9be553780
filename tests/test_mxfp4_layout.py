"""vLLM lays gpt-oss's MXFP4 experts out padded to its MoE kernel's multiples (``perf.memory.expert_layout_factor``):
the weights, the KV cache they leave and the experts' step time, against vLLM's source rules and its public logs
(experiments/fidelity/data/vllm_memory_logs.csv)."""

from __future__ import annotations

import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf.memory import (
    expert_layout_factor,
    kv_cache_bytes_per_gpu,
    vllm_mxfp4_multiples,
    weight_bytes,
    weight_bytes_per_gpu,
)
from agentsim.perf.roofline import RooflinePerfModel
from agentsim.serving.presets import fill_engine, vllm_activation_reserve_gb
from helpers import native_sampler

CATALOG = load_catalog()
GIB = 2**30
OSS = CATALOG.get_model("gpt-oss-120b")


def _deployment(hardware: str, preset: str = "vllm", tp: int = 1, **engine: object) -> spec.Deployment:
    d = spec.Deployment.model_validate(
        {"model": "gpt-oss-120b", "hardware": hardware, "tp": tp, "precision": "fp4",
         "engine": {"preset": preset, **engine}}
    )  # fmt: skip
    return fill_engine(d, CATALOG.get_hardware(hardware), OSS)


def test_the_multiples_are_vllms_backends() -> None:
    """``quantization/mxfp4.py`` (v0.10.2): Marlin on Hopper pads the intermediate width to 128 and the hidden width
    to 256; FlashInfer's MXFP4 x BF16 on Blackwell both to 256; ROCm's triton_kernels both to 128; other hardware
    runs no MXFP4 MoE kernel."""
    assert vllm_mxfp4_multiples(CATALOG.get_hardware("h100")) == (128, 256)
    assert vllm_mxfp4_multiples(CATALOG.get_hardware("h200")) == (128, 256)
    assert vllm_mxfp4_multiples(CATALOG.get_hardware("b200")) == (256, 256)
    assert vllm_mxfp4_multiples(CATALOG.get_hardware("mi300x")) == (128, 128)
    assert vllm_mxfp4_multiples(CATALOG.get_hardware("gaudi3")) == (1, 1)


def test_gpt_oss_experts_grow_by_the_padding_under_vllm_only() -> None:
    """2,880 x 2,880 expert matrices become 2,944 x 3,072 on an H100 (+9.0%), 3,072 x 3,072 on a B200 (+13.8%),
    2,944 x 2,944 on an MI300X (+4.5%); under SGLang and TensorRT-LLM, and without hardware, the checkpoint's."""
    h100 = CATALOG.get_hardware("h100")
    assert expert_layout_factor(OSS, _deployment("h100"), h100) == pytest.approx(2944 * 3072 / 2880**2)
    assert expert_layout_factor(OSS, _deployment("b200"), CATALOG.get_hardware("b200")) == pytest.approx(
        3072**2 / 2880**2
    )
    assert expert_layout_factor(OSS, _deployment("mi300x"), CATALOG.get_hardware("mi300x")) == pytest.approx(
        2944**2 / 2880**2
    )
    for preset in ("sglang", "trtllm"):
        assert expert_layout_factor(OSS, _deployment("h100", preset), h100) == 1.0
    d = _deployment("h100")
    assert expert_layout_factor(OSS, d, None) == 1.0
    # a dense model, and an MoE checkpoint of another format, keep their bytes
    llama = spec.Deployment.model_validate({"model": "llama-3.1-8b", "hardware": "h100", "precision": "fp4"})
    assert expert_layout_factor(CATALOG.get_model("llama-3.1-8b"), llama, h100) == 1.0
    # tensor parallelism pads each GPU's shard: 2,880 / 2 = 1,440 -> 1,536 (x 3,072)
    tp2 = _deployment("h100", tp=2)
    assert expert_layout_factor(OSS, tp2, h100) == pytest.approx(1536 * 3072 / (1440 * 2880))
    experts = OSS.experts * OSS.expert_params_b * 1e9 * 0.53125
    grown = experts * (2944 * 3072 / 2880**2 - 1.0)
    assert weight_bytes(OSS, d, h100) - weight_bytes(OSS, d) == pytest.approx(grown)


def test_gpt_oss_120b_on_one_h100_against_vllms_logs() -> None:
    """vLLM issue #23278 (Marlin, the defaults): 65.97 GiB of weights, ``Available KV cache memory: -2.14 GiB``.
    Counted by hand from config.json's shapes: 36 layers x 128 experts x 3 x 2,880 x 2,880 expert weights at
    MXFP4's 4.25 bits and the other 2.18B parameters (116.83B in all) in BF16 is the checkpoint, 60.8 GiB; Marlin's
    2,944 x 3,072 matrices add 9%, 65.9 GiB: the log's within 0.2%, and the model's own count (experts sized from
    the same shapes) is that hand count. With the log's weights and the sampler that install ran (PyTorch's
    sort: no FlashInfer), the KV cache left is the log's within 0.2 GiB; so is issue #27508's (0.95 of memory, a
    1,024-token budget: 1.71 GiB left)."""
    h100 = CATALOG.get_hardware("h100")
    d = _deployment("h100")
    experts = 36 * 128 * 3 * 2880 * 2880
    checkpoint = (experts * 4.25 / 8 + (116.83e9 - experts) * 2) / GIB
    padded = checkpoint + experts * 4.25 / 8 * (2944 * 3072 / 2880**2 - 1) / GIB
    assert checkpoint == pytest.approx(60.8, abs=0.05) and padded == pytest.approx(65.97, rel=0.002)
    ours = weight_bytes_per_gpu(OSS, d, h100) / GIB
    assert ours == pytest.approx(padded, abs=0.01)
    shortfall = 65.97 - ours

    def native(util: float, budget: int) -> spec.Deployment:
        return native_sampler(_deployment("h100", gpu_memory_utilization=util, max_batched_tokens=budget))

    assert kv_cache_bytes_per_gpu(OSS, h100, native(0.9, 8192)) / GIB - shortfall == pytest.approx(-2.14, abs=0.2)
    assert kv_cache_bytes_per_gpu(OSS, h100, native(0.95, 1024)) / GIB - shortfall == pytest.approx(1.71, abs=0.2)


def test_the_experts_step_time_reads_the_padded_bytes() -> None:
    """A decode step of one sequence streams the routed experts it touches: with vLLM's layout 9% more bytes than
    SGLang's count of the same checkpoint on the same H100 (the rest of the step is the same)."""
    h100 = CATALOG.get_hardware("h100")
    vllm = RooflinePerfModel(h100, OSS, _deployment("h100"))
    same = _deployment("h100").model_copy(update={"engine": _deployment("h100").engine.model_copy(
        update={"preset": "sglang"})})  # fmt: skip
    plain = RooflinePerfModel(h100, OSS, same)
    assert vllm.all_experts_s == pytest.approx(plain.all_experts_s * 2944 * 3072 / 2880**2)
    assert vllm.moe_s_per_token == pytest.approx(plain.moe_s_per_token * 2944 * 3072 / 2880**2)
    assert vllm.lin_s_per_token == pytest.approx(plain.lin_s_per_token)


def test_the_maker_is_a_field_and_a_catalog_entry_named_otherwise_must_give_it() -> None:
    """The layout follows ``Hardware.vendor``: taken from the packaged names' first word, refused (naming the field)
    for a name that does not start with a maker, unless the entry says it; an entry saying AMD pads as ROCm does."""
    from pydantic import ValidationError

    from agentsim.catalog import Hardware

    h100 = CATALOG.get_hardware("h100")
    assert (h100.vendor, CATALOG.get_hardware("mi300x").vendor, CATALOG.get_hardware("sn40l").vendor) == (
        "nvidia", "amd", "sambanova")  # fmt: skip
    raw = h100.model_dump(exclude={"vendor"})
    with pytest.raises(ValidationError, match="vendor: give one of nvidia, amd, intel, sambanova"):
        Hardware.model_validate(raw | {"name": "Our H100 cluster"})
    ours = Hardware.model_validate(raw | {"name": "Our H100 cluster", "vendor": "nvidia"})
    assert vllm_mxfp4_multiples(ours) == (128, 256)
    assert vllm_mxfp4_multiples(Hardware.model_validate(raw | {"vendor": "amd"})) == (128, 128)


@pytest.mark.parametrize("copies", [float("nan"), float("inf"), -50.0])
def test_a_sampler_count_that_is_no_count_is_refused(copies: float) -> None:
    """A negative count would hide behind the forward pass's peak, a NaN or infinite one poison the cache size."""
    d = _deployment("h100")
    with pytest.raises(ValueError, match="copies: FP32 copies of the sampler's logits must be finite and >= 0"):
        vllm_activation_reserve_gb(OSS, d, 1024, 8192, copies=copies)
