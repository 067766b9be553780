"""KV caches of the other presets. TensorRT-LLM's (``trtllm``): its dtype follows the checkpoint
(``kv_cache_dtype: auto``: FP8 only for NVIDIA's ModelOpt checkpoints, which declare ``kv_cache_quant_algo: FP8``),
and every layer's cache is sized for the whole sequence, sliding-window layers included (no
``max_attention_window`` by default). SGLang's (``sglang``): the window layers' pool holds 0.8 tokens per token of
the full pool. Checked by hand: the dtype per checkpoint recipe, gpt-oss-120b's bytes per token against
TensorRT-LLM's own log (``kv size is 73728``) and SGLang's pool split, and the capacity in tokens against the
memory formula."""

from __future__ import annotations

import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf.memory import (
    activation_reserve_gb,
    kv_bytes_per_token,
    kv_capacity_tokens,
    kv_pool_bytes_per_token,
    weight_bytes_per_gpu,
)
from agentsim.perf.roofline import RooflinePerfModel, grouped_gemm_efficiency
from agentsim.serving.presets import fill_engine, kv_precision

CATALOG = load_catalog()


def _deployment(model: str, precision: str, preset: str, hardware: str = "h100", tp: int = 1) -> spec.Deployment:
    return spec.Deployment.model_validate(
        {"model": model, "hardware": hardware, "tp": tp, "precision": precision, "engine": {"preset": preset}}
    )


@pytest.mark.parametrize(
    ("model", "precision", "kv"),
    [
        ("llama-3.3-70b", "fp8", "fp8"),  # nvidia/Llama-3.3-70B-Instruct-FP8: ModelOpt, per-tensor scales
        ("deepseek-r1", "fp4", "fp8"),  # nvidia/DeepSeek-R1-FP4: ModelOpt NVFP4
        ("gpt-oss-120b", "fp4", "bf16"),  # OpenAI's MXFP4 release: quant_method mxfp4, no KV entry
        ("deepseek-r1", "fp8", "bf16"),  # DeepSeek's block-scaled FP8 release: no KV entry
        ("qwen3-235b-a22b", "fp8", "bf16"),  # Qwen's block-scaled FP8 release
        ("llama-3.1-405b-fbgemm", "fp8", "bf16"),  # Meta's FBGEMM FP8: no KV entry
        ("llama-3.3-70b", "bf16", "bf16"),
    ],
)
def test_the_kv_dtype_follows_the_checkpoint(model: str, precision: str, kv: str) -> None:
    arch = CATALOG.get_model(model)
    assert kv_precision(_deployment(model, precision, "trtllm"), arch) == kv
    assert kv_precision(_deployment(model, precision, "vllm"), arch) == "bf16"  # vLLM's auto: the activations'
    explicit = _deployment(model, precision, "trtllm").model_copy(update={"kv_precision": "fp8"})
    assert kv_precision(explicit, arch) == "fp8"


def test_a_channel_scaled_checkpoint_is_not_modelopts() -> None:
    """ModelOpt's FP8 checkpoints scale per tensor; a deployment saying its FP8 weights are channel-scaled (an
    FBGEMM-style checkpoint) declares no FP8 KV cache, under TensorRT-LLM too."""
    arch = CATALOG.get_model("llama-3.3-70b")
    channel = _deployment("llama-3.3-70b", "fp8", "trtllm").model_copy(update={"fp8_scales": "channel"})
    assert kv_precision(channel, arch) == "bf16"


