"""Speculative decoding and multi-token prediction as a step-time model over *token steps*.

With a draft of ``k`` tokens per step (an MTP head, an EAGLE head or a small draft model), a decode step runs
``k`` draft passes and one target pass that verifies ``k + 1`` tokens per sequence, and yields
``E = 1 + sum_j prod_{i<=j} a_i`` tokens per sequence in expectation (``a_i``: the conditional acceptance rate of
draft position ``i``). A real step with ``P`` prompt tokens and ``D`` decoding sequences at context ``C`` takes

    T_spec = T(P + D k, D, C) + k draft(D, C)

where the verify pass is charged as the plain step plus ``D k`` extra tokens, and a draft pass is ``draft_cost``
times the target's decode step (MTP and EAGLE: one decoder layer plus the LM head, ``1/layers``-ish of the
weights) or the draft model's own decode step.

**Deterministic representation** (a deviation, docs/DESIGN.md). The engine keeps its one-token-per-decode-step
bookkeeping (KV growth, completion steps, event skipping all stay exact) and runs *token steps*: a real step is
``E`` token steps, each with ``1/E`` of its prompt tokens, one token per decoding sequence, and ``1/E`` of its
time. :class:`SpeculativePerf` is that time: ``step(P, D, C) = T_spec(E P, D, C) / E`` (no draft without
decodes), and the engine's token budget is the real budget divided by ``E``
(:func:`agentsim.serving.presets.engine_config`). Over a call's life the time and tokens are the expected
values; a first token can come up to ``(1 - 1/E)`` of a real step early, since a prefill ends on a token-step
boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays

if TYPE_CHECKING:
    from agentsim import spec
    from agentsim.catalog import Catalog, ModelArch

__all__ = ["SpeculativePerf", "default_draft_cost", "speculative_perf"]


def default_draft_cost(model: ModelArch) -> float:
    """One MTP or EAGLE draft pass as a fraction of a target decode step: one decoder layer plus the LM head,
    over the weights a decode token reads (memory-bound decode reads every weight once per step):
    ``((active - 2 vocab hidden) / layers + vocab hidden) / active``."""
    active = model.active_params_b * 1e9
    head = float(model.vocab_size * model.hidden_size)
    layer = max(active - 2.0 * head, 0.0) / model.layers
    return min(1.0, (layer + head) / active)


class SpeculativePerf(PerfModel):
    """The token-step time of speculative decoding over a target model ``base`` (module docstring).

    ``draft_cost`` scales the target's decode step for one draft pass; ``draft``, when given, is the draft
    model's own perf model and its decode step is the draft pass instead."""

    def __init__(
        self,
        base: PerfModel,
        draft_tokens: int,
        tokens_per_step: float,
        draft_cost: float = 0.0,
        draft: PerfModel | None = None,
    ) -> None:
        self.base = base
        self.k = draft_tokens
        self.e = tokens_per_step
        self.draft_cost = draft_cost
        self.draft = draft

    def real_step(
        self, prefill_tokens: float, decode_seqs: float, context_tokens: float, largest_chunk: float = -1.0
    ) -> float:
        """One real speculative step: verify pass plus ``k`` draft passes (none without decodes). The draft tokens
        are ``k`` per sequence, spread over data-parallel attention ranks (perf.base); ``largest_chunk`` is the
        largest prompt chunk (negative: all of ``prefill_tokens``)."""
        piece = largest_chunk if largest_chunk >= 0.0 else prefill_tokens
        if decode_seqs > 0.0 and piece < self.k:
            piece = float(self.k)
        verify = self.base.spread_step_time(prefill_tokens + decode_seqs * self.k, decode_seqs, context_tokens, piece)
        if decode_seqs <= 0:
            return verify
        if self.draft is not None:
            one = self.draft.step_time(0.0, decode_seqs, context_tokens)
        else:
            one = self.draft_cost * self.base.step_time(0.0, decode_seqs, context_tokens)
        return verify + self.k * one

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        return self.real_step(prefill_tokens * self.e, decode_seqs, context_tokens) / self.e

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
        """:meth:`step_time` with the replica's largest prompt chunk (the busiest attention-DP rank's)."""
        big = largest_chunk * self.e if largest_chunk >= 0.0 else -1.0
        return self.real_step(prefill_tokens * self.e, decode_seqs, context_tokens, big) / self.e

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        p, d, c = as_step_arrays(prefill_tokens, decode_seqs, context_tokens)
        e, k = self.e, float(self.k)
        verify = self.base.spread_step_times(p * e + d * k, d, c, np.where(d > 0.0, np.maximum(p * e, k), p * e))
        zeros = np.zeros_like(p)
        if self.draft is not None:
            one = self.draft.step_times(zeros, d, c)
        else:
            one = self.draft_cost * self.base.step_times(zeros, d, c)
        return np.asarray((verify + np.where(d > 0, k * one, 0.0)) / e, dtype=np.float64)

    def __repr__(self) -> str:
        return f"SpeculativePerf({self.base!r}, k={self.k}, tokens_per_step={self.e:.4g})"


def speculative_perf(
    base: PerfModel, speculative: spec.SpeculativeSpec, pool: spec.PoolSpec, model: ModelArch, catalog: Catalog
) -> SpeculativePerf:
    """``base`` with ``speculative`` decoding: the draft cost given, the draft model's roofline on the pool's
    deployment (method draft), or one decoder layer plus the LM head of the target (mtp, eagle)."""
    draft: PerfModel | None = None
    cost = speculative.draft_cost
    if cost is None:
        if speculative.draft_model is not None:
            from agentsim import spec as _spec
            from agentsim.perf.roofline import RooflinePerfModel

            dep = pool.deployment.model_copy(update={"model": speculative.draft_model})
            perf = (
                pool.perf
                if isinstance(pool.perf, _spec.RooflinePerf)
                else _spec.RooflinePerf(kernel_latency_s=pool.deployment.engine.kernel_latency_s)  # the preset's
            )
            # the engine's per-sequence CPU work is paid once per real step, by the base model's verify pass
            perf = perf.model_copy(update={"overhead_s_per_seq": 0.0})
            hw = catalog.get_hardware(dep.hardware)
            draft = RooflinePerfModel(hw, catalog.get_model(speculative.draft_model), dep, perf)
            cost = 0.0
        else:
            cost = default_draft_cost(model)
    return SpeculativePerf(base, speculative.draft_tokens, speculative.tokens_per_step, cost, draft)
