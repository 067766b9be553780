"""The roofline step model: a step takes as long as its slowest resource, plus communication and overhead.

One forward pass must both *compute* (multiply-adds in matrix units) and *move memory* (read the weights and
the KV cache). Within one operator the two overlap, so an operator takes about the larger of the two times;
this is the roofline. Operators run one after another, so the step is the *sum* of the rooflines of its three
operator classes: the linear layers (memory-bound at small batch: every decode step reads all the weights to
make one token per sequence; compute-bound in prefill), the MoE experts, and the attention core (reading the KV
cache: memory-bound in decode at any batch). Parallel replicas also exchange activations, which this model adds
on top because it is only partly overlapped in practice, and every step pays a fixed cost (scheduling, kernel
launches). For a step with ``P`` prefill tokens, ``D`` decode sequences and ``C`` context tokens read by
attention (:mod:`agentsim.perf.base`), on ``tp`` GPUs per pipeline stage and ``pp`` stages, the model works on
one micro-batch ``(p, d, c) = (P, D, C) / pp`` with ``t = p + d`` new tokens::

    step_s  = max(F_lin t / R, W_lin s_w)                                  linear layers
            + max(F_moe t imb(t) / R, W_exp cov(imb(t) t) s_w)             routed experts (MoE)
            + max(A / R_att, (c + t) kv_bytes kv_replication / (tp hbm_bw mbu))     attention core
            + comm_s(t) + pp (hop_s(t) + collective_latency_s) [pp > 1]     GPU part: at least K kernel_latency_s
            + overhead_s + D overhead_s_per_seq

    R       = tp * peak_flops(precision) * mfu;   R_att = tp * peak_flops(KV precision) * mfu_att
    F_moe   = 2 * k * one_expert_params * lay;  F_lin = 2 * N_active - 2 * k * one_expert_params
    A       = F_dec d cbar + F_pf (p cbar + p**2 / 2) + F_up cbar [p > 0] + F_sw t,   cbar = c / S
    S       = d + (1 if p > 0 else 0)                                     sequences in the step (0: no pairs)
    F_dec   = F_pf = 2 * L_full * heads * (d_qk + d_v)                   GQA
    F_dec   = 2 * L_full * heads * (2 kv_lora_rank + rope),  F_pf = 2 * L_full * heads * (d_qk + d_v),
    F_up    = 2 * L_full * kv_lora_rank * heads * 2 * head_dim            MLA (absorbed decode, plain prefill)
    F_sw    = 2 * L_sw * heads * (d_qk + d_v) * window                    sliding-window layers, if any
    W_lin   = [bytes(dense) - bytes(attn)] / tp + bytes(attn) / (1 if dp_attention else tp)    per GPU
    W_exp   = bytes(all routed experts) * lay / tp,   cov(x) = 1 - (1 - k/E)**x,   imb: perf.moe (1 without EP)
    lay     = the engine's padded expert matrices over the checkpoint's (perf.memory.expert_layout_factor; 1 but
              for vLLM's MXFP4 MoE kernels)
    s_w     = (f_hbm / hbm_bw + (1 - f_hbm) / ddr_bw) / mbu       seconds per weight byte (memory tiers)
    comm_s  = t * [all-reduce bytes / link + max(a2a in-domain / NVLink, a2a cross-domain / NIC)] / comm_eff
              + collectives * collective_latency_s

``mfu``, ``mfu_att`` and ``mbu`` come from :mod:`agentsim.perf.efficiency` (measured per hardware and
precision, overridden by the scenario's numbers).

How the terms were chosen:

* *Sum of per-class rooflines*: a single ``max(total compute, total memory)`` would let a compute-bound GEMM
  hide a memory-bound attention kernel that in fact runs after it; per-operator rooflines summed over the step
  (as LLM-Viewer, GenZ and aiconfigurator compose operators) do not. Decode steps with long contexts are the
  case where this matters: their GEMMs may be compute-bound while attention streams the KV cache.
* *Linear layers*: ``2 * N_active`` FLOPs per token (a multiply-add per weight), the LM head included for
  every token (an over-count for prefill of ``vocab * hidden`` per prompt token, under 7% of an 8B model's
  FLOPs), at the peak of the weights' precision.
* *Attention*: a query attends to every earlier token of its sequence. The exact pair count needs each
  sequence's context, but a step only gives the sums, so the model estimates it from ``P, D, C`` alone:
  the batch holds ``S`` sequences (the decode ones and, when ``P > 0``, one prefill chunk, as with vLLM's
  chunked prefill), each of the new tokens attends to the mean context ``cbar``, and the chunk's tokens
  also attend to each other (``p**2 / 2``). This is exact for a decode-only step (``d cbar = c``) and for a
  single prefill chunk (``p c + p**2 / 2``) and approximate for mixed steps. ``d_qk = d_v = head_dim`` for
  GQA. Layers with a sliding window (gpt-oss) attend to at most ``window`` tokens: ``window`` pairs per token.
  Attention math runs at the peak of the KV cache's precision (FP8 attention with an FP8 cache; FP4 weights do
  not make attention FP4), and at the attention kernel's share of the matmul rate, which falls with the head
  dimension (:data:`ATTENTION_KERNEL_POINTS`: FlashAttention-3 on H100, 0.60 of the matmul rate at head
  dimension 64, 0.78 at 128; MLA's absorbed decode at FlashMLA's, :data:`FLASHMLA_KERNEL_RATIO`).
* *MLA* (DeepSeek-V3/R1) runs attention two ways. Decode is *absorbed*: the key and value up-projections are
  folded into the query and output, so every head scores its 576-wide query against the shared latent plus
  RoPE key and sums 512-wide latents: ``2 h (576 + 512)`` FLOPs per (query, cached token) pair and layer
  (FlashMLA's FLOP count, deepseek-ai/FlashMLA ``benchmark/bench_flash_mla.py``), 3.4x the plain form's, on a
  KV read 5x smaller than GQA-70B's. Prefill is *not absorbed* (FlashMLA's MHA mode): per-head keys of
  ``d_qk = 192`` and values of 128, after up-projecting the chunk's cached prefix, ``2 kv_lora_rank h 256``
  FLOPs per cached token and layer (the chunk's own tokens are up-projected by the linear layers' count).
* *Memory*: the weights are read once per step; the KV of the ``c`` context tokens is read and that of the
  ``t`` new tokens written. A mixture-of-experts step reads only the experts its tokens are routed to: with
  ``t`` tokens each picking ``k`` of ``E`` experts uniformly, the expected number of distinct experts touched
  per layer is ``E * (1 - (1 - k/E)**t)`` (expert coverage grows with the batch: one decode token reads ``k``
  experts, a large batch all of them). Attention, embeddings, dense layers and shared experts are always read
  (``ModelArch.dense_params_b``).
* *Expert parallelism* spreads whole experts over ``ep`` GPUs and the step waits for the busiest:
  :mod:`agentsim.perf.moe` gives its load over the mean, ``imb(t)`` (a function of the tokens per step and
  ``ep``; ``moe_imbalance`` in the scenario fixes it, ``1.0`` being the balanced model): it computes ``imb``
  times the mean expert FLOPs and reads the experts ``imb * t`` tokens touch.
* *Triton's fused MoE* (vLLM and SGLang, :data:`TRITON_MOE_ENGINES`): the expert-GEMM curve above is DeepGEMM's,
  on whole experts. vLLM and SGLang run the routed experts with Triton's ``fused_moe`` (BF16 always; FP8 too under
  tensor parallelism), and under tensor parallelism each GPU holds a ``tp / ep``-th slice of every expert's
  intermediate width. Its measured throughput at 256 tokens per expert (the catalog's ``fused_moe_bf16`` points,
  :func:`log_interp`; on Hopper 0.331 of the BF16 peak at a 704-wide slice, 0.437 at 7,168) is no faster
  with FP8 weights (SGLang's tuned block-FP8 kernel at a 256-wide slice: 0.345 of the BF16 peak), so the experts'
  compute runs at ``min(1, kernel / default)`` of the default at 256 tokens per expert (``0.73 x peak x mfu``), the
  grouped curve's shape kept around it (``moe_kernel``). Without catalog points, under TensorRT-LLM, or with FP8
  experts under expert parallelism (DeepGEMM's grouped kernels on whole experts: vLLM's default when the slice
  is wider than 512), nothing changes.
* *Memory tiers*: a fraction ``f_hbm`` of each GPU's weights lives in HBM and the rest in the DDR tier
  (:func:`agentsim.perf.memory.weight_placement`); each part is read at its tier's bandwidth, one after the
  other (a layer's weights are in one tier). Without DDR, ``f_hbm = 1``. The KV cache is always in HBM.
* *Data-parallel attention*: each GPU runs the whole attention block for its own ``1/tp`` of the sequences, so
  it reads all the attention weights (not ``1/tp`` of them) but the KV cache is not replicated. The ranks meet
  at every MoE layer, so a step waits for the busiest (TensorRT-LLM's "ADP Balance Strategy" blog,
  ``docs/source/blogs/tech_blog/blog10_ADP_Balance_Strategy.md``: "the iteration time is dominated by the slowest
  rank"; it measured 35% of the throughput lost to it on DeepSeek-V3). Decodes spread evenly; a prompt chunk runs on
  one rank, so the busiest rank holds ``max(largest chunk, P / tp)`` prompt tokens and ``max(largest chunk's pairs,
  pairs / tp)`` attention pairs, and the step adds its attention projections' compute (``2 x attention
  parameters`` FLOPs a token) and attention core beyond the balanced ``1/tp`` share the other terms charge
  (:meth:`RooflinePerfModel._dp_extra`; :meth:`step_time`, one chunk, puts the whole prefill on one rank). The
  engine splits the token budget between the ranks (``serving.replica``).
* *Communication* at ``comm_efficiency`` of the link bandwidth (one direction), plus ``collective_latency_s``
  per collective (:func:`comm_terms`):

  - tensor parallelism (``tp > 1``): a ring all-reduce of ``t * hidden`` 16-bit activations after attention and
    after the MLP of every layer, moving ``2 (tp - 1) / tp`` of the buffer through each GPU's link (the
    scale-up link; the NIC when ``tp`` spans scale-up domains);
  - data-parallel attention with expert parallelism (``ep = tp``): no attention all-reduce; each MoE layer
    *dispatches* every token to its ``k`` experts and *combines* the results (two all-to-alls), each GPU
    sending its ``t / ep`` tokens' ``k`` copies; the copies for GPUs of the same scale-up domain cross NVLink,
    the others the NIC (``scaleout_gb_s_per_gpu``: wide EP over several nodes), concurrently, so the slower
    part sets the time (:func:`agentsim.perf.moe.a2a_split`). Dense layers (DeepSeek's first three) keep the
    all-reduce. With attention under TP, every GPU already holds every token, so expert parallelism needs no
    all-to-all (the MoE output is all-reduced as with TP).
* *Pipeline parallelism with micro-batches*: the engine keeps ``pp`` micro-batches of ``1/pp`` of the running
  batch in flight, one per stage. A micro-batch crosses the ``pp`` stages in ``T_full(N / pp)`` (each stage
  does ``1/pp`` of the layers on its ``tp`` GPUs: the time of all layers on ``tp`` GPUs) plus ``pp`` hops,
  each a send of its activations (``t * hidden`` 16-bit values over the scale-up link, or the NIC when the
  replica spans domains and the catalog gives the NIC) and a collective latency; meanwhile the other stages
  work on the other micro-batches, so every sequence of the batch gets one token per ``T_full(N / pp) + pp
  (p2p + collective_latency_s)``, the duration of one engine step here. ``pp`` thus adds memory *and*
  throughput (up to ``pp`` times, less the hops); small batches gain little, since every micro-batch streams
  all the weights. The split is fluid (``N / pp`` need not be whole): for ``N < pp`` it credits a small KV
  saving that engines, whose micro-batches hold whole sequences, do not get.
* *Precision*: weight bytes per :func:`agentsim.perf.memory.bytes_per_param`; math at the hardware's dense
  peak for the weights' precision; fp4 or fp8 weights on hardware without such units (fp4 on Hopper, both on
  Ampere) are weight-only (dequantized to the bf16 activations in the kernel, which quantizes no input:
  ``Hardware.math_precision``) and compute at the bf16 peak. Block-scaled
  fp8 weights (``fp8_scales: block``, DeepSeek's and Qwen3's checkpoints) run their dense linear layers at no more
  than the measured block-scaled kernels' fractions (:func:`agentsim.perf.efficiency.dense_efficiencies`). The
  layers a checkpoint keeps in BF16 (:func:`agentsim.perf.memory.bf16_params_b`: Meta's FP8 Llama 3.1, NVIDIA's
  FP4 DeepSeek, gpt-oss: attention among them in each) are read at two bytes and multiplied at the BF16 peak, the
  attention projections of data-parallel attention's busiest rank and MLA's prefill up-projection included.
* *Engine overheads*: ``overhead_s`` per step, and ``overhead_s_per_seq`` for each of the step's ``D`` decoding
  sequences (all of them, not one micro-batch's: the engine's CPU handles every running sequence once per
  step). The second is not GPU physics but the serving engine's CPU work per running sequence (scheduling,
  sampling, detokenizing, streaming to the client), which at hundreds of sequences outweighs the GPU's
  marginal cost of a sequence; the engine presets give both (:mod:`agentsim.serving.presets`), and a roofline
  built without them (``overhead_s_per_seq`` unset) has none. Under data-parallel attention the cost stays per
  sequence of the whole step: each rank schedules its own sequences, but the front end that detokenizes and
  streams them is shared, and the fitted SGLang cost (:data:`agentsim.serving.presets.SGLANG_SEQ_OVERHEAD_S`)
  matches its DP-attention rows charged so (dividing it by the 8 ranks took DeepSeek-R1's two DP-attention
  bursts of 219-token prompts on 8 H200 from -5% / -1% to +220% / +235% output tok/s).
* *Kernel floor*: a decode pass launches its ``K`` kernels (:func:`forward_kernels`: per layer the attention
  block's, the dense or routed feed-forward's and the tensor-parallel collectives) one after another, and no
  kernel takes less than ``kernel_latency_s`` (launch, setup and teardown even under CUDA graphs), so the GPU part
  of a step is at least ``K kernel_latency_s``. It binds where the work is small: DeepSeek-R1 at a few sequences
  (1,325 kernels, 13 ms at 10 us, against ~4 ms of weight reads on 8 H200) or a 1B model; a 70B model in FP8 or
  BF16 on one or two Hopper GPUs streams weights for longer than its kernel chain (not on B200, in FP4, or at TP4
  and more), and its steps are unchanged to the bit. The floor is
  a max over the whole pass, not per kernel: the serving shares (``mbu``, ``mfu``) were fitted on steps whose
  small kernels' cost they already carry. The engine presets give ``kernel_latency_s``.
* *Efficiencies* (``mfu``, ``mbu``, ``comm_efficiency``, ``collective_latency_s``, ``overhead_s``) are
  parameters of :class:`agentsim.spec.RooflinePerf`; ``docs/FIDELITY.md`` justifies the defaults and shows how
  ``agentsim calibrate`` fits them to measurements.
"""

