"""The roofline step model: a step takes as long as its slowest resource, plus communication and overhead.

One forward pass must both *compute* (multiply-adds in matrix units) and *move memory* (read the weights and
the KV cache). Within one operator the two overlap, so an operator takes about the larger of the two times;
this is the roofline. Operators run one after another, so the step is the *sum* of the rooflines of its three
operator classes: the linear layers (memory-bound at small batch: every decode step reads all the weights to
make one token per sequence; compute-bound in prefill), the MoE experts, and the attention core (reading the KV
cache: memory-bound in decode at any batch). Parallel replicas also exchange activations, which this model adds
on top because it is only partly overlapped in practice, and every step pays a fixed cost (scheduling, kernel
launches). For a step with ``P`` prefill tokens, ``D`` decode sequences and ``C`` context tokens read by
attention (:mod:`agentsim.perf.base`), with ``T = P + D`` new tokens, on ``tp`` GPUs per pipeline stage::

    step_s  = max(F_lin T / R, W_lin s_w)                        linear layers (attention projections, dense MLP,
            + max(F_moe T / R, W_exp cov(T) s_w)                 shared experts, LM head); routed experts (MoE)
            + max(F_pair pairs / R_att + F_sw T / R_att, (C + T) kv_bytes kv_replication / (tp hbm_bw mbu))
            + comm_s + overhead_s

    R       = tp * peak_flops(precision) * mfu;   R_att = tp * peak_flops(KV precision) * mfu
    F_moe   = 2 * k * one_expert_params;  F_lin = 2 * N_active - F_moe;  F_pair = 2 * L_full * heads * (d_qk + d_v)
    F_sw    = 2 * L_sw * heads * (d_qk + d_v) * window            (sliding-window layers, if any)
    pairs   = T * C / S + P**2 / 2,   S = D + (1 if P > 0 else 0)  (0 when S = 0)
    W_lin   = [bytes(dense) - bytes(attn)] / tp + bytes(attn) / (1 if dp_attention else tp)    per GPU
    W_exp   = bytes(all routed experts) / tp,   cov(T) = 1 - (1 - k/E)**T
    s_w     = (f_hbm / hbm_bw + (1 - f_hbm) / ddr_bw) / mbu       seconds per weight byte (memory tiers)
    comm_s  = T * bytes_per_token / (scaleup_bw * comm_efficiency) + collectives * collective_latency_s

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
  chunked prefill), each of the ``T`` new tokens attends to the mean context ``C / S``, and the chunk's tokens
  also attend to each other (``P**2 / 2``). This is exact for a decode-only step (``pairs = C``) and for a
  single prefill chunk (``P * C + P**2 / 2``) and approximate for mixed steps. ``d_qk = d_v = head_dim`` for
  GQA; for MLA ``d_qk = head_dim + qk_rope_head_dim`` and ``d_v = head_dim`` (the unabsorbed form). Layers
  with a sliding window (gpt-oss) attend to at most ``window`` tokens: charged as ``window`` pairs per token.
  Attention math runs at the peak of the KV cache's precision (FP8 attention with an FP8 cache; FP4 weights do
  not make attention FP4).
* *Memory*: the weights are read once per step; the KV of the ``C`` context tokens is read and that of the
  ``T`` new tokens written. A mixture-of-experts step reads only the experts its tokens are routed to: with
  ``T`` tokens each picking ``k`` of ``E`` experts uniformly, the expected number of distinct experts touched
  per layer is ``E * (1 - (1 - k/E)**T)`` (expert coverage grows with the batch: one decode token reads ``k``
  experts, a large batch all of them). Attention, embeddings, dense layers and shared experts are always read
  (``ModelArch.dense_params_b``). Expert parallelism spreads whole experts over GPUs; the model charges the
  mean per GPU, not the most loaded one (routing imbalance is not modelled).
* *Memory tiers*: a fraction ``f_hbm`` of each GPU's weights lives in HBM and the rest in the DDR tier
  (:func:`agentsim.perf.memory.weight_placement`); each part is read at its tier's bandwidth, one after the
  other (a layer's weights are in one tier). Without DDR, ``f_hbm = 1``. The KV cache is always in HBM.
* *Data-parallel attention*: each GPU runs the whole attention block for its own ``1/tp`` of the sequences, so
  it reads all the attention weights (not ``1/tp`` of them) but the KV cache is not replicated.
* *Communication* over the catalog's scale-up link (``scaleup_gb_s_per_gpu``, one direction), at
  ``comm_efficiency`` of its bandwidth, plus ``collective_latency_s`` per collective:

  - tensor parallelism (``tp > 1``): a ring all-reduce of ``T * hidden`` 16-bit activations after attention and
    after the MLP of every layer, moving ``2 (tp - 1) / tp`` of the buffer through each GPU's link;
  - data-parallel attention with expert parallelism (``ep = tp``): no attention all-reduce; each MoE layer
    *dispatches* every token to its ``k`` experts and *combines* the results (two all-to-alls), each GPU
    sending its ``T / ep`` tokens' ``k`` copies of which ``(ep - 1) / ep`` go to other GPUs; dense layers
    (DeepSeek's first three) keep the all-reduce. With attention under TP, every GPU already holds every
    token, so expert parallelism needs no all-to-all (the MoE output is all-reduced as with TP);
  - pipeline stages pass ``T * hidden`` activations ``pp - 1`` times.
* *Pipeline parallelism*: a step's batch traverses the ``pp`` stages one after the other, each stage doing
  ``1/pp`` of the work on its ``tp`` GPUs, so the step time equals that of ``tp`` GPUs doing all the work:
  ``pp`` adds memory capacity, not speed. This is the latency of one batch, and the throughput of an engine
  with one batch in flight; engines that keep ``pp`` micro-batches in flight get up to ``pp`` times the
  throughput at the same latency, which this model does not credit.
* *Precision*: weight bytes per :func:`agentsim.perf.memory.bytes_per_param`; math at the hardware's dense
  peak for the weights' precision (fp4 at the fp8 peak on hardware without fp4).
* *Efficiencies* (``mfu``, ``mbu``, ``comm_efficiency``, ``collective_latency_s``, ``overhead_s``) are
  parameters of :class:`agentsim.spec.RooflinePerf`; ``docs/FIDELITY.md`` justifies the defaults and shows how
  ``agentsim calibrate`` fits them to measurements.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from agentsim import spec
from agentsim.catalog import Hardware, ModelArch
from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays, check_segment_args
from agentsim.perf.memory import (
    bytes_per_param,
    kv_bytes_per_element,
    kv_bytes_per_token,
    kv_replication,
    weight_placement,
)

__all__ = ["ACTIVATION_BYTES", "RooflinePerfModel", "RooflineTerms", "comm_terms"]

ACTIVATION_BYTES: Final = 2
"""Bytes per activation element exchanged between GPUs (16-bit)."""


class RooflineTerms(NamedTuple):
    """The parts of one step's time, in seconds. ``compute_s`` and ``memory_s`` sum the three operator classes
    (linear layers, MoE experts, attention); ``roofline_s`` is the sum over the classes of each class's
    ``max(compute, memory)``; the step takes ``roofline_s + comm_s + overhead_s``."""

    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    roofline_s: float

    @property
    def total_s(self) -> float:
        """The step time."""
        return self.roofline_s + self.comm_s + self.overhead_s


def comm_terms(model: ModelArch, deployment: spec.Deployment) -> tuple[float, int]:
    """Bytes each GPU sends per new token of a step, and the number of collectives per step (module docstring).

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
    per_token = 0.0
    collectives = 0
    if tp > 1:
        if deployment.data_parallel_attention:
            # dense MLP layers all-reduce; MoE layers dispatch + combine all-to-all over ep GPUs
            per_token += dense_layers * ring * act
            per_token += moe_layers * 2.0 * model.experts_per_token * (ep - 1) / ep / ep * act
            collectives += dense_layers + 2 * moe_layers
        else:
            per_token += 2.0 * model.layers * ring * act
            collectives += 2 * model.layers
    if pp > 1:
        per_token += (pp - 1) * act
        collectives += pp - 1
    return per_token, collectives