def test_gpt_oss_120b_holds_every_layer_under_tensorrt_llm() -> None:
    """36 layers x 8 KV heads x 64 dims x K and V x 2 bytes = 73,728 bytes a token, TensorRT-LLM 1.1.0rc3's logged
    ``kv size`` for gpt-oss-120b; vLLM's hybrid manager charges the 18 full-attention layers (36,864) and holds the
    window per sequence."""
    arch = CATALOG.get_model("gpt-oss-120b")
    h100 = CATALOG.get_hardware("h100")
    trt = fill_engine(_deployment("gpt-oss-120b", "fp4", "trtllm"), h100, arch)
    vllm = fill_engine(_deployment("gpt-oss-120b", "fp4", "vllm"), h100, arch)
    assert kv_pool_bytes_per_token(arch, trt) == 36 * 8 * 64 * 2 * 2 == 73_728
    assert kv_pool_bytes_per_token(arch, vllm) == 18 * 8 * 64 * 2 * 2
    # what attention reads and a transfer moves stays the full-attention layers' under every engine
    assert kv_bytes_per_token(arch, trt) == kv_bytes_per_token(arch, vllm) == 18 * 8 * 64 * 2 * 2
    # the capacity by the memory formula: 0.9 of what the weights and the reserve leave, over 73,728 bytes
    free = 0.9 * (h100.device_memory_bytes - weight_bytes_per_gpu(arch, trt) - activation_reserve_gb(trt) * 1e9)
    assert kv_capacity_tokens(arch, h100, trt) == int(free // 73_728)
    # models without sliding-window layers are unchanged: every layer is a full-attention layer
    llama = CATALOG.get_model("llama-3.3-70b")
    d = fill_engine(_deployment("llama-3.3-70b", "fp8", "trtllm", "h200", 2), CATALOG.get_hardware("h200"), llama)
    assert kv_pool_bytes_per_token(llama, d) == kv_bytes_per_token(llama, d) == 2 * 80 * 8 * 128 * 1


def test_the_decode_step_reads_the_same_kv_under_every_engine() -> None:
    """The pool accounting does not change what a decode step reads: gpt-oss-120b at 64 sequences of 32k tokens
    takes the same roofline time under SGLang and TensorRT-LLM with the same overheads and kernel floor, and under
    vLLM that time plus the padding of its MXFP4 experts it streams (2,944 x 3,072 for 2,880 x 2,880 on Hopper:
    the 64 tokens' expert copies touch 1 - (1 - 4/128)^64 of the 128 experts of a layer, at the grouped GEMM's
    efficiency at two copies an expert)."""
    arch = CATALOG.get_model("gpt-oss-120b")
    h100 = CATALOG.get_hardware("h100")
    perf = spec.RooflinePerf.model_validate({"overhead_s": 0.0, "overhead_s_per_seq": 0.0, "kernel_latency_s": 0.0})
    models = {}
    for preset in ("vllm", "sglang", "trtllm"):
        d = fill_engine(_deployment("gpt-oss-120b", "fp4", preset), h100, arch)
        d = d.model_copy(update={"kv_precision": "bf16"})
        models[preset] = RooflinePerfModel(h100, arch, d, perf)
    times = {p: m.step_time(0, 64, 64 * 32_768) for p, m in models.items()}
    assert times["sglang"] == times["trtllm"]
    touched = 1.0 - (1.0 - 4 / 128) ** 64
    padding = models["vllm"].all_experts_s - models["sglang"].all_experts_s
    assert padding == pytest.approx(models["sglang"].all_experts_s * (2944 * 3072 / 2880**2 - 1.0))
    extra = padding * touched / grouped_gemm_efficiency(64 * 4 / 128)
    assert times["vllm"] == pytest.approx(times["sglang"] + extra, rel=1e-9)


def test_a_deployment_naming_its_scales_names_its_checkpoint() -> None:
    """``fp8_scales`` on the deployment overrides the catalog's, for the KV dtype too: a block-scaled Llama is not
    a ModelOpt checkpoint, a per-tensor Qwen3 is."""
    llama, qwen = CATALOG.get_model("llama-3.3-70b"), CATALOG.get_model("qwen3-235b-a22b")
    block = _deployment("llama-3.3-70b", "fp8", "trtllm").model_copy(update={"fp8_scales": "block"})
    tensor = _deployment("qwen3-235b-a22b", "fp8", "trtllm").model_copy(update={"fp8_scales": "tensor"})
    assert kv_precision(block, llama) == "bf16" and kv_precision(tensor, qwen) == "fp8"


def test_sglang_holds_gpt_oss_whole_in_every_layer_and_splits_only_a_hybrid_model() -> None:
    """SGLang v0.5.5 turns hybrid sliding-window memory off for gpt-oss (``disable_hybrid_swa_memory = True`` for
    ``GptOssForCausalLM`` in ``server_args.py``): one pool, every one of its 36 layers holding the whole context,
    73,728 bytes a token in BF16, twice vLLM's 18 full-attention layers (which charges the window per sequence
    instead). A model SGLang does split (``sglang_hybrid_swa``) gets a window pool of 0.8 tokens per token of the
    full-attention pool: a token of capacity costs 18 + 0.8 x 18 = 32.4 layers, 66,355.2 bytes."""
    arch = CATALOG.get_model("gpt-oss-120b")
    assert not arch.sglang_hybrid_swa
    h100 = CATALOG.get_hardware("h100")
    sglang = fill_engine(_deployment("gpt-oss-120b", "fp4", "sglang"), h100, arch)
    assert kv_pool_bytes_per_token(arch, sglang) == 36 * 8 * 64 * 2 * 2 == 73_728
    hybrid = arch.model_copy(update={"sglang_hybrid_swa": True})
    assert kv_pool_bytes_per_token(hybrid, sglang) == round((18 + 0.8 * 18) * 8 * 64 * 2 * 2) == 66_355
    vllm = fill_engine(_deployment("gpt-oss-120b", "fp4", "vllm"), h100, arch)
    assert kv_pool_bytes_per_token(hybrid, vllm) == kv_pool_bytes_per_token(arch, vllm) == 18 * 8 * 64 * 2 * 2
    llama = CATALOG.get_model("llama-3.3-70b")
    d = fill_engine(_deployment("llama-3.3-70b", "bf16", "sglang", "h200", 2), CATALOG.get_hardware("h200"), llama)
    assert kv_pool_bytes_per_token(llama, d) == 2 * 80 * 8 * 128 * 2  # no window layers: unchanged


def test_sglang_under_the_of_free_rule_reserves_its_context_once() -> None:
    """With ``kv_memory: of-free`` the fraction applies to what the weights and the CUDA context leave, so the
    context (:data:`SGLANG_CONTEXT_GB` on one GPU) is taken whole, not scaled by the fraction first:
    ``0.8 x (device - weights - context)``, by hand against the of-total rule's ``0.8 x device - weights -
    0.8 x context``."""
    from agentsim.perf.memory import kv_cache_bytes_per_gpu
    from agentsim.serving.presets import SGLANG_CONTEXT_GB

    hw, model = CATALOG.get_hardware("h100"), CATALOG.get_model("llama-3.1-8b")
    device, context = hw.device_memory_bytes, SGLANG_CONTEXT_GB * 1e9
    free: dict[str, float] = {}
    for rule in ("of-free", "of-total"):
        d = spec.Deployment.model_validate({"model": "llama-3.1-8b", "hardware": "h100", "precision": "bf16",
                                            "engine": {"preset": "sglang", "kv_memory": rule,
                                                       "gpu_memory_utilization": 0.8}})  # fmt: skip
        filled = fill_engine(d, hw, model)
        weights = weight_bytes_per_gpu(model, filled)
        free[rule] = kv_cache_bytes_per_gpu(model, hw, filled)
        expected = 0.8 * (device - weights - context) if rule == "of-free" else 0.8 * device - weights - 0.8 * context
        assert free[rule] == pytest.approx(expected, rel=1e-12), rule
    # the of-free rule leaves the fraction of the weights' memory to the cache too: 0.2 x weights more
    assert free["of-free"] - free["of-total"] == pytest.approx(0.2 * weights, rel=1e-9)
