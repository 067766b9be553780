"""The linear step model: ``step_s = alpha + beta * P + gamma * C + delta * D``.

This is the model of the llm-d workload-variant autoscaler's queueing analysis (``alpha`` a fixed cost per
step, ``beta`` per prefill token, ``gamma`` per context token read by attention, ``delta`` per decode
sequence) and the one the simulator's validation tests drive the engine with, because the mean latencies of a
continuous-batching queue under it have closed forms. It is also a reasonable first fit to measured steps.

For a run of decode-only steps the context grows by ``D`` per step, so step ``j`` takes
``a + gamma * D * j`` with ``a = alpha + gamma * C0 + delta * D``, and the ``n``-th step ends at
``n * a + gamma * D * n * (n - 1) / 2``: :meth:`LinearPerfModel.decode_segment` uses that closed form.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agentsim import spec
from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays, check_segment_args

__all__ = ["LinearPerfModel"]


class LinearPerfModel(PerfModel):
    """Step time linear in the three step axes, from :class:`agentsim.spec.LinearPerf`."""

    def __init__(self, spec_: spec.LinearPerf) -> None:
        self.spec = spec_
        self.alpha = spec_.alpha_s
        self.beta = spec_.beta_s_per_prefill_token
        self.gamma = spec_.gamma_s_per_context_token
        self.delta = spec_.delta_s_per_seq

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        return self.alpha + self.beta * prefill_tokens + self.gamma * context_tokens + self.delta * decode_seqs

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        p, d, c = as_step_arrays(prefill_tokens, decode_seqs, context_tokens)
        return self.alpha + self.beta * p + self.gamma * c + self.delta * d

    def decode_segment(self, decode_seqs: int, context0: float, steps: int) -> FloatArray:
        check_segment_args(decode_seqs, context0, steps)
        n = np.arange(1, steps + 1, dtype=np.float64)
        first = self.alpha + self.gamma * context0 + self.delta * decode_seqs
        return n * first + (self.gamma * decode_seqs * 0.5) * n * (n - 1.0)

    closed_form_total = True

    def decode_total(self, decode_seqs: int, context0: float, steps: int) -> float:
        check_segment_args(decode_seqs, context0, steps)
        d = float(decode_seqs)
        first = self.alpha + self.gamma * context0 + self.delta * d
        return steps * first + (self.gamma * d * 0.5) * steps * (steps - 1.0)

    def __repr__(self) -> str:
        return f"LinearPerfModel(alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, delta={self.delta})"