class RooflinePerfModel(PerfModel):
    """Step time from the catalog's hardware and model and the deployment (tp, pp, ep, precision, tiers)."""

    def __init__(
        self,
        hardware: Hardware,
        model: ModelArch,
        deployment: spec.Deployment,
        spec_: spec.RooflinePerf | None = None,
    ) -> None:
        self.hardware = hardware
        self.model = model
        self.deployment = deployment
        self.spec = spec_ if spec_ is not None else spec.RooflinePerf.model_validate({})  # all defaults
        tp = deployment.tp
        wbytes = bytes_per_param(deployment.precision)
        mbu, mfu = self.spec.mbu, self.spec.mfu

        # Everything below is a constant of the deployment; the per-step paths only combine them.
        flops = tp * hardware.dense_tflops(deployment.precision) * 1e12 * mfu
        kv_precision: spec.Precision = "bf16" if kv_bytes_per_element(deployment) == 2 else "fp8"
        flops_att = tp * hardware.dense_tflops(kv_precision) * 1e12 * mfu
        moe_flops = 2.0 * model.experts_per_token * model.expert_params_b * 1e9
        self.lin_s_per_token = (2.0 * model.active_params_b * 1e9 - moe_flops) / flops
        self.moe_s_per_token = moe_flops / flops
        pair = 2.0 * model.heads * (model.qk_head_dim + model.head_dim)
        self.pair_s = model.full_attention_layers * pair / flops_att
        self.window_s_per_token = (model.sliding_window_layers or 0) * pair * (model.sliding_window or 0) / flops_att

        # Seconds per weight byte on one GPU: the HBM part at HBM bandwidth, the DDR part at DDR bandwidth.
        f_hbm = weight_placement(model, hardware, deployment).hbm_fraction
        s_per_byte = f_hbm / hardware.hbm_bytes_per_s
        if f_hbm < 1.0:
            s_per_byte += (1.0 - f_hbm) / hardware.ddr_bytes_per_s
        s_per_byte /= mbu
        attention = model.attention_params_b * 1e9 * wbytes if deployment.data_parallel_attention else 0.0
        dense_per_gpu = (model.dense_params_b * 1e9 * wbytes - attention) / tp + attention
        self.dense_weight_s = dense_per_gpu * s_per_byte
        self.all_experts_s = model.experts * model.expert_params_b * 1e9 * wbytes / tp * s_per_byte
        self.is_moe = model.is_moe
        self.expert_miss = 1.0 - model.experts_per_token / model.experts if model.is_moe else 1.0
        kv_per_token = kv_bytes_per_token(model, deployment) * kv_replication(model, deployment)
        self.kv_s_per_token = kv_per_token / (tp * hardware.hbm_bytes_per_s * mbu)

        per_token, collectives = comm_terms(model, deployment)
        self.comm_s_per_token = per_token / (hardware.scaleup_bytes_per_s * self.spec.comm_efficiency)
        self.comm_fixed_s = collectives * self.spec.collective_latency_s
        # Unset: the vLLM preset's step overhead (agentsim.resolve fills in the pool's engine preset's).
        self.overhead_s = self.spec.overhead_s if self.spec.overhead_s is not None else 0.002
        self._fixed_s = self.comm_fixed_s + self.overhead_s

    def _weights_s(self, t: float) -> float:
        """Linear layers and experts of a step with ``t`` new tokens: each class bound by its own resource."""
        out = max(self.lin_s_per_token * t, self.dense_weight_s)
        if self.is_moe:
            out += max(self.moe_s_per_token * t, self.all_experts_s * (1.0 - self.expert_miss**t))
        return out

    # -- scalar hot path ---------------------------------------------------------------------------------

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        p, d, c = prefill_tokens, decode_seqs, context_tokens
        t = p + d
        seqs = d + 1.0 if p > 0.0 else d
        pairs = t * c / seqs if seqs > 0.0 else 0.0
        pairs = pairs + 0.5 * p * p
        lin = max(self.lin_s_per_token * t, self.dense_weight_s)
        if self.is_moe:
            lin = lin + max(self.moe_s_per_token * t, self.all_experts_s * (1.0 - self.expert_miss**t))
        att = max(self.pair_s * pairs + self.window_s_per_token * t, (c + t) * self.kv_s_per_token)
        return lin + att + self.comm_s_per_token * t + self._fixed_s

    def decode_segment(self, decode_seqs: int, context0: float, steps: int) -> FloatArray:
        """Decode-only steps in a few array operations: with ``P = 0`` the batch context ``C`` is the only
        thing that changes from step to step, and both attention bounds are affine in it."""
        check_segment_args(decode_seqs, context0, steps)
        d = float(decode_seqs)
        c = context0 + d * np.arange(steps, dtype=np.float64)
        pairs = c if d > 0.0 else np.zeros(steps)
        att = np.maximum(self.pair_s * pairs + self.window_s_per_token * d, (c + d) * self.kv_s_per_token)
        per_step = self._weights_s(d) + self.comm_s_per_token * d + self._fixed_s
        out: FloatArray = np.cumsum(att + per_step)
        return out

    closed_form_total = True

    def decode_total(self, decode_seqs: int, context0: float, steps: int) -> float:
        """Closed form of the segment's duration: the weight terms are constant over the segment and both
        attention bounds are affine in the step index ``j``, so ``sum max(compute, memory) = sum memory + sum
        over the j where compute wins of (compute - memory)``, two arithmetic series split at the crossover."""
        check_segment_args(decode_seqs, context0, steps)
        d = float(decode_seqs)
        if d == 0.0 or steps == 0:
            return float(self.decode_segment(decode_seqs, context0, steps)[-1]) if steps else 0.0
        a1 = self.window_s_per_token * d
        b1 = self.pair_s
        a2 = d * self.kv_s_per_token
        b2 = self.kv_s_per_token
        n = float(steps)
        # memory at step j: a2 + b2 (c0 + d j)
        total = n * (a2 + b2 * context0) + b2 * d * n * (n - 1.0) * 0.5
        i0 = (a1 - a2) + (b1 - b2) * context0  # compute - memory at j = 0
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
        return total + n * (self._weights_s(d) + self.comm_s_per_token * d + self._fixed_s)

    # -- vectorized ------------------------------------------------------------------------------------

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        t, pairs, c = self._shape(*as_step_arrays(prefill_tokens, decode_seqs, context_tokens))
        lin = np.maximum(self.lin_s_per_token * t, self.dense_weight_s)
        if self.is_moe:
            lin = lin + np.maximum(self.moe_s_per_token * t, self.all_experts_s * (1.0 - np.power(self.expert_miss, t)))
        att = np.maximum(self.pair_s * pairs + self.window_s_per_token * t, (c + t) * self.kv_s_per_token)
        out: FloatArray = lin + att + self.comm_s_per_token * t + self._fixed_s
        return out

    def breakdown(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> RooflineTerms:
        """The parts of one step's time: summed compute and memory times of the three operator classes, the
        communication (collective latency included) and the overhead."""
        t_a, pairs_a, c_a = self._shape(*as_step_arrays(prefill_tokens, decode_seqs, context_tokens))
        t, pairs, c = float(t_a), float(pairs_a), float(c_a)
        compute = self.lin_s_per_token * t + self.pair_s * pairs + self.window_s_per_token * t
        memory = self.dense_weight_s + (c + t) * self.kv_s_per_token
        if self.is_moe:
            compute += self.moe_s_per_token * t
            memory += self.all_experts_s * (1.0 - self.expert_miss**t)
        roofline = self._weights_s(t) + max(
            self.pair_s * pairs + self.window_s_per_token * t, (c + t) * self.kv_s_per_token
        )
        comm = self.comm_s_per_token * t + self.comm_fixed_s
        return RooflineTerms(compute, memory, comm, self.overhead_s, roofline)

    @staticmethod
    def _shape(p: FloatArray, d: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """New tokens, attention (query, key) pairs and context of each step (same operations as step_time)."""
        t = p + d
        seqs = np.where(p > 0.0, d + 1.0, d)
        pairs = np.divide(t * c, seqs, out=np.zeros_like(t), where=seqs > 0.0)
        pairs = pairs + 0.5 * p * p
        return t, pairs, c

    def __repr__(self) -> str:
        dep = self.deployment
        return (
            f"RooflinePerfModel({dep.model} {dep.precision} on {dep.gpus}x {dep.hardware} "
            f"tp={dep.tp} pp={dep.pp} ep={dep.ep}, mfu={self.spec.mfu}, mbu={self.spec.mbu})"
        )
