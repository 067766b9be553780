"""GPU memory: what the weights take, what one token of KV cache takes, and how many tokens fit.

An accelerator's HBM holds three things during serving: the model's weights (split over the ``tp * pp``
GPUs of a replica), transient activations, and the KV cache, the keys and values that attention has already
computed for every token of every resident sequence. Whatever the weights and activations leave is the KV
cache, and its size in tokens bounds how many sequences (and how much shared prefix) a replica can keep
resident.

Per token, a grouped-query-attention (GQA) model stores a key and a value vector per KV head per layer:
``2 * layers * kv_heads * head_dim * bytes`` (Llama-3.3-70B in 16-bit: 2 x 80 x 8 x 128 x 2 = 327,680 bytes,
320 KiB). A multi-head-latent-attention (MLA) model (DeepSeek-V3/R1) stores one compressed latent of
``kv_lora_rank`` plus one RoPE key of ``qk_rope_head_dim`` per layer: ``layers * (512 + 64) * bytes``, 70 KB
for DeepSeek-R1 in 16-bit, about 5x less than Llama-70B for a 10x larger model.

Decisions, so that results can be compared with real engines:

* bytes per weight: bf16 2, fp8 1, fp4 0.5625 (NVFP4: 4 bits plus an FP8 scale per 16 weights; gpt-oss's
  MXFP4 experts 0.53125, one 8-bit scale per 32, and its other weights BF16; NVIDIA's DeepSeek FP4, ``nvfp4-ffn``,
  its feed-forward weights NVFP4 and attention, router, embeddings and LM head BF16); Meta's Llama 3.1 405B FP8
  checkpoint (``fp8_checkpoint: ffn-only``) holds only the feed-forward of layers 1-124 in FP8, 20% of its
  weights (attention, embeddings, LM head, the first and last layers' feed-forward) in BF16, 1.20 bytes per
  weight on average; the KV cache uses ``kv_precision`` (default: the weights' precision) except that an fp4
  KV cache is counted at the fp8 size, since serving engines store KV at 8 bits at the lowest;
* the usable memory per GPU is the device memory the engine sees times ``gpu_memory_utilization`` (vLLM's knob:
  the rest is CUDA context and fragmentation). The device memory is what the driver reports
  (``Hardware.device_memory_bytes``, from the catalog's ``hbm_visible_gib``): vendors quote HBM in GiB, so an
  H100 "80 GB" shows vLLM 79.22 GiB, 85.06e9 bytes, not 80e9; hardware without a logged figure takes
  ``hbm_gb`` GiB x 0.99.
  Of the usable memory, the engine's ``activation_reserve_gb`` per GPU (its preset's;
  :data:`ACTIVATION_RESERVE_GB` when unset) is kept for activations, CUDA graphs and communication buffers:
  :func:`activation_reserve_gb`, for the KV cache and the weights alike. The ``vllm`` preset's is what vLLM's
  profiling run keeps (``agentsim.serving.presets.vllm_activation_reserve_gb``: the sampler's logits or one
  forward pass of the token budget, :func:`forward_activation_bytes`, whichever is larger, and the memory outside
  PyTorch; 1.4-8 GB at vLLM's defaults);
* KV replication: tensor parallelism shards the KV heads over the ``tp`` GPUs, but a GPU cannot hold less than
  one head, so with ``tp > kv_heads`` heads are replicated (Qwen3-235B has 4 KV heads: at tp 8 each is stored
  twice), and MLA's single latent per layer is replicated on every TP rank (vLLM and SGLang without
  data-parallel attention). :func:`kv_replication` is that factor; capacity and KV traffic are multiplied
  by it;
* ``engine.kv_capacity_tokens``, when set, overrides the derived capacity, but the weights must still fit;
* sliding-window layers (gpt-oss: every other layer attends to the last 128 tokens only) hold at most a window
  of KV per sequence: :func:`kv_bytes_per_token` (read and moved per token) counts the full-attention layers;
  what a token takes of the pool depends on the engine (:func:`kv_pool_bytes_per_token`, below), and
  :func:`sliding_window_kv` is what each running sequence holds besides under vLLM (below).

**Sliding-window layers under vLLM** (v1 hybrid KV-cache manager; ``vllm/v1/core/kv_cache_utils.py``,
``single_type_kv_cache_manager.py``, ``kv_cache_coordinator.py``). vLLM groups the layers by attention type into
KV-cache groups of equal layer count (``_get_kv_cache_groups_uniform_page_size``: the group size is the smaller
type's layer count, or the larger one's when it is under 1.5 times the smaller) that draw their blocks from one
shared block pool of ``memory // (page_size * group_size)`` blocks (``get_kv_cache_config_from_groups``,
``get_num_blocks``). gpt-oss-120b's 18 full and 18 sliding-window layers make one group of each, so a block of
the pool costs what 16 tokens of the full-attention layers cost: the capacity above. But every running sequence
also holds its sliding-window group's blocks: the ``SlidingWindowManager`` frees the blocks wholly before the
window (``get_num_skipped_tokens = max(0, computed - window + 1)``, ``remove_skipped_blocks`` before each
allocation), which leaves at most ``cdiv(window - 1, block) + 1`` blocks (9 of 16 tokens for a 128-token
window: 144 tokens of pool; 8 or 9 as the sequence grows), ``cdiv(length, block)`` while the sequence is
shorter. :func:`sliding_window_kv` converts that to tokens of this module's capacity. SGLang v0.5.5 turns its
hybrid sliding-window memory off for gpt-oss (``server_args.py``, ``model_specific_adjustments``:
``disable_hybrid_swa_memory = True`` for ``GptOssForCausalLM``, as for Gemma 2/3 and OLMo 2; v0.5.3 and v0.5.4 the
same), so its one pool sizes every layer for the whole context: a token of capacity costs every layer. For a model
it does split (``ModelArch.sglang_hybrid_swa``) the window layers get a pool of their own, sized at
:data:`SGLANG_SWA_FULL_TOKENS_RATIO` of the full pool's tokens: a token of capacity costs that share of the window
layers too (:func:`kv_pool_bytes_per_token`), and nothing is charged per sequence (below about ``window / 0.8``
tokens a sequence would fill the window pool first, not modelled).
TensorRT-LLM (1.0-1.2) splits its pool by window only when ``kv_cache_config.max_attention_window`` lists the
windows; by default every layer's cache is sized for ``max_seq_len`` (``KVCacheManager``: ``max_attention_window_vec
= [max_seq_len]``), so under the ``trtllm`` preset a token costs every layer (:func:`kv_pool_bytes_per_token`:
gpt-oss-120b's 36 layers, 73,728 bytes in BF16, as its 1.1.0rc3 log's ``kv size``).

Data-parallel attention (``deployment.data_parallel_attention``): every GPU of a stage holds the whole attention
block and serves its own sequences, so the attention weights are replicated ``tp`` times (more weight bytes per
GPU, :func:`weight_bytes_per_gpu`) and the KV cache is not (:func:`kv_replication` is 1): the trade DeepSeek-style
MLA deployments make, since MLA's latent cannot be split by heads.

**Memory tiers.** Hardware with a second, larger and slower tier (``ddr_gb``, ``ddr_tb_s``: SambaNova's SN40L
has 64 GB HBM and up to 1.5 TB DDR per socket) can keep weights there. :func:`weight_placement` decides, per
``deployment.weights_memory``: ``hbm`` all weights in HBM (an error if they do not fit); ``ddr`` all weights in
DDR, read from there at every step, HBM left to the KV cache; ``auto`` (default) HBM when the weights fit in
``(1 - DDR_KV_FRACTION)`` of the usable HBM less the activation reserve, otherwise HBM *caches* as many weight
bytes as fit there (keeping :data:`DDR_KV_FRACTION` of usable HBM for the KV cache) and the rest stays in DDR.
The roofline reads each part at its tier's bandwidth (:mod:`agentsim.perf.roofline`). On hardware without DDR,
``auto`` is ``hbm``.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from agentsim.catalog import Hardware, ModelArch
from agentsim.spec import Deployment, Precision

__all__ = [
    "ACTIVATION_RESERVE_GB",
    "DDR_KV_FRACTION",
    "MXFP4_PADDED_ENGINES",
    "SGLANG_SWA_FULL_TOKENS_RATIO",
    "DoesNotFitError",
    "WeightPlacement",
    "WindowKv",
    "activation_reserve_gb",
    "attention_bytes_per_param",
    "attention_weight_bytes",
    "bf16_params_b",
    "bytes_per_param",
    "dense_bytes_per_param",
    "expert_bytes_per_param",
    "expert_layout_factor",
    "expert_weight_bytes",
    "forward_activation_bytes",
    "kv_bytes_per_element",
    "kv_bytes_per_token",
    "kv_cache_bytes_per_gpu",
    "kv_capacity_tokens",
    "kv_free_bytes_per_gpu",
    "kv_pool_bytes_per_token",
    "kv_replication",
    "sliding_window_kv",
    "usable_bytes_per_gpu",
    "vllm_mxfp4_multiples",
    "weight_bytes",
    "weight_bytes_per_gpu",
    "weight_placement",
]

ACTIVATION_RESERVE_GB = 2.0
"""GB per GPU kept for activations, CUDA graphs and communication buffers, out of the usable memory, where nothing
better is known: the ``trtllm`` preset's and an unfilled engine's (the ``vllm`` preset computes its own; no public
TensorRT-LLM log of its activation memory was found)."""

DDR_KV_FRACTION = 0.25
"""With ``weights_memory: auto`` on hardware with a DDR tier, the fraction of usable HBM kept for the KV cache when
the weights spill into DDR (and the bound that decides whether they spill)."""


class DoesNotFitError(ValueError):
    """The weights (plus the activation reserve) do not fit in a replica's usable GPU memory."""


