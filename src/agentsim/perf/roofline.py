"""The roofline step model: a step takes as long as its slowest resource, plus communication and overhead.

One forward pass must both *compute* (multiply-adds in matrix units) and *move memory* (read the weights and
the KV cache from HBM). The two overlap, so the step takes about the larger of the two times; this is the
roofline. Small batches (decode) are memory-bound: every step reads all the weights to make one token per
sequence. Large batches (prefill) are compute-bound. Tensor-parallel replicas also exchange activations, which
this model adds on top because it is only partly overlapped in practice, and every step pays a fixed cost
(scheduling, kernel launches). For a step with ``P`` prefill tokens, ``D`` decode sequences and ``C`` context
tokens read by attention (:mod:`agentsim.perf.base`), with ``T = P + D`` new tokens::

    step_s   = max(compute_s, memory_s) + comm_s + overhead_s

    compute_s = (2 * N_active * T + A * pairs) / (tp * peak_flops(precision) * mfu)
    pairs     = T * C / S + P**2 / 2,   S = D + (1 if P > 0 else 0)      (0 when S = 0)
    A         = 2 * layers * heads * (d_qk + d_v)                         FLOPs per (query, key) pair

    memory_s  = (W_read + (C + T) * kv_bytes_per_token * kv_replication) / (tp * hbm_bw * mbu)
    W_read    = bytes(dense params) + bytes(one expert) * E * (1 - (1 - k/E)**T)   (MoE; dense: all weights)

    comm_s    = T * hidden * 2 B * [2 * layers * 2 (tp-1)/tp  +  (pp - 1)] / scaleup_bw

How the terms were chosen:

* *Linear layers*: ``2 * N_active`` FLOPs per token (a multiply-add per weight), the LM head included for
  every token (an over-count for prefill of ``vocab * hidden`` per prompt token, under 7% of an 8B model's
  FLOPs).
* *Attention*: a query attends to every earlier token of its sequence. The exact pair count needs each
  sequence's context, but a step only gives the sums, so the model estimates it from ``P, D, C`` alone:
  the batch holds ``S`` sequences (the decode ones and, when ``P > 0``, one prefill chunk, as with vLLM's
  chunked prefill), each of the ``T`` new tokens attends to the mean context ``C / S``, and the chunk's tokens
  also attend to each other (``P**2 / 2``). This is exact for a decode-only step (``pairs = C``) and for a
  single prefill chunk (``P * C + P**2 / 2``) and approximate for mixed steps. ``d_qk = d_v = head_dim`` for
  GQA; for MLA ``d_qk = head_dim + qk_rope_head_dim`` and ``d_v = head_dim`` (the unabsorbed form).
* *Memory*: the weights are read once per step; the KV of the ``C`` context tokens is read and that of the
  ``T`` new tokens written. A mixture-of-experts step reads only the experts its tokens are routed to: with
  ``T`` tokens each picking ``k`` of ``E`` experts uniformly, the expected number of distinct experts touched
  per layer is ``E * (1 - (1 - k/E)**T)``. Attention, embeddings, dense layers and shared experts are always
  read (``ModelArch.dense_params_b``).
* *Communication* (``tp > 1``): two all-reduces per layer (after attention and after the MLP) of
  ``T * hidden`` 16-bit activations; a ring all-reduce moves ``2 (tp - 1) / tp`` times the buffer through each
  GPU's link. Pipeline stages pass ``T * hidden`` activations ``pp - 1`` times. No per-message latency: that
  belongs in ``overhead_s``.
* *Pipeline parallelism*: a step's batch traverses the ``pp`` stages one after the other, each stage doing
  ``1/pp`` of the work on its ``tp`` GPUs, so the step time equals that of ``tp`` GPUs doing all the work:
  ``pp`` adds memory capacity, not speed. This is the latency of one batch, and the throughput of an engine
  with one batch in flight; engines that keep ``pp`` micro-batches in flight get up to ``pp`` times the
  throughput at the same latency, which this model does not credit.
* *Precision*: weight bytes per :func:`agentsim.perf.memory.bytes_per_param`; math at the hardware's dense
  peak for the weights' precision (fp4 at the fp8 peak on hardware without fp4).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agentsim import spec
from agentsim.catalog import Hardware, ModelArch
from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays, check_segment_args
from agentsim.perf.memory import bytes_per_param, kv_bytes_per_token, kv_replication

__all__ = ["ACTIVATION_BYTES", "RooflinePerfModel", "RooflineTerms"]

ACTIVATION_BYTES = 2
"""Bytes per activation element exchanged between GPUs (16-bit)."""


class RooflineTerms(NamedTuple):
    """The parts of one step's time, in seconds: ``max(compute_s, memory_s) + comm_s + overhead_s``."""

    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float

    @property
    def total_s(self) -> float:
        """The step time."""
        return max(self.compute_s, self.memory_s) + self.comm_s + self.overhead_s