from __future__ import annotations

import itertools
import math
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from agentsim import spec
from agentsim.catalog import Hardware, ModelArch
from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays, check_segment_args
from agentsim.perf.efficiency import (
    block_scaled_fp8,
    dense_efficiencies,
    dynamic_fp8_activations,
    efficiencies,
    unfused_fp8_dequant,
)
from agentsim.perf.memory import (
    attention_weight_bytes,
    bf16_params_b,
    dense_bytes_per_param,
    expert_layout_factor,
    expert_weight_bytes,
    kv_bytes_per_element,
    kv_bytes_per_token,
    kv_replication,
    weight_placement,
)
from agentsim.perf.moe import a2a_split, imbalance_curve

__all__ = [
    "ACTIVATION_BYTES",
    "ATTENTION_KERNEL_POINTS",
    "FLASHMLA_KERNEL_RATIO",
    "CommTerms",
    "Fp8Linears",
    "RooflinePerfModel",
    "RooflineTerms",
    "attention_kernel_ratio",
    "comm_terms",
    "elementwise_bytes_per_token",
    "forward_kernels",
    "fp8_linears",
    "grouped_gemm_efficiency",
    "log_interp",
    "unfused_dequant_bytes_per_token",
]

ACTIVATION_BYTES: Final = 2
"""Bytes per activation element exchanged between GPUs (16-bit)."""