NVFP4_BYTES = 0.5 + 1.0 / 16
"""Bytes per NVFP4 weight: a 4-bit E2M1 value plus one FP8 (E4M3) scale per block of 16 (NVIDIA's NVFP4 format,
TensorRT Model Optimizer / Blackwell block-scaled MMA; +12.5% over 4 bits; the per-tensor FP32 scale is
negligible)."""

MXFP4_BYTES = 0.5 + 1.0 / 32
"""Bytes per MXFP4 weight: a 4-bit E2M1 value plus one 8-bit (E8M0) scale per block of 32 (OCP Microscaling
Formats (MX) v1.0 specification; +6.25% over 4 bits). FP8 checkpoints' scales (per channel, or one FP32 scale per
128x128 block in DeepSeek's) add under 0.1% and are not counted."""


def bytes_per_param(precision: Precision) -> float:
    """Bytes per weight stored in ``precision``: bf16 2, fp8 1, fp4 NVFP4 (4 bits and the block scales)."""
    if precision == "bf16":
        return 2.0
    if precision == "fp8":
        return 1.0
    return NVFP4_BYTES


def bf16_params_b(model: ModelArch, precision: Precision) -> float:
    """Parameters (billions) a ``precision`` checkpoint keeps in BF16 although the deployment says otherwise, and
    multiplies in BF16: an ``fp8_checkpoint: ffn-only`` model at fp8 (Meta's Llama 3.1 FP8: attention, the first and
    last layers' feed-forward, embeddings and LM head); at fp4 everything outside the checkpoint's FP4 weights
    (``fp4_checkpoint: nvfp4-ffn``, NVIDIA's DeepSeek-R1/V3: attention, router, embeddings, LM head; ``mxfp4-experts``,
    gpt-oss: all but the routed experts); 0 for every other checkpoint."""
    if precision == "fp8" and model.fp8_checkpoint == "ffn-only":
        return model.params_b - model.fp8_params_b
    if precision == "fp4" and model.fp4_checkpoint != "nvfp4":
        return model.params_b - model.fp4_params_b
    return 0.0