class RooflinePerfModel(PerfModel):
    """Step time from the catalog's hardware and model and the deployment (tp, pp, precision)."""

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
        self.spec = spec_ if spec_ is not None else spec.RooflinePerf()
        tp, pp = deployment.tp, deployment.pp
        wbytes = bytes_per_param(deployment.precision)

        # Everything below is a constant of the deployment; the per-step paths only combine them.
        self.flops_per_s = tp * hardware.dense_tflops(deployment.precision) * 1e12 * self.spec.mfu
        self.bytes_per_s = tp * hardware.hbm_bytes_per_s * self.spec.mbu
        self.flops_per_token = 2.0 * model.active_params_b * 1e9
        if model.attention == "mla":
            assert model.qk_rope_head_dim is not None  # checked by ModelArch
            d_qk = model.head_dim + model.qk_rope_head_dim
        else:
            d_qk = model.head_dim
        self.flops_per_pair = 2.0 * model.layers * model.heads * (d_qk + model.head_dim)
        self.dense_weight_bytes = model.dense_params_b * 1e9 * wbytes
        self.all_experts_bytes = model.experts * model.expert_params_b * 1e9 * wbytes
        self.is_moe = model.is_moe
        self.expert_miss = 1.0 - model.experts_per_token / model.experts if model.is_moe else 1.0
        self.kv_bytes_per_token = kv_bytes_per_token(model, deployment) * kv_replication(model, deployment)
        transfers = 2.0 * model.layers * 2.0 * (tp - 1) / tp + (pp - 1)
        self.comm_s_per_token = transfers * model.hidden_size * ACTIVATION_BYTES / hardware.scaleup_bytes_per_s
        self.overhead_s = self.spec.overhead_s

    # -- scalar hot path ---------------------------------------------------------------------------------

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        p, d, c = prefill_tokens, decode_seqs, context_tokens
        t = p + d
        seqs = d + 1.0 if p > 0.0 else d
        pairs = t * c / seqs if seqs > 0.0 else 0.0
        pairs = pairs + 0.5 * p * p
        compute = (self.flops_per_token * t + self.flops_per_pair * pairs) / self.flops_per_s
        weights = self.dense_weight_bytes
        if self.is_moe:
            weights = weights + self.all_experts_bytes * (1.0 - self.expert_miss**t)
        memory = (weights + (c + t) * self.kv_bytes_per_token) / self.bytes_per_s
        return max(compute, memory) + self.comm_s_per_token * t + self.overhead_s

    def decode_segment(self, decode_seqs: int, context0: float, steps: int) -> FloatArray:
        """Decode-only steps in a few array operations: with ``P = 0`` the batch context ``C`` is the only
        thing that changes from step to step, and both roofline bounds are affine in it."""
        check_segment_args(decode_seqs, context0, steps)
        d = float(decode_seqs)
        c = context0 + d * np.arange(steps, dtype=np.float64)
        pairs = c if d > 0.0 else np.zeros(steps)
        compute = (self.flops_per_token * d + self.flops_per_pair * pairs) / self.flops_per_s
        weights = self.dense_weight_bytes
        if self.is_moe:
            weights = weights + self.all_experts_bytes * (1.0 - self.expert_miss**d)
        memory = (weights + (c + d) * self.kv_bytes_per_token) / self.bytes_per_s
        out: FloatArray = np.cumsum(np.maximum(compute, memory) + (self.comm_s_per_token * d + self.overhead_s))
        return out

    closed_form_total = True

    def decode_total(self, decode_seqs: int, context0: float, steps: int) -> float:
        """Closed form of the segment's duration: both bounds are affine in the step index ``j``, so
        ``sum max(compute, memory) = sum memory + sum over the j where compute wins of (compute - memory)``,
        two arithmetic series split at the crossover."""
        check_segment_args(decode_seqs, context0, steps)
        d = float(decode_seqs)
        if d == 0.0 or steps == 0:
            return float(self.decode_segment(decode_seqs, context0, steps)[-1]) if steps else 0.0
        weights = self.dense_weight_bytes
        if self.is_moe:
            weights = weights + self.all_experts_bytes * (1.0 - self.expert_miss**d)
        a1 = self.flops_per_token * d / self.flops_per_s
        b1 = self.flops_per_pair / self.flops_per_s
        a2 = (weights + d * self.kv_bytes_per_token) / self.bytes_per_s
        b2 = self.kv_bytes_per_token / self.bytes_per_s
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
        return total + n * (self.comm_s_per_token * d + self.overhead_s)

    # -- vectorized ------------------------------------------------------------------------------------

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        compute, memory, comm = self._terms(*as_step_arrays(prefill_tokens, decode_seqs, context_tokens))
        out: FloatArray = np.maximum(compute, memory) + comm + self.overhead_s
        return out

    def breakdown(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> RooflineTerms:
        """The parts of one step's time (which bound binds, how much is communication)."""
        compute, memory, comm = self._terms(*as_step_arrays(prefill_tokens, decode_seqs, context_tokens))
        return RooflineTerms(float(compute), float(memory), float(comm), self.overhead_s)

    def _terms(self, p: FloatArray, d: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        # Same operations in the same order as step_time, so the two agree to rounding.
        t = p + d
        seqs = np.where(p > 0.0, d + 1.0, d)
        pairs = np.divide(t * c, seqs, out=np.zeros_like(t), where=seqs > 0.0)
        pairs = pairs + 0.5 * p * p
        compute = (self.flops_per_token * t + self.flops_per_pair * pairs) / self.flops_per_s
        weights: FloatArray | float = self.dense_weight_bytes
        if self.is_moe:
            weights = weights + self.all_experts_bytes * (1.0 - np.power(self.expert_miss, t))
        memory = (weights + (c + t) * self.kv_bytes_per_token) / self.bytes_per_s
        return compute, memory, self.comm_s_per_token * t

    def __repr__(self) -> str:
        dep = self.deployment
        return (
            f"RooflinePerfModel({dep.model} {dep.precision} on {dep.gpus}x {dep.hardware} "
            f"tp={dep.tp} pp={dep.pp}, mfu={self.spec.mfu}, mbu={self.spec.mbu})"
        )