class RooflineTerms(NamedTuple):
    """The parts of one step's time, in seconds. ``compute_s`` and ``memory_s`` sum the three operator classes
    (linear layers, MoE experts, attention) of one micro-batch; ``roofline_s`` is the sum over the classes of
    each class's ``max(compute, memory)``; the step takes ``roofline_s + comm_s + overhead_s``, the overhead
    being the fixed one plus the per-sequence one for the step's decoding sequences."""

    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    roofline_s: float
    floor_s: float = 0.0  # what the kernel floor adds when the GPU work is shorter than the kernel chain

    @property
    def total_s(self) -> float:
        """The step time."""
        return self.roofline_s + self.comm_s + self.floor_s + self.overhead_s


class CommTerms(NamedTuple):
    """Bytes one GPU sends per new token of a micro-batch, by collective kind, and the collectives per pass
    through the model (module docstring). ``pp_bytes`` is per token and hop; a step makes ``pp`` hops."""

    allreduce_bytes: float
    a2a_scaleup_bytes: float
    a2a_scaleout_bytes: float
    pp_bytes: float
    collectives: int


def comm_terms(model: ModelArch, deployment: spec.Deployment, scaleup_domain_gpus: int | None = None) -> CommTerms:
    """What each GPU sends per new token (module docstring); ``scaleup_domain_gpus`` splits expert-parallel
    all-to-alls between the scale-up domain and the NIC (None: all inside one domain).

    Raises ValueError when expert parallelism or data-parallel attention is asked of a dense model.
    """
    tp, pp, ep = deployment.tp, deployment.pp, deployment.ep
    if (ep > 1 or deployment.data_parallel_attention) and not model.is_moe:
        raise ValueError(f"ep and data_parallel_attention need a mixture-of-experts model; {deployment.model} is dense")
    if ep > model.experts > 0:
        raise ValueError(f"ep ({ep}) exceeds the {model.experts} experts of {deployment.model}")
    act = model.hidden_size * ACTIVATION_BYTES
    ring = 2.0 * (tp - 1) / tp
    moe_layers = model.n_moe_layers
    dense_layers = model.layers - moe_layers
    allreduce = a2a_in = a2a_out = 0.0
    collectives = 0
    if tp > 1:
        if deployment.data_parallel_attention:
            # dense MLP layers all-reduce; MoE layers dispatch + combine all-to-all over ep GPUs
            allreduce = dense_layers * ring * act
            split = a2a_split(ep, scaleup_domain_gpus if scaleup_domain_gpus is not None else ep)
            per_layer = moe_layers * 2.0 * model.experts_per_token * act / ep
            a2a_in, a2a_out = per_layer * split.scaleup, per_layer * split.scaleout
            collectives = dense_layers + 2 * moe_layers
        else:
            allreduce = 2.0 * model.layers * ring * act
            collectives = 2 * model.layers
    return CommTerms(allreduce, a2a_in, a2a_out, float(act) if pp > 1 else 0.0, collectives)


FUSED_ADD_NORM_ELEMENTS: Final = 8
"""Elements moved per token and layer by the two fused residual-add + RMSNorm kernels (each reads the input and
the residual and writes both: ``4 * hidden``; vLLM's ``fused_add_rms_norm``, TensorRT-LLM's fused add-norm)."""

SWIGLU_ELEMENTS: Final = 3
"""Elements per intermediate unit of the SwiGLU activation: reads gate and up, writes their product."""

MOE_PERMUTE_ELEMENTS: Final = 4
"""Elements per routed token copy and hidden unit: the scatter to the experts' layout and the gather back (a read
and a write each)."""


def elementwise_bytes_per_token(
    model: ModelArch, deployment: spec.Deployment, hardware: Hardware | None = None
) -> float:
    """HBM bytes one GPU moves per new token in the memory-bound kernels between the GEMMs (norms, residual adds,
    the SwiGLU activation, MoE permutes), 16-bit activations. Their time does not shrink with the weights'
    precision, so it is a larger share of an FP4 step than of a BF16 one. The residual stream is on every
    tensor-parallel GPU (each GPU its own tokens under data-parallel attention); the intermediate and the
    experts' copies are split over ``tp``. Layers sum dense FFNs (``intermediate_size``) and MoE layers
    (``k`` copies of ``moe_intermediate_size``); attention's own elementwise work (RoPE) is not counted."""
    tp = deployment.tp
    h = float(model.hidden_size)
    hidden = FUSED_ADD_NORM_ELEMENTS * h / (tp if deployment.data_parallel_attention else 1)
    moe_layers = model.n_moe_layers if model.is_moe else 0
    dense_layers = model.layers - moe_layers
    per_token = model.layers * hidden + dense_layers * SWIGLU_ELEMENTS * model.intermediate_size / tp
    if moe_layers:
        inter = float(model.expert_intermediate_size)
        copies = model.experts_per_token * (SWIGLU_ELEMENTS * inter + MOE_PERMUTE_ELEMENTS * h)
        per_token += moe_layers * copies / tp
    return per_token * ACTIVATION_BYTES + unfused_dequant_bytes_per_token(model, deployment, hardware)


KERNEL_LATENCY_S: Final = 10e-6
"""The least time per kernel of a decode pass (``kernel_latency_s``, the kernel floor's: :func:`forward_kernels`) for
the vLLM and SGLang presets and for a roofline built without a preset: engines that replay CUDA graphs without
programmatic dependent launch still pay each kernel's launch, setup and teardown. Two public figures, each divided
by agentsim's kernel count: Hazy Research's "Look Ma, No Bubbles!" (2025-05-27): SGLang decodes Llama-3.2-1B on one
H100 1.5x slower than a megakernel streaming the 2.47 GB of weights at 78% of 3.35 TB/s, 1.42 ms for 148 kernels,
9.6 us each; and TensorRT-LLM's DeepSeek-R1 latency blog (tech blog 1): its CUDA-graph baseline before PDL and
fusions decoded 67 tokens/s for one user on 8 B200, 14.9 ms for 1,325 kernels, 11.2 us each."""

GQA_ATTENTION_KERNELS: Final = 5
"""Kernels of a GQA attention block in decode: the fused residual-add + RMSNorm, the QKV GEMM, RoPE with the KV
cache write, attention, the output GEMM (vLLM's ``LlamaAttention``, SGLang's alike)."""

MLA_ATTENTION_KERNELS: Final = 9
"""Kernels of an MLA attention block (TensorRT-LLM's DeepSeek-R1 decode layer, modules 1-8 of its B200 latency blog:
the fused-A GEMM, the q/kv RMSNorms, the q up-projection GEMM, the absorbed key batched GEMM, RoPE with the KV
write, attention, the value batched GEMM, the output GEMM) plus the residual-add + RMSNorm."""

DENSE_FFN_KERNELS: Final = 4
"""A dense feed-forward block: residual-add + RMSNorm, gate-up GEMM, SiLU-and-multiply, down GEMM."""

MOE_FFN_KERNELS: Final = 8
"""A routed-expert block: residual-add + RMSNorm, router GEMM, top-k, the permute to the experts' layout, the two
grouped GEMMs with the activation between them, the un-permute and weighted reduce; a shared expert adds a dense
feed-forward's three (:data:`SHARED_EXPERT_KERNELS`)."""