def dense_bytes_per_param(model: ModelArch, precision: Precision) -> float:
    """Bytes per weight outside the routed experts, the mean over those weights: ``precision``'s, except where the
    checkpoint keeps :func:`bf16_params_b` of them in BF16 (gpt-oss's ``mxfp4-experts``: all of them)."""
    bf16 = bf16_params_b(model, precision)
    if bf16 > 0.0:
        dense = model.dense_params_b
        return (2.0 * bf16 + (dense - bf16) * bytes_per_param(precision)) / dense
    return bytes_per_param(precision)


def attention_bytes_per_param(model: ModelArch, precision: Precision) -> float:
    """Bytes per attention weight: 2 where the checkpoint keeps layers in BF16 (:func:`bf16_params_b`: attention is
    among them in every such checkpoint), else ``precision``'s."""
    return 2.0 if bf16_params_b(model, precision) > 0.0 else bytes_per_param(precision)


def attention_weight_bytes(model: ModelArch, deployment: Deployment) -> float:
    """Bytes of the attention blocks' weights of all layers (:func:`attention_bytes_per_param`): what every GPU of a
    stage holds whole under data-parallel attention."""
    return model.attention_params_b * 1e9 * attention_bytes_per_param(model, deployment.precision)


def expert_bytes_per_param(model: ModelArch, precision: Precision) -> float:
    """Bytes per routed-expert weight: ``precision``'s; MXFP4 for an ``mxfp4-experts`` checkpoint."""
    if precision == "fp4" and model.fp4_checkpoint == "mxfp4-experts":
        return MXFP4_BYTES
    return bytes_per_param(precision)


