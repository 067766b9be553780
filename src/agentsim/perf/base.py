"""Throughput curves: how long one engine step takes.

A continuous-batching engine (vLLM, SGLang, TRT-LLM) runs in *steps*. In each step the model does one
forward pass over a batch made of two kinds of work: prefill chunks (prompt tokens being computed, possibly a
chunk of a long prompt) and decode sequences (each generating exactly one token). The simulator needs one
number per step, its duration, as a function of the batch's shape, summarised by three quantities:

* ``prefill_tokens`` P: prompt tokens computed in this step (sum of the prefill chunks);
* ``decode_seqs`` D: sequences generating one token in this step;
* ``context_tokens`` C: tokens already in the KV cache that the step's attention reads (for a decode sequence
  its current context; for a prefill chunk the tokens before the chunk in that sequence).

A :class:`PerfModel` maps ``(P, D, C)`` to seconds. It has three entry points:
:meth:`PerfModel.step_times`, vectorized over arrays (for analysis and calibration);
:meth:`PerfModel.step_time`, a scalar path in pure Python arithmetic for the engine's hot loop, equal to the
vectorized one to rounding; and
:meth:`PerfModel.decode_segment`, the cumulative end times of a run of decode-only steps during which nothing
joins or leaves the batch. The last lets the engine skip over many identical-shape steps at once: between two
events the batch is fixed, each step adds ``D`` tokens to the context, and the end time of step ``j`` is known
in advance, so the engine can jump straight to the step where the next event happens.

:class:`FunctionPerf` wraps any scalar function as a model, the test double for engine tests (the same idea as
httpx's ``MockTransport(handler)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from mypy_extensions import mypyc_attr

__all__ = ["FloatArray", "FunctionPerf", "PerfModel", "as_step_arrays", "check_segment_args"]

FloatArray = npt.NDArray[np.float64]
"""A float64 numpy array."""


def as_step_arrays(
    prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The three step axes as float64 arrays broadcast to one shape."""
    p, d, c = np.broadcast_arrays(
        np.asarray(prefill_tokens, dtype=np.float64),
        np.asarray(decode_seqs, dtype=np.float64),
        np.asarray(context_tokens, dtype=np.float64),
    )
    return p, d, c


def check_segment_args(decode_seqs: int, context0: float, steps: int) -> None:
    """Raise ValueError unless a decode segment's arguments make sense."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if decode_seqs < 0:
        raise ValueError(f"decode_seqs must be >= 0, got {decode_seqs}")
    if context0 < 0:
        raise ValueError(f"context0 must be >= 0, got {context0}")


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled (setup.py), yet extensible from Python code
class PerfModel(ABC):
    """Step duration as a function of the step's shape ``(prefill_tokens, decode_seqs, context_tokens)``.

    Subclasses implement :meth:`step_times` and :meth:`step_time` (which must agree elementwise to 1e-12
    relative) and may override :meth:`decode_segment` with a closed form.
    """

    @abstractmethod
    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        """Seconds per step, elementwise over the broadcast arrays (float64)."""

    @abstractmethod
    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        """Seconds for one step: the scalar fast path (no numpy per call)."""

    def spread_step_time(
        self, prefill_tokens: float, decode_seqs: float, context_tokens: float, largest_chunk: float
    ) -> float:
        """:meth:`step_time` whose prompt tokens come in pieces of at most ``largest_chunk`` tokens, as speculative
        verification's draft tokens (a few per sequence): data-parallel attention spreads them over its ranks
        (:meth:`step_time` takes them as one chunk on one rank). Models without ranks use :meth:`step_time`."""
        return self.step_time(prefill_tokens, decode_seqs, context_tokens)

    def spread_step_times(
        self, prefill_tokens: FloatArray, decode_seqs: FloatArray, context_tokens: FloatArray, largest_chunk: FloatArray
    ) -> FloatArray:
        """:meth:`spread_step_time` elementwise (float64 arrays of one shape)."""
        return self.step_times(prefill_tokens, decode_seqs, context_tokens)

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
        """One step whose prompt tokens are known chunk by chunk: ``prefill_context`` is the sum of the cached tokens
        before each prefill chunk (part of ``context_tokens``), ``prefill_pairs`` the sum over chunks of ``chunk
        * (cached + chunk / 2)`` (attention's causal query-key pairs), ``largest_chunk``, ``largest_pairs`` and
        ``largest_context`` the largest chunk's tokens, pairs and cached prefix (each the largest over the
        chunks; negative: one chunk, the whole prefill; data-parallel attention runs each chunk on one rank).
        Models whose step does not depend on how the prompt tokens split into sequences use :meth:`step_time`."""
        return self.step_time(prefill_tokens, decode_seqs, context_tokens)

    def decode_segment(self, decode_seqs: int, context0: float, steps: int) -> FloatArray:
        """End times, relative to the segment start, of ``steps`` consecutive decode-only steps.

        Step ``j`` (0-based) has ``P = 0``, ``D = decode_seqs`` and ``C = context0 + decode_seqs * j``: every
        step appends one token to each of the ``D`` sequences. Element ``j`` of the result is the time at
        which step ``j`` ends, so the result is increasing and its last element is the segment's duration.
        """
        check_segment_args(decode_seqs, context0, steps)
        j = np.arange(steps, dtype=np.float64)
        context = context0 + float(decode_seqs) * j
        times = self.step_times(np.zeros(steps), np.full(steps, float(decode_seqs)), context)
        return np.cumsum(times)

    closed_form_total = False
    """True when :meth:`decode_total` is a closed form (O(1), no array): the engine then never builds step-time
    arrays for segments that run to their end."""

    def decode_total(self, decode_seqs: int, context0: float, steps: int) -> float:
        """Duration of the same ``steps`` decode-only steps: the last element of :meth:`decode_segment`.

        The engine needs only this when a segment runs to its end (the common case); models with a closed form
        override it so that no array is built.
        """
        return float(self.decode_segment(decode_seqs, context0, steps)[-1])


class FunctionPerf(PerfModel):
    """A perf model backed by a plain function ``fn(prefill_tokens, decode_seqs, context_tokens) -> seconds``.

    For tests: ``FunctionPerf(lambda p, d, c: 0.01)`` is an engine whose every step takes 10 ms.
    """

    def __init__(self, fn: Callable[[float, float, float], float]) -> None:
        self.fn = fn

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        return float(self.fn(prefill_tokens, decode_seqs, context_tokens))

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        p, d, c = as_step_arrays(prefill_tokens, decode_seqs, context_tokens)
        flat = [self.fn(float(a), float(b), float(x)) for a, b, x in zip(p.ravel(), d.ravel(), c.ravel(), strict=True)]
        return np.asarray(flat, dtype=np.float64).reshape(p.shape)

    def __repr__(self) -> str:
        return f"FunctionPerf({self.fn!r})"