SHARED_EXPERT_KERNELS: Final = 3

GQA_ATTENTION_LINEARS: Final = 2
"""Linear layers of a GQA attention block (the QKV and output projections); MLA's are
:data:`MLA_ATTENTION_LINEARS`."""

MLA_ATTENTION_LINEARS: Final = 3
"""Linear layers of an MLA attention block in its checkpoint's precision: the fused q/kv down-projection, the q
up-projection and the output projection (the absorbed key and value products are batched GEMMs of their own).

Under block-scaled FP8 (DeepSeek's and Qwen3's FP8 releases) each FP8 linear layer launches an activation
quantization per 1 x 128 group before its GEMM: vLLM's and SGLang's ``apply_w8a8_block_fp8_linear``
(``per_token_group_quant_fp8``, then ``w8a8_block_fp8_matmul``, CUTLASS's or DeepGEMM's), TensorRT-LLM's
``fp8_quantize_1x128`` before ``fp8_block_scaling_gemm``; the routed experts' two grouped GEMMs quantize theirs
too (``fused_moe``). :func:`forward_kernels` counts one kernel more for each: a dense GQA layer 4, a DeepSeek MoE
layer 3 + 2 + 2 (attention, routed, shared). Channel-scaled FP8 (Meta's FBGEMM checkpoints: per-token activation
scales computed at run time, ``scaled_fp8_quant``) quantizes each FP8 layer's input too; a per-tensor checkpoint's
static scale is fused into the norm or the GEMM."""

UNFUSED_DEQUANT_KERNELS: Final = 3
"""Kernels an FP8 linear layer with per-channel weight scales launches beyond its GEMM where the engine cannot fuse
the scales into it (``engine.fp8_dequant: unfused``): vLLM's ``apply_fp8_linear`` before ROCm's rowwise-scaled
``torch._scaled_mm`` ("Fallback for channelwise case, where we use unfused DQ", ``w8a8_utils.py``) runs the GEMM
with identity scales to an FP32 output, then ``output * x_scale * weight_scale.t()`` (two multiplies) and
``.to(dtype)`` (a cast), after the per-token input quantization that every channel-scaled layer runs."""

UNFUSED_DEQUANT_BYTES: Final = 24
"""HBM bytes per output element an unfused dequantization adds to an FP8 linear layer: the GEMM writes FP32 (4
bytes where a fused one writes 2: +2), each multiply reads and writes FP32 (+8 each), the cast reads FP32 and
writes 16 bits (+6)."""

OUTSIDE_LAYER_KERNELS: Final = 4
"""Per forward pass outside the layers: embedding, final norm, LM head, sampling."""


class Fp8Linears(NamedTuple):
    """The FP8 linear layers of one forward pass (:func:`fp8_linears`)."""

    dense: int  # computed by a dense GEMM: attention projections, dense and shared-expert feed-forwards
    routed: int  # the routed experts' grouped GEMMs, two per MoE layer
    dense_outputs: float  # output elements per token of the replica, on one GPU, of the dense ones


def fp8_linears(model: ModelArch, deployment: spec.Deployment) -> Fp8Linears:
    """The FP8 linear layers of one forward pass; none unless the weights are FP8. An ``fp8_checkpoint: ffn-only``
    model holds only the feed-forward of every layer but the first and the last in FP8. Output elements per GPU:
    column-parallel outputs (QKV, gate-up) are split over ``tp``; row-parallel ones (attention output, down) are
    the whole hidden state on every GPU before the all-reduce; under data-parallel attention each GPU computes its
    own tokens' whole attention projections, a ``1/tp`` share per token of the replica. An MLA block's two input
    projections are taken at the hidden size each (an approximation: no catalog MLA checkpoint is channel-scaled;
    only unfused dequantization reads the outputs)."""
    if deployment.precision != "fp8":
        return Fp8Linears(0, 0, 0.0)
    tp = deployment.tp
    h = float(model.hidden_size)
    ffn = 2.0 * model.intermediate_size / tp + h
    if model.fp8_checkpoint == "ffn-only":
        return Fp8Linears(2 * (model.layers - 2), 0, (model.layers - 2) * ffn)
    mla = model.attention == "mla"
    moe_layers = model.n_moe_layers
    dense_layers = model.layers - moe_layers
    shared = min(model.shared_experts, 1)
    qkv = (MLA_ATTENTION_LINEARS - 1) * h if mla else float((model.heads + 2 * model.kv_heads) * model.head_dim)
    attention = (qkv + h) / tp if deployment.data_parallel_attention else qkv / tp + h
    outputs = dense_layers * (attention + ffn) + moe_layers * attention
    if shared:
        inter = float(model.expert_intermediate_size)
        outputs += moe_layers * (2.0 * inter / tp + h)
    linears = MLA_ATTENTION_LINEARS if mla else GQA_ATTENTION_LINEARS
    return Fp8Linears(dense_layers * (linears + 2) + moe_layers * (linears + 2 * shared), 2 * moe_layers, outputs)


def unfused_dequant_bytes_per_token(
    model: ModelArch, deployment: spec.Deployment, hardware: Hardware | None = None
) -> float:
    """HBM bytes one GPU adds per token under unfused FP8 dequantization: :data:`UNFUSED_DEQUANT_BYTES` per output
    element of each dense-GEMM FP8 linear layer (:func:`fp8_linears`); 0 otherwise (on ``hardware`` too, where the
    kernels are weight-only: :func:`agentsim.perf.efficiency.unfused_fp8_dequant`)."""
    if not unfused_fp8_dequant(model, deployment, hardware):
        return 0.0
    return fp8_linears(model, deployment).dense_outputs * UNFUSED_DEQUANT_BYTES


def forward_kernels(model: ModelArch, deployment: spec.Deployment, hardware: Hardware | None = None) -> int:
    """Kernels one decode forward pass launches one after another: per layer its attention block, its dense or
    routed feed-forward block and, under tensor parallelism, the two all-reduces (or the MoE all-to-alls), plus
    :data:`OUTSIDE_LAYER_KERNELS`; where FP8 activations are scaled at run time (block or channel scales) an input
    quantization before each FP8 linear layer (:func:`fp8_linears`, :data:`MLA_ATTENTION_LINEARS`), and under
    unfused dequantization :data:`UNFUSED_DEQUANT_KERNELS` after each dense-GEMM one; neither on ``hardware``
    whose kernels are weight-only (:func:`agentsim.perf.efficiency.dynamic_fp8_activations`: no units of the
    weights' precision, 16-bit activations). The counts follow the engines' unfused decode paths
    (constants above); the roofline's step cannot be shorter than these kernels at ``kernel_latency_s`` each."""
    mla = model.attention == "mla"
    attention = MLA_ATTENTION_KERNELS if mla else GQA_ATTENTION_KERNELS
    moe_layers = model.n_moe_layers
    dense_layers = model.layers - moe_layers
    collectives = 2 if deployment.tp > 1 else 0
    shared = min(model.shared_experts, 1)
    moe = MOE_FFN_KERNELS + SHARED_EXPERT_KERNELS * shared
    per_layer_dense = attention + DENSE_FFN_KERNELS + collectives
    per_layer_moe = attention + moe + collectives
    # FP8 linear layers whose activation scales are computed at run time (block or channel scales) quantize their
    # input in a kernel of their own; an unfused dequantization adds three more after each dense GEMM
    fp8 = fp8_linears(model, deployment)
    quant = fp8.dense + fp8.routed if dynamic_fp8_activations(model, deployment, hardware) else 0
    dequant = UNFUSED_DEQUANT_KERNELS * fp8.dense if unfused_fp8_dequant(model, deployment, hardware) else 0
    return dense_layers * per_layer_dense + moe_layers * per_layer_moe + OUTSIDE_LAYER_KERNELS + quant + dequant