def kv_bytes_per_element(deployment: Deployment) -> int:
    """Bytes per KV-cache element: ``kv_precision`` (default the weights' precision), fp4 counted as fp8."""
    precision = deployment.kv_precision or deployment.precision
    return 2 if precision == "bf16" else 1


MXFP4_PADDED_ENGINES: Final = ("vllm",)
"""Engine presets whose MXFP4 MoE kernels pad the experts' matrices (:func:`vllm_mxfp4_multiples`); SGLang's and
TensorRT-LLM's layouts are not public and keep the checkpoint's."""


def vllm_mxfp4_multiples(hardware: Hardware) -> tuple[int, int]:
    """The multiples vLLM (v0.10.2-v0.11) pads an MXFP4 MoE's expert weights to on ``hardware``, (intermediate width
    per shard, hidden width), by the backend ``quantization/mxfp4.py`` picks (``get_mxfp4_backend``,
    ``Mxfp4MoEMethod.create_weights``): NVIDIA without FP4 units (Hopper) runs Marlin, (128, 256), as long as
    ``triton_kernels`` is missing (it is no dependency of vLLM's wheel) and FlashInfer's SM90 MXFP4 path is not
    asked for (``VLLM_USE_FLASHINFER_MOE_MXFP4_BF16``); NVIDIA with FP4 units (Blackwell) FlashInfer's MXFP4 x
    BF16, (256, 256); AMD (ROCm, triton_kernels) (128, 128); (1, 1) elsewhere (no MXFP4 MoE kernel: the
    checkpoint's layout). The maker is the catalog's ``Hardware.vendor``."""
    if hardware.vendor == "nvidia":
        return (256, 256) if hardware.fp4_dense_tflops is not None else (128, 256)
    if hardware.vendor == "amd":
        return 128, 128
    return 1, 1


def expert_layout_factor(model: ModelArch, deployment: Deployment, hardware: Hardware | None) -> float:
    """The routed experts' bytes (and multiply-adds) in the engine's memory over the checkpoint's: vLLM pads an
    ``mxfp4-experts`` checkpoint's expert matrices to its kernel's multiples (:func:`vllm_mxfp4_multiples`;
    gpt-oss's 2,880 x 2,880 experts become 2,944 x 3,072 on Hopper, 9% more: vLLM logs 65.97 GiB of weights for
    gpt-oss-120b on one H100, this count 65.9 GiB, the checkpoint's 60.8); 1 for other checkpoints, engines
    (:data:`MXFP4_PADDED_ENGINES`) and without ``hardware`` (the checkpoint's bytes)."""
    if (
        hardware is None
        or deployment.engine.preset not in MXFP4_PADDED_ENGINES
        or deployment.precision != "fp4"
        or model.fp4_checkpoint != "mxfp4-experts"
    ):
        return 1.0
    inter_multiple, hidden_multiple = vllm_mxfp4_multiples(hardware)
    inter = float(model.expert_intermediate_size) / deployment.expert_shards
    hidden = float(model.hidden_size)
    padded_inter = math.ceil(inter / inter_multiple) * inter_multiple
    padded_hidden = math.ceil(hidden / hidden_multiple) * hidden_multiple
    return (padded_inter * padded_hidden) / (inter * hidden)


def expert_weight_bytes(model: ModelArch, deployment: Deployment, hardware: Hardware | None = None) -> float:
    """Bytes of all the replica's routed experts: the checkpoint's, and with ``hardware`` as the engine lays them
    out there (:func:`expert_layout_factor`); 0 for a dense model."""
    if not model.is_moe:
        return 0.0
    per_param = expert_bytes_per_param(model, deployment.precision)
    return model.routed_params_b * 1e9 * per_param * expert_layout_factor(model, deployment, hardware)


def weight_bytes(model: ModelArch, deployment: Deployment, hardware: Hardware | None = None) -> float:
    """Bytes of all the replica's weights (every expert included): the checkpoint's, and with ``hardware`` as the
    engine lays them out there (:func:`expert_weight_bytes`)."""
    dense = model.dense_params_b * dense_bytes_per_param(model, deployment.precision)
    return 1e9 * dense + expert_weight_bytes(model, deployment, hardware)


def weight_bytes_per_gpu(model: ModelArch, deployment: Deployment, hardware: Hardware | None = None) -> float:
    """Bytes of weights on each GPU of the replica, split evenly over ``tp * pp`` GPUs; with data-parallel
    attention each GPU of a stage holds the whole attention block of its stage's layers. With ``hardware``, as the
    engine lays them out there (:func:`weight_bytes`)."""
    total = weight_bytes(model, deployment, hardware)
    if not deployment.data_parallel_attention:
        return total / deployment.gpus
    attention = attention_weight_bytes(model, deployment)
    return attention / deployment.pp + (total - attention) / deployment.gpus


class WeightPlacement(NamedTuple):
    """Where one GPU's weight bytes live: ``hbm_bytes + ddr_bytes = weight_bytes_per_gpu``."""

    hbm_bytes: float
    ddr_bytes: float

    @property
    def hbm_fraction(self) -> float:
        """Fraction of the weights read from HBM (1 without a DDR tier)."""
        total = self.hbm_bytes + self.ddr_bytes
        return self.hbm_bytes / total if total > 0 else 1.0


def activation_reserve_gb(deployment: Deployment) -> float:
    """GB per GPU the engine keeps for activations: ``engine.activation_reserve_gb`` (its preset's once the
    engine is filled, :mod:`agentsim.serving.presets`), :data:`ACTIVATION_RESERVE_GB` when unset. The one rule
    for the KV cache's share and for how many weight bytes HBM may cache."""
    reserve = deployment.engine.activation_reserve_gb
    return ACTIVATION_RESERVE_GB if reserve is None else reserve


FUSED_MOE_CHUNK_TOKENS: Final = 32768
"""Tokens vLLM's fused MoE runs at once (``VLLM_FUSED_MOE_CHUNK_SIZE``, 32 x 1024 by default, ``vllm/envs.py``):
a longer batch is processed in chunks, so its intermediate caches never exceed this many tokens."""


def forward_activation_bytes(model: ModelArch, deployment: Deployment, tokens: int) -> float:
    """Bytes per GPU of activations alive at once when one forward pass runs ``tokens`` new tokens: the peak of an
    engine's profiling run at its token budget, counted from the tensors a layer holds together (16-bit).

    The residual stream and the normed input of the feed-forward (``2 x hidden`` per token) live through it;
    a dense feed-forward adds the gate-up output and the activation (``3 x intermediate / tp``); vLLM's fused
    MoE adds, per routed copy of a token, its gate-up and activation caches and the experts' outputs before the
    weighted sum (``k x (3 x moe_intermediate / tp + hidden)``: ``intermediate_cache1..3`` of ``fused_experts``),
    for at most :data:`FUSED_MOE_CHUNK_TOKENS` tokens at a time. The larger of the two kinds of layer decides.
    Attention's own tensors (q, k, v, its output) are smaller than the feed-forward's for every catalog model and
    are not counted, nor the caching allocator's rounding. Widths per GPU: a dense feed-forward is split over
    ``tp`` (not under data-parallel attention, where each rank runs its own tokens through the whole layer), an
    expert over ``tp / ep`` (expert parallelism keeps whole experts on a GPU); ``tokens`` are one rank's.

    Checked against vLLM's logs only where the sampler decides the peak (``agentsim.serving.presets``); the one
    long-budget observation, a server that started with a 91,680-token unchunked budget (docs/FIDELITY.md, cause
    22), says this count is at least ~2 GB high there."""
    h = float(model.hidden_size)
    dense_shards = 1 if deployment.data_parallel_attention else deployment.tp
    expert_shards = deployment.expert_shards
    residual = 2.0 * h * tokens
    transient = 0.0
    if not model.is_moe or model.n_moe_layers < model.layers:
        transient = 3.0 * model.intermediate_size / dense_shards * tokens
    if model.is_moe:
        inter = float(model.expert_intermediate_size)
        routed = model.experts_per_token * (3.0 * inter / expert_shards + h) * min(tokens, FUSED_MOE_CHUNK_TOKENS)
        transient = max(transient, routed)
    return 2.0 * (residual + transient)