GROUPED_GEMM_POINTS: tuple[tuple[float, float], ...] = ((256.0, 0.73), (512.0, 0.82), (1024.0, 0.90), (4096.0, 1.0))
"""Grouped-GEMM throughput of MoE experts at ``m`` token copies per expert, over its throughput at large ``m``:
DeepGEMM's FP8 grouped GEMMs on H800 (deepseek-ai/DeepGEMM README, masked layout: 4 groups x 256 rows 815-932
TFLOPS, 2 x 512 916-1040, 1 x 1024 925-1233; contiguous layout, 4096-8192 rows per group, 1093-1297), each
point's mean over the large-``m`` mean (1194): 0.73, 0.82, 0.90, 1. At 256 rows the kernel streams the weights at
2.05 TB/s (0.61 of peak), so below 256 the decode-sized groups are taken at the 256-row efficiency."""


H100_MAMF_BF16_TFLOPS: Final = 794.5
"""H100 SXM's best-shape BF16 matmul (MAMF, the catalog's ``gemm_bf16`` source): the kernels' ratios below are to it."""

ATTENTION_KERNEL_POINTS: tuple[tuple[float, float], ...] = (
    (64.0, 473.0 / H100_MAMF_BF16_TFLOPS),
    (128.0, 616.0 / H100_MAMF_BF16_TFLOPS),
    (256.0, 642.0 / H100_MAMF_BF16_TFLOPS),
)
"""Attention-core throughput by query/key head dimension, over the matmul throughput of the same GPU: the
FlashAttention-3 paper's causal forward pass on H100 SXM5 in BF16 at 16k tokens (Shah et al. 2024,
arXiv:2407.08608, Figure 5: 473, 616 and 642 TFLOPS at head dimensions 64, 128 and 256; 616 cross-checked by
pytorch/benchmark@ff65cb6, 620.7 TFLOPS at 16k, head dim 128) over H100's best-shape BF16 matmul (MAMF 794.5
TFLOPS, the catalog's ``gemm_bf16`` 0.80): 0.595, 0.775, 0.808. A small head dimension does less work per byte of
K and V brought on chip, and softmax takes a larger share. The ratio is assumed to carry to other hardware and
precisions (no per-hardware attention figure); flat outside the measured range."""

FLASHMLA_KERNEL_RATIO: Final = 660.0 / H100_MAMF_BF16_TFLOPS
"""MLA's absorbed decode attention (576-wide queries against the shared latent) over the same matmul throughput:
FlashMLA's dense decoding kernel, 660 TFLOPS compute-bound on H800 SXM5 (BF16 peak 989.4; deepseek-ai/FlashMLA
README), 0.667 of the peak, over 0.803: 0.831."""