def _where(deployment: Deployment) -> str:
    return (
        f"{deployment.model} {deployment.precision} on {deployment.gpus}x {deployment.hardware} "
        f"(tp={deployment.tp}, pp={deployment.pp})"
    )


def weight_placement(model: ModelArch, hardware: Hardware, deployment: Deployment) -> WeightPlacement:
    """Split each GPU's weights between HBM and the DDR tier per ``deployment.weights_memory`` (module
    docstring). Raises :class:`DoesNotFitError` when ``ddr`` is asked of hardware without DDR, or when the DDR
    part exceeds the DDR capacity. Whether the HBM part fits is :func:`kv_capacity_tokens`' check."""
    w = weight_bytes_per_gpu(model, deployment, hardware)
    mode = deployment.weights_memory
    if hardware.ddr_tb_s is None:
        if mode == "ddr":
            raise DoesNotFitError(
                f"{_where(deployment)} does not fit: weights_memory is ddr but {deployment.hardware} has no DDR tier"
            )
        return WeightPlacement(w, 0.0)
    if mode == "hbm":
        placement = WeightPlacement(w, 0.0)
    elif mode == "ddr":
        placement = WeightPlacement(0.0, w)
    else:
        reserve = activation_reserve_gb(deployment) * 1e9
        budget = usable_bytes_per_gpu(hardware, deployment) * (1.0 - DDR_KV_FRACTION) - reserve
        hbm = min(w, max(budget, 0.0))
        placement = WeightPlacement(hbm, w - hbm)
    if placement.ddr_bytes > hardware.ddr_bytes:
        raise DoesNotFitError(
            f"{_where(deployment)} does not fit: {placement.ddr_bytes / 1e9:.1f} GB of weights per accelerator "
            f"in DDR > {hardware.ddr_bytes / 1e9:g} GB DDR; use more accelerators or lower precision"
        )
    return placement


SGLANG_SWA_FULL_TOKENS_RATIO: Final = 0.8
"""SGLang's ``--swa-full-tokens-ratio`` default (v0.5: ``server_args.py``, ``swa_full_tokens_ratio=0.8`` in its
logged server arguments): with hybrid sliding-window memory (on unless ``--disable-hybrid-swa-memory``) the KV
memory is split so that the window layers' pool holds 0.8 tokens for each token of the full-attention pool
(``model_runner.py``, ``set_num_token_hybrid``: ``full_max_total_num_tokens = total_tokens / (swa_full_tokens_ratio
x swa_layers_num + full_layers_num)``, ``total_tokens`` the all-layer token capacity times the layers). A token
of the full pool, the capacity agentsim counts, so costs ``full + 0.8 x window`` layers: gpt-oss's 18 + 14.4."""


def kv_bytes_per_token(model: ModelArch, deployment: Deployment) -> int:
    """Logical KV-cache bytes per token for the whole replica (before :func:`kv_replication`): what attention
    reads per token of context and what moves when a sequence's KV is transferred or offloaded.

    GQA: ``2 * layers * kv_heads * head_dim * bytes``; MLA: ``layers * (kv_lora_rank + qk_rope_head_dim) *
    bytes``; ``layers`` the full-attention layers (a sliding-window layer reads its window only). What a token
    takes of the KV pool can differ by engine: :func:`kv_pool_bytes_per_token`.
    """
    return model.full_attention_layers * _kv_bytes_per_layer(model, deployment)


def kv_pool_bytes_per_token(model: ModelArch, deployment: Deployment) -> int:
    """KV-pool bytes one token of capacity (:func:`kv_capacity_tokens`) takes, before :func:`kv_replication`: the
    logical bytes (:func:`kv_bytes_per_token`) for models without sliding-window layers; with them, by engine
    (module docstring): vLLM the full-attention layers (its window blocks are charged per sequence:
    :func:`sliding_window_kv`); TensorRT-LLM every layer, each sized for the whole sequence; SGLang every layer too,
    unless it splits the model's pool (``ModelArch.sglang_hybrid_swa``): then the full-attention layers plus
    :data:`SGLANG_SWA_FULL_TOKENS_RATIO` of the window layers, rounded to a byte."""
    window_layers = model.sliding_window_layers or 0
    per_layer = _kv_bytes_per_layer(model, deployment)
    preset = deployment.engine.preset
    if not window_layers or preset == "vllm":
        return model.full_attention_layers * per_layer
    if preset == "sglang" and model.sglang_hybrid_swa:
        # SGLang's window pool holds swa_full_tokens_ratio tokens for each token of the full pool
        return round((model.full_attention_layers + SGLANG_SWA_FULL_TOKENS_RATIO * window_layers) * per_layer)
    # TensorRT-LLM sizes every layer's cache at max_seq_len unless max_attention_window lists the windows; SGLang
    # v0.5.5 turns hybrid SWA memory off for gpt-oss: one pool, every layer holding the whole context
    return model.layers * per_layer


def _kv_bytes_per_layer(model: ModelArch, deployment: Deployment) -> int:
    """One layer's KV bytes per token: GQA's K and V heads, or MLA's latent and rope key."""
    element = kv_bytes_per_element(deployment)
    if model.attention == "mla":
        assert model.kv_lora_rank is not None and model.qk_rope_head_dim is not None  # checked by ModelArch
        return (model.kv_lora_rank + model.qk_rope_head_dim) * element
    return 2 * model.kv_heads * model.head_dim * element


class WindowKv(NamedTuple):
    """What one running sequence holds in the KV pool for its sliding-window layers (:func:`sliding_window_kv`)."""

    tokens: int
    """Capacity tokens (of :func:`kv_capacity_tokens`) held once the sequence is longer than the window; 0: none."""
    blocks: int
    """The blocks of one sliding-window group those are; a sequence of ``n < blocks * block`` tokens holds
    ``cdiv(n, block)`` blocks, the same share of ``tokens`` per block."""