def log_interp(points: tuple[tuple[float, float], ...], x: float) -> float:
    """Measured ``(x, value)`` points (``x`` increasing) interpolated linearly in ``log2 x``, flat outside the
    measured range: the kernel-efficiency curves of this module and the catalog's."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * math.log2(x / x0) / math.log2(x1 / x0)
    return points[-1][1]


def attention_kernel_ratio(head_dim: float) -> float:
    """:data:`ATTENTION_KERNEL_POINTS` at ``head_dim`` (:func:`log_interp`)."""
    return log_interp(ATTENTION_KERNEL_POINTS, head_dim)


TRITON_MOE_ENGINES: Final = ("vllm", "sglang")
"""Engine presets whose routed experts run Triton's ``fused_moe`` on the modelled deployments (vLLM's
``fused_moe.py`` and SGLang's ``fused_moe_triton``: BF16 always, FP8 under tensor parallelism, where DeepGEMM's
grouped kernels need expert parallelism with DeepEP); TensorRT-LLM runs its own CUTLASS kernels."""


def grouped_gemm_efficiency(m: float) -> float:
    """:data:`GROUPED_GEMM_POINTS` at ``m`` token copies per expert (:func:`log_interp`)."""
    return log_interp(GROUPED_GEMM_POINTS, m)


def grouped_gemm_efficiency_array(m: FloatArray) -> FloatArray:
    """:func:`grouped_gemm_efficiency` elementwise."""
    xs = np.log2([p[0] for p in GROUPED_GEMM_POINTS])
    ys = np.array([p[1] for p in GROUPED_GEMM_POINTS])
    out: FloatArray = np.interp(np.log2(np.maximum(m, 1e-12)), xs, ys)
    return out


class RooflinePerfModel(PerfModel):
    """Step time from the catalog's hardware and model and the deployment (tp, pp, ep, precision, tiers)."""

    def __init__(
        self,
        hardware: Hardware,
        model: ModelArch,
        deployment: spec.Deployment,
        spec_: spec.RooflinePerf | None = None,
        physical: bool = False,
    ) -> None:
        """``physical``: peak kernels (no attention-kernel or Triton fused-MoE shares): a floor no measured step can
        go below (perf.curve)."""
        self.hardware = hardware
        self.model = model
        self.deployment = deployment
        self.spec = spec_ if spec_ is not None else spec.RooflinePerf.model_validate({})  # all defaults
        tp, pp = deployment.tp, deployment.pp
        wdense = dense_bytes_per_param(model, deployment.precision)

        # Everything below is a constant of the deployment; the per-step paths only combine them.
        kv_precision: spec.Precision = "bf16" if kv_bytes_per_element(deployment) == 2 else "fp8"
        eff = efficiencies(hardware, deployment.precision, kv_precision, self.spec)
        self.efficiencies = eff
        # Block-scaled FP8 checkpoints' dense layers run at their kernels' lower fractions (perf.efficiency).
        block = block_scaled_fp8(model, deployment)
        dense_eff = dense_efficiencies(hardware, deployment.precision, block, eff, self.spec)
        self.dense_efficiencies = dense_eff
        flops = tp * hardware.dense_tflops(deployment.precision) * 1e12 * eff.mfu
        flops_dense = tp * hardware.dense_tflops(deployment.precision) * 1e12 * dense_eff.mfu
        flops_att = tp * hardware.dense_tflops(kv_precision) * 1e12 * eff.mfu_attention
        moe_flops = 2.0 * model.experts_per_token * model.expert_params_b * 1e9
        self.lin_s_per_token = (2.0 * model.active_params_b * 1e9 - moe_flops) / flops_dense
        # BF16 weights no token multiplies are no FLOPs: the non-expert weights the card's active count leaves out
        # (gpt-oss's and DeepSeek's input embedding, a lookup, BF16 in every such checkpoint) multiply nothing.
        bf16 = max(0.0, bf16_params_b(model, deployment.precision) - model.unmultiplied_params_b)
        flops_attention = flops_dense  # the attention projections' rate
        # A checkpoint's BF16 layers (Meta's Llama 3.1 FP8, NVIDIA's DeepSeek FP4, gpt-oss: attention, embeddings)
        # multiply in BF16. Where the weights' own math is BF16 (FP4 without FP4 units) every layer already runs at
        # that rate: nothing to split.
        if bf16 > 0.0 and hardware.math_precision(deployment.precision) != "bf16":
            eff_bf16 = efficiencies(hardware, "bf16", kv_precision, self.spec)
            flops_bf16 = tp * hardware.dense_tflops("bf16") * 1e12 * eff_bf16.mfu
            quantized_part = (2.0 * (model.active_params_b - bf16) * 1e9 - moe_flops) / flops_dense
            self.lin_s_per_token = quantized_part + 2.0 * bf16 * 1e9 / flops_bf16
            flops_attention = flops_bf16
        # the engine's padded expert matrices are multiplied and streamed whole (perf.memory)
        self.moe_s_per_token = moe_flops * expert_layout_factor(model, deployment, hardware) / flops
        # vLLM's and SGLang's routed experts run Triton's fused_moe, measured slower than the grouped GEMMs the
        # default assumes, the more the thinner each GPU's slice of an expert (module docstring)
        self.moe_kernel = 1.0
        points = hardware.efficiency.fused_moe_bf16 if hardware.efficiency is not None else None
        triton = deployment.precision != "fp8" or deployment.ep == 1  # FP8 under EP: DeepGEMM (module docstring)
        if model.is_moe and points and triton and deployment.engine.preset in TRITON_MOE_ENGINES and not physical:
            inter = float(model.expert_intermediate_size)
            width = inter / deployment.expert_shards  # tensor parallelism slices every expert tp / ep ways
            kernel = log_interp(points, width) * hardware.dense_tflops("bf16")
            default = GROUPED_GEMM_POINTS[0][1] * hardware.dense_tflops(deployment.precision) * eff.mfu
            self.moe_kernel = min(1.0, kernel / default)
            self.moe_s_per_token /= self.moe_kernel
        # Data-parallel attention: each of the tp ranks runs the attention block (its projections and the attention
        # core) for its own sequences, and the MoE layers wait for the busiest rank (module docstring).
        self.dp_ranks = float(deployment.attention_ranks)
        self.att_lin_s_per_token = 2.0 * model.attention_params_b * 1e9 / flops_attention
        layers = model.full_attention_layers
        pair = 2.0 * model.heads * (model.qk_head_dim + model.head_dim)
        # Attention kernels reach less of the peak than GEMMs, the less the smaller the head (FlashAttention-3)
        flops_fa = flops_att * (1.0 if physical else attention_kernel_ratio(model.qk_head_dim))
        self.pair_prefill_s = layers * pair / flops_fa
        self.pair_decode_s = self.pair_prefill_s
        self.kv_up_s = 0.0
        if model.attention == "mla" and model.kv_lora_rank is not None and model.qk_rope_head_dim is not None:
            latent = float(model.kv_lora_rank)
            flops_mla = flops_att * (1.0 if physical else FLASHMLA_KERNEL_RATIO)
            self.pair_decode_s = layers * 2.0 * model.heads * (2.0 * latent + model.qk_rope_head_dim) / flops_mla
            self.kv_up_s = layers * 2.0 * latent * model.heads * 2.0 * model.head_dim / flops_attention
        self.window_s_per_token = (model.sliding_window_layers or 0) * pair * (model.sliding_window or 0) / flops_fa

        # Seconds per weight byte on one GPU: the HBM part at HBM bandwidth, the DDR part at DDR bandwidth.
        f_hbm = weight_placement(model, hardware, deployment).hbm_fraction
        s_per_raw_byte = f_hbm / hardware.hbm_bytes_per_s
        if f_hbm < 1.0:
            s_per_raw_byte += (1.0 - f_hbm) / hardware.ddr_bytes_per_s
        s_per_byte = s_per_raw_byte / eff.mbu
        attention = attention_weight_bytes(model, deployment) if deployment.data_parallel_attention else 0.0
        dense_per_gpu = (model.dense_params_b * 1e9 * wdense - attention) / tp + attention
        self.dense_weight_s = dense_per_gpu * (s_per_raw_byte / dense_eff.mbu)
        self.all_experts_s = expert_weight_bytes(model, deployment, hardware) / tp * s_per_byte
        self.copies_per_expert = model.experts_per_token / model.experts if model.is_moe else 0.0
        self.elementwise_s_per_token = elementwise_bytes_per_token(model, deployment, hardware) / (
            hardware.hbm_bytes_per_s * eff.mbu
        )
        self.is_moe = model.is_moe
        self.expert_miss = 1.0 - model.experts_per_token / model.experts if model.is_moe else 1.0
        ep = deployment.ep if model.is_moe else 1
        curve = imbalance_curve(model.experts, model.experts_per_token, ep, self.spec.moe_imbalance)
        self.imb_skew, self.imb_noise, self.imb_cap = curve.skew, curve.noise, curve.cap
        kv_per_token = kv_bytes_per_token(model, deployment) * kv_replication(model, deployment)
        self.kv_s_per_token = kv_per_token / (tp * hardware.hbm_bytes_per_s * eff.mbu)

        domain = hardware.scaleup_domain_gpus
        terms = comm_terms(model, deployment, domain)
        nic = hardware.scaleout_bytes_per_s
        if (terms.a2a_scaleout_bytes > 0.0 or tp > domain) and nic <= 0.0:
            raise ValueError(
                f"{deployment.model} on {deployment.gpus}x {deployment.hardware} spans scale-up domains of {domain} "
                f"GPUs but the catalog gives no scale-out bandwidth (scaleout_gb_s_per_gpu) for {deployment.hardware}"
            )
        up = hardware.scaleup_bytes_per_s * self.spec.comm_efficiency
        out = nic * self.spec.comm_efficiency
        ring_bw = up if tp <= domain else out
        hop_bw = up if deployment.gpus <= domain or nic <= 0.0 else out  # no NIC figure: the scale-up link
        a2a = terms.a2a_scaleup_bytes / up
        if terms.a2a_scaleout_bytes > 0.0:
            a2a = max(a2a, terms.a2a_scaleout_bytes / out)
        self.comm_s_per_token = terms.allreduce_bytes / ring_bw + a2a + pp * terms.pp_bytes / hop_bw
        self.comm_fixed_s = (terms.collectives + (pp if pp > 1 else 0)) * self.spec.collective_latency_s
        # Unset: the vLLM preset's step overhead (agentsim.resolve fills in the pool's engine preset's).
        self.overhead_s = self.spec.overhead_s if self.spec.overhead_s is not None else 0.002
        self._fixed_s = self.comm_fixed_s + self.overhead_s
        # Unset: none (a preset's is filled in by agentsim.resolve); charged per decoding sequence of the whole step.
        self.seq_overhead_s = self.spec.overhead_s_per_seq if self.spec.overhead_s_per_seq is not None else 0.0
        self._token_s = self.comm_s_per_token + self.elementwise_s_per_token
        self.inv_pp = 1.0 / pp
        # The kernel chain's floor on a pass's GPU time (forward_kernels; module docstring).
        latency = KERNEL_LATENCY_S if self.spec.kernel_latency_s is None else self.spec.kernel_latency_s
        self.kernel_floor_s = 0.0 if hardware.dataflow else forward_kernels(model, deployment, hardware) * latency

    def _imbalance(self, t: float) -> float:
        """Busiest expert-parallel GPU's load over the mean for ``t`` tokens (1 without EP)."""
        if self.imb_noise == 0.0 or t <= 0.0:
            return self.imb_skew
        return min(self.imb_cap, max(1.0, self.imb_skew + self.imb_noise / math.sqrt(t)))

    def _weights_s(self, t: float, busiest_s: float = 0.0) -> float:
        """Linear layers and experts of a micro-batch with ``t`` new tokens: each class bound by its own
        resource; ``busiest_s`` the attention-DP busiest rank's extra projection compute (:meth:`_dp_extra`)."""
        out = max(self.lin_s_per_token * t + busiest_s, self.dense_weight_s)
        if self.is_moe:
            ti = self._imbalance(t) * t
            experts = max(self.moe_s_per_token * ti, self.all_experts_s * (1.0 - self.expert_miss**ti))
            out += experts / grouped_gemm_efficiency(ti * self.copies_per_expert)
        return out

    def _dp_extra(self, p: float, pairs: float, largest: float, largest_pairs: float) -> tuple[float, float]:
        """Seconds the busiest data-parallel attention rank adds to a step with ``p`` prompt tokens and ``pairs``
        query-key pairs over the balanced split the other terms assume: its attention projections' compute and
        its attention core's. A chunk runs on one rank, so the busiest holds ``max(largest chunk, p / ranks)``
        tokens and ``max(largest chunk's pairs, pairs / ranks)`` pairs (module docstring); ``(0, 0)`` without
        data-parallel attention or prompt tokens."""
        r = self.dp_ranks
        if r == 1.0 or p <= 0.0:
            return 0.0, 0.0
        tokens = max(largest, p / r)
        busy_pairs = max(largest_pairs, pairs / r)
        return self.att_lin_s_per_token * (r * tokens - p), self.pair_prefill_s * (r * busy_pairs - pairs)

    # -- scalar hot path ---------------------------------------------------------------------------------

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        return self.spread_step_time(prefill_tokens, decode_seqs, context_tokens, prefill_tokens)

    def spread_step_time(
        self, prefill_tokens: float, decode_seqs: float, context_tokens: float, largest_chunk: float
    ) -> float:
        """:meth:`step_time` with its prompt tokens in pieces of at most ``largest_chunk`` (``step_time``: one
        chunk); only data-parallel attention's busiest rank depends on it (:meth:`_dp_extra`)."""
        k = self.inv_pp
        p, d, c = prefill_tokens * k, decode_seqs * k, context_tokens * k
        t = p + d
        seqs = d + 1.0 if p > 0.0 else d
        cbar = c / seqs if seqs > 0.0 else 0.0
        chunk_pairs = p * cbar + 0.5 * p * p
        compute = self.pair_decode_s * d * cbar + self.pair_prefill_s * chunk_pairs
        busy_lin = 0.0
        if p > 0.0:
            compute = compute + self.kv_up_s * cbar
            if self.dp_ranks > 1.0:  # the largest piece on one rank (step_time: one chunk, module docstring)
                big = largest_chunk * k
                busy_lin, busy_att = self._dp_extra(p, chunk_pairs, big, big * cbar + 0.5 * big * big)
                if big >= p:  # one chunk: its rank up-projects its cached prefix alone (MLA)
                    busy_att = busy_att + self.kv_up_s * cbar * (self.dp_ranks - 1.0)
                compute = compute + busy_att
        att = max(compute + self.window_s_per_token * t, (c + t) * self.kv_s_per_token)
        return self._floored(self._weights_s(t, busy_lin) + att + self._token_s * t, decode_seqs)

    def _floored(self, work: float, decode_seqs: float) -> float:
        """A step of GPU ``work`` (weights, attention, per-token traffic): plus the fixed communication and
        overheads, raised to the kernel floor where the work is shorter than the kernel chain."""
        out = work + self._fixed_s + self.seq_overhead_s * decode_seqs
        gpu = work + self.comm_fixed_s
        if gpu < self.kernel_floor_s:
            out += self.kernel_floor_s - gpu
        return out

    def prefill_step_time(
        self,
        prefill_tokens: float,
        decode_seqs: float,
        context_tokens: float,
        prefill_context: float,
        prefill_pairs: float,
        largest_chunk: float = -1.0,
        largest_pairs: float = -1.0,
        largest_context: float = -1.0,
    ) -> float:
        """:meth:`step_time` with the attention pairs of each prefill chunk counted exactly (several prompts in
        one step attend within their own sequences: ``sum p_i (c_i + p_i / 2)``, not ``P (cbar + P / 2)``), the
        decodes' pairs from their own context, and under data-parallel attention the busiest rank from the
        largest chunk (:meth:`_dp_extra`) and, for MLA, the largest cached prefix it up-projects (negative: one
        chunk)."""
        k = self.inv_pp
        p, d, c = prefill_tokens * k, decode_seqs * k, context_tokens * k
        t = p + d
        cp = prefill_context * k
        pairs = prefill_pairs * k
        compute = self.pair_decode_s * (c - cp) + self.pair_prefill_s * pairs + self.kv_up_s * cp
        busy_lin = 0.0
        if self.dp_ranks > 1.0 and p > 0.0:
            big = (largest_chunk if largest_chunk >= 0.0 else prefill_tokens) * k
            big_pairs = (largest_pairs if largest_pairs >= 0.0 else prefill_pairs) * k
            busy_lin, busy_att = self._dp_extra(p, pairs, big, big_pairs)
            if self.kv_up_s > 0.0:  # MLA: the busiest rank up-projects its chunk's cached prefix alone
                big_ctx = (largest_context if largest_context >= 0.0 else prefill_context) * k
                r = self.dp_ranks
                busy_att = busy_att + self.kv_up_s * (r * max(big_ctx, cp / r) - cp)
            compute = compute + busy_att
        att = max(compute + self.window_s_per_token * t, (c + t) * self.kv_s_per_token)
        return self._floored(self._weights_s(t, busy_lin) + att + self._token_s * t, decode_seqs)

    def _segment_axes(self, decode_seqs: int, context0: float) -> tuple[float, float]:
        """A decode segment's micro-batch: sequences and starting context (each step adds ``d`` tokens)."""
        return decode_seqs * self.inv_pp, context0 * self.inv_pp

    def decode_segment(self, decode_seqs: int, context0: float, steps: int) -> FloatArray:
        """Decode-only steps in a few array operations: with ``P = 0`` the batch context ``C`` is the only
        thing that changes from step to step, and both attention bounds are affine in it."""
        check_segment_args(decode_seqs, context0, steps)
        d, c0 = self._segment_axes(decode_seqs, context0)
        c = c0 + d * np.arange(steps, dtype=np.float64)
        pairs = c if d > 0.0 else np.zeros(steps)
        att = np.maximum(self.pair_decode_s * pairs + self.window_s_per_token * d, (c + d) * self.kv_s_per_token)
        work = self._weights_s(d) + self._token_s * d  # the step's GPU work but attention, the same every step
        per_step = work + self._fixed_s + self.seq_overhead_s * decode_seqs
        times = att + per_step
        g0 = work + self.comm_fixed_s
        if steps and self.kernel_floor_s > float(att[0]) + g0:  # the first step is the shortest
            times = times + np.maximum(self.kernel_floor_s - (att + g0), 0.0)
        out: FloatArray = np.cumsum(times)
        return out

    closed_form_total = True

    def decode_total(self, decode_seqs: int, context0: float, steps: int) -> float:
        """Closed form of the segment's duration: the weight terms are constant over the segment and both
        attention bounds are affine in the step index ``j``, so ``sum max(compute, memory) = sum memory + sum
        over the j where compute wins of (compute - memory)``, two arithmetic series split at the crossover."""
        check_segment_args(decode_seqs, context0, steps)
        if decode_seqs == 0 or steps == 0:
            return float(self.decode_segment(decode_seqs, context0, steps)[-1]) if steps else 0.0
        d, c0 = self._segment_axes(decode_seqs, context0)
        total = self._attention_sum(d, c0, steps)
        work = self._weights_s(d) + self._token_s * d  # the step's GPU work but attention, the same every step
        total = total + float(steps) * (work + self._fixed_s + self.seq_overhead_s * decode_seqs)
        g0 = work + self.comm_fixed_s
        floor = self.kernel_floor_s
        if floor > g0 and floor > self._attention_at(d, c0, 0) + g0:
            # The floor lifts the first steps, up to the first whose GPU time reaches it (a nondecreasing
            # sequence: both attention bounds grow with the context).
            k = self._first_reaching(d, c0, steps, floor - g0)
            total += k * floor - (k * g0 + self._attention_sum(d, c0, k))
        return total

    def _attention_at(self, d: float, c0: float, j: int) -> float:
        """Attention-core seconds of decode step ``j`` of a segment (micro-batch units)."""
        c = c0 + d * j
        return max(self.pair_decode_s * c + self.window_s_per_token * d, (c + d) * self.kv_s_per_token)

    def _attention_sum(self, d: float, c0: float, steps: int) -> float:
        """Sum of the attention-core seconds of a segment's first ``steps`` decode steps: both bounds are affine in
        the step index ``j``, so ``sum max(compute, memory) = sum memory + sum over the j where compute wins of
        (compute - memory)``, two arithmetic series split at the crossover."""
        if steps <= 0:
            return 0.0
        a1 = self.window_s_per_token * d
        b1 = self.pair_decode_s
        a2 = d * self.kv_s_per_token
        b2 = self.kv_s_per_token
        n = float(steps)
        # memory at step j: a2 + b2 (c0 + d j)
        total = n * (a2 + b2 * c0) + b2 * d * n * (n - 1.0) * 0.5
        i0 = (a1 - a2) + (b1 - b2) * c0  # compute - memory at j = 0
        slope = (b1 - b2) * d
        if slope == 0.0:
            lo, hi = (0, steps) if i0 > 0.0 else (0, 0)
        elif slope > 0.0:
            lo, hi = max(0, min(steps, math.floor(-i0 / slope) + 1)), steps
        else:
            lo, hi = 0, max(0, min(steps, math.ceil(-i0 / slope)))
        if hi > lo:
            m = float(hi - lo)
            total += m * i0 + slope * (lo + hi - 1.0) * m * 0.5
        return total

    def _first_reaching(self, d: float, c0: float, steps: int, level: float) -> int:
        """The first decode step of a segment whose attention-core time reaches ``level`` (``steps`` if none): from
        each affine bound's crossing, then checked step by step against :meth:`_attention_at` so that rounding
        cannot move it."""
        best = steps
        bounds = (
            (self.window_s_per_token * d + self.pair_decode_s * c0, self.pair_decode_s * d),
            ((c0 + d) * self.kv_s_per_token, self.kv_s_per_token * d),
        )
        for a, b in bounds:
            if a >= level:
                best = 0
            elif b > 0.0:
                best = min(best, math.ceil((level - a) / b))
        k = max(0, min(best, steps))
        while k > 0 and self._attention_at(d, c0, k - 1) >= level:
            k -= 1
        while k < steps and self._attention_at(d, c0, k) < level:
            k += 1
        return k

    # -- vectorized ------------------------------------------------------------------------------------

    def _imbalance_array(self, t: FloatArray) -> FloatArray:
        if self.imb_noise == 0.0:
            return np.full_like(t, self.imb_skew)
        safe = np.where(t > 0.0, t, 1.0)
        imb = np.minimum(self.imb_cap, np.maximum(1.0, self.imb_skew + self.imb_noise / np.sqrt(safe)))
        out: FloatArray = np.where(t > 0.0, imb, self.imb_skew)
        return out

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        p0, d0, c0 = as_step_arrays(prefill_tokens, decode_seqs, context_tokens)
        return self._step_times(p0, d0, c0, p0)

    def _step_times(self, p0: FloatArray, d0: FloatArray, c0: FloatArray, largest0: FloatArray) -> FloatArray:
        """:meth:`step_times` with the prompt tokens in pieces of at most ``largest0`` (:meth:`_dp_extra_array`)."""
        p, d, c = self._micro(p0, d0, c0)
        t = p + d
        busy_lin: FloatArray | float = 0.0
        busy_att: FloatArray | float = 0.0
        if self.dp_ranks > 1.0:  # without attention DP no busiest-rank arrays at all
            busy_lin, busy_att = self._dp_extra_array(p, d, c, largest0 * self.inv_pp)
        lin = np.maximum(self.lin_s_per_token * t + busy_lin, self.dense_weight_s)
        if self.is_moe:
            ti = self._imbalance_array(t) * t
            experts_read = self.all_experts_s * (1.0 - np.power(self.expert_miss, ti))
            grouped = grouped_gemm_efficiency_array(ti * self.copies_per_expert)
            lin = lin + np.maximum(self.moe_s_per_token * ti, experts_read) / grouped
        att = np.maximum(self._attention_compute(p, d, c) + busy_att, (c + t) * self.kv_s_per_token)
        out: FloatArray = lin + att + self._token_s * t + self._fixed_s + self.seq_overhead_s * d0
        if self.kernel_floor_s > 0.0:
            lift = np.maximum(self.kernel_floor_s - (lin + att + self._token_s * t + self.comm_fixed_s), 0.0)
            out = out + lift  # + 0.0 where the work is longer than the kernel chain: those steps are unchanged
        return out

    def breakdown(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> RooflineTerms:
        """The parts of one step's time: summed compute and memory times of the three operator classes (for one
        micro-batch under pipeline parallelism), the communication (collective latency and pipeline hops
        included) and the overhead."""
        pa, da, ca = self._micro(*as_step_arrays(prefill_tokens, decode_seqs, context_tokens))
        busy_lin_a, busy_att_a = self._dp_extra_array(pa, da, ca, pa)
        busy_lin, busy_att = float(busy_lin_a), float(busy_att_a)
        att_c = float(self._attention_compute(pa, da, ca)) + busy_att
        p, d, c = float(pa), float(da), float(ca)
        t = p + d
        compute = self.lin_s_per_token * t + busy_lin + att_c
        memory = self.dense_weight_s + (c + t) * self.kv_s_per_token + self.elementwise_s_per_token * t
        if self.is_moe:
            ti = self._imbalance(t) * t
            grouped = grouped_gemm_efficiency(ti * self.copies_per_expert)
            compute += self.moe_s_per_token * ti / grouped
            memory += self.all_experts_s * (1.0 - self.expert_miss**ti) / grouped
        roofline = (
            self._weights_s(t, busy_lin) + max(att_c, (c + t) * self.kv_s_per_token) + self.elementwise_s_per_token * t
        )
        comm = self.comm_s_per_token * t + self.comm_fixed_s
        overhead = self.overhead_s + self.seq_overhead_s * float(decode_seqs)
        floor = max(0.0, self.kernel_floor_s - (roofline + comm))
        return RooflineTerms(compute, memory, comm, overhead, roofline, floor)

    def _micro(self, p: FloatArray, d: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """One micro-batch's share of each step (the step itself without pipeline parallelism)."""
        k = self.inv_pp
        return p * k, d * k, c * k

    def _dp_extra_array(
        self, p: FloatArray, d: FloatArray, c: FloatArray, largest: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`_dp_extra` elementwise, micro-batch units, with the prompt tokens in pieces of at most
        ``largest`` (:meth:`step_times`: one chunk, ``largest = p``)."""
        if self.dp_ranks == 1.0:
            zero: FloatArray = np.zeros_like(p)
            return zero, zero
        r = self.dp_ranks
        seqs = np.where(p > 0.0, d + 1.0, d)
        cbar = np.divide(c, seqs, out=np.zeros_like(c), where=seqs > 0.0)
        pairs = p * cbar + 0.5 * p * p
        tokens = np.maximum(largest, p / r)
        busy_pairs = np.maximum(largest * cbar + 0.5 * largest * largest, pairs / r)
        up = np.where(largest >= p, self.kv_up_s * cbar * (r - 1.0), 0.0)  # one chunk's cached prefix (MLA)
        lin: FloatArray = np.where(p > 0.0, self.att_lin_s_per_token * (r * tokens - p), 0.0)
        att: FloatArray = np.where(p > 0.0, self.pair_prefill_s * (r * busy_pairs - pairs) + up, 0.0)
        return lin, att

    def spread_step_times(
        self, prefill_tokens: FloatArray, decode_seqs: FloatArray, context_tokens: FloatArray, largest_chunk: FloatArray
    ) -> FloatArray:
        """:meth:`spread_step_time` elementwise."""
        if self.dp_ranks == 1.0:
            return self.step_times(prefill_tokens, decode_seqs, context_tokens)
        out: FloatArray = self._step_times(prefill_tokens, decode_seqs, context_tokens, largest_chunk)
        return out

    def _attention_compute(self, p: FloatArray, d: FloatArray, c: FloatArray) -> FloatArray:
        """Attention-core seconds of each step at the compute roof (same operations as step_time)."""
        seqs = np.where(p > 0.0, d + 1.0, d)
        cbar = np.divide(c, seqs, out=np.zeros_like(c), where=seqs > 0.0)
        compute = self.pair_decode_s * d * cbar + self.pair_prefill_s * (p * cbar + 0.5 * p * p)
        compute = compute + np.where(p > 0.0, self.kv_up_s * cbar, 0.0)
        out: FloatArray = compute + self.window_s_per_token * (p + d)
        return out

    def __repr__(self) -> str:
        dep = self.deployment
        eff = self.efficiencies
        return (
            f"RooflinePerfModel({dep.model} {dep.precision} on {dep.gpus}x {dep.hardware} "
            f"tp={dep.tp} pp={dep.pp} ep={dep.ep}, mfu={eff.mfu:.3g}, mbu={eff.mbu:.3g})"
        )