def sliding_window_kv(model: ModelArch, deployment: Deployment) -> WindowKv:
    """Pool tokens a running sequence holds for ``model``'s sliding-window layers besides its tokens' KV, under
    vLLM's hybrid KV-cache manager (module docstring): ``cdiv(window - 1, block) + 1`` blocks per sliding-window
    group, each block worth ``block * group_size / full_attention_layers`` capacity tokens, rounded up.
    Zero for a model without sliding-window layers and for the ``sglang`` and ``trtllm`` presets (their window
    layers are charged per token of capacity: :func:`kv_pool_bytes_per_token`)."""
    window = model.sliding_window
    sw_layers = model.sliding_window_layers
    block = deployment.engine.block_size_tokens
    if window is None or sw_layers is None or deployment.engine.preset != "vllm" or block is None:
        return WindowKv(0, 0)
    full = model.full_attention_layers
    small, large = min(full, sw_layers), max(full, sw_layers)
    group = large if large < 1.5 * small else small  # layers per KV-cache group (kv_cache_utils.py)
    sw_groups = -(-sw_layers // group)
    blocks = -(-(window - 1) // block) + 1
    tokens = -(-(sw_groups * blocks * block * group) // full)
    return WindowKv(tokens, blocks)


def kv_replication(model: ModelArch, deployment: Deployment) -> float:
    """How many copies of each token's KV the replica stores (>= 1).

    GQA: each TP rank holds ``ceil(kv_heads / tp)`` heads, so ``tp * ceil(kv_heads / tp) / kv_heads`` copies
    (1 whenever ``tp`` divides ``kv_heads``). MLA: the latent is replicated on each of the ``tp`` ranks.
    """
    tp = deployment.tp
    if deployment.data_parallel_attention:
        return 1.0
    if model.attention == "mla":
        return float(tp)
    return tp * math.ceil(model.kv_heads / tp) / model.kv_heads


def usable_bytes_per_gpu(hardware: Hardware, deployment: Deployment) -> float:
    """Bytes per GPU the engine may use: the device memory it sees (``Hardware.device_memory_bytes``: what the
    driver reports, 79.22 GiB on an H100 "80 GB") times ``gpu_memory_utilization`` (vLLM's 0.9 when unset)."""
    utilization = deployment.engine.gpu_memory_utilization
    return hardware.device_memory_bytes * (0.9 if utilization is None else utilization)


def kv_free_bytes_per_gpu(usable: float, device: float, weights: float, deployment: Deployment) -> float:
    """Bytes per GPU for the KV cache under the engine's rule (``agentsim.serving.presets``): ``of-total``
    (vLLM, SGLang; default) ``usable - weights - reserve``; ``of-free`` (TensorRT-LLM) ``fraction * (device -
    weights - reserve)``, ``device`` the memory the engine sees, the reserve :func:`activation_reserve_gb`."""
    engine = deployment.engine
    reserve = activation_reserve_gb(deployment) * 1e9
    if engine.kv_memory == "of-free":
        fraction = 0.9 if engine.gpu_memory_utilization is None else engine.gpu_memory_utilization
        return fraction * (device - weights - reserve)
    return usable - weights - reserve


def kv_cache_bytes_per_gpu(model: ModelArch, hardware: Hardware, deployment: Deployment) -> float:
    """Bytes per GPU the engine's KV rule leaves for the KV cache (:func:`kv_free_bytes_per_gpu` on the device
    memory, with the weights that stay in HBM); at most 0 when nothing is left."""
    weights = weight_placement(model, hardware, deployment).hbm_bytes
    usable = usable_bytes_per_gpu(hardware, deployment)
    return kv_free_bytes_per_gpu(usable, hardware.device_memory_bytes, weights, deployment)


def kv_capacity_tokens(model: ModelArch, hardware: Hardware, deployment: Deployment) -> int:
    """Tokens of KV cache one replica holds.

    ``(usable - weights in HBM - reserve) per GPU * gpus / (kv_pool_bytes_per_token * kv_replication)``, rounded
    down;
    ``deployment.engine.kv_capacity_tokens`` when set. Raises :class:`DoesNotFitError` when the weights and
    the activation reserve leave no room (even when the capacity is overridden).
    """
    gpus = deployment.gpus
    free = kv_cache_bytes_per_gpu(model, hardware, deployment)
    if free <= 0:
        usable = usable_bytes_per_gpu(hardware, deployment)
        placement = weight_placement(model, hardware, deployment)
        weights, reserve, device = placement.hbm_bytes, activation_reserve_gb(deployment), hardware.device_memory_bytes
        per_gpu = " per GPU" if gpus > 1 else ""
        in_hbm = " in HBM" if placement.ddr_bytes > 0 else ""
        raise DoesNotFitError(
            f"{deployment.model} {deployment.precision} on {gpus}x {deployment.hardware} "
            f"(tp={deployment.tp}, pp={deployment.pp}) does not fit: weights{in_hbm} {weights / 1e9:.1f} GB{per_gpu} "
            f"+ activation reserve {reserve:.1f} GB leave no KV cache in usable {usable / 1e9:.1f} GB{per_gpu} "
            f"({device / 1e9:.1f} GB of device memory x {usable / device:.2f}); "
            "use more GPUs (tp or pp) or lower precision"
            + ("" if hardware.ddr_tb_s is None else ", or weights_memory: auto or ddr")
        )
    override = deployment.engine.kv_capacity_tokens
    if override is not None:
        return override
    per_token = kv_pool_bytes_per_token(model, deployment) * kv_replication(model, deployment)
    tokens = math.floor(free * gpus / per_token)
    if tokens < 1:
        raise DoesNotFitError(
            f"{deployment.model} on {gpus}x {deployment.hardware} does not fit: {free / 1e9:.3f} GB per GPU left "
            f"for the KV cache holds no token ({per_token:.0f} bytes per token)"
        )
    return tokens
