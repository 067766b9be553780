"""Throughput curves as published: output tokens/s vs concurrency, turned into step times.

Benchmark sweeps (SemiAnalysis InferenceX, vendor "perf overview" pages, ``vllm bench serve --max-concurrency``)
publish one number per concurrency ``B``: output tokens per second, per replica or per GPU, at a fixed input
length ``isl`` and output length ``osl``. The simulator needs step times, so :class:`CurvePerfModel` inverts the
sweep under the same assumptions the simulator's engine makes.

**Decode step at the sweep's points.** At concurrency ``B`` the engine runs about ``B`` sequences per decode
step, so it makes ``tokens_per_s(B) / B`` decode steps per second: one step takes ``B / tokens_per_s(B)`` if the
engine did nothing else. It also computed each request's prompt: ``X = tokens_per_s / osl`` requests per second
of ``isl`` prompt tokens, at ``t_pf`` seconds per prompt token, a fraction ``X * isl * t_pf`` of its time. With
``subtract_prefill`` (default) that share is removed::

    s(B) = B / tokens_per_s(B) - B * isl * t_pf / osl

``t_pf`` is ``1 / prefill_tokens_per_s`` when the user gives a measured prefill figure (a separate
prefill-throughput sweep, or ``isl / TTFT`` at low load), otherwise the roofline's *marginal* cost of adding the
prompt to that decode batch, ``(roofline(isl, B, C) - roofline(0, B, C)) / isl`` with ``C = B * c_ref``.

**Between and beyond the points.** ``s`` is interpolated linearly in ``B`` between measured points. Outside the
measured range the curve follows the roofline's *shape* anchored at the nearest point: ``s(B) = s(B_edge) *
roofline(0, B, B c_ref) / roofline(0, B_edge, B_edge c_ref)`` (the count of such steps is in
:attr:`CurvePerfModel.out_of_range_count`).

**Context.** The sweep ran at a mean context of ``c_ref = isl + osl / 2`` tokens per sequence. A decode batch
of ``D`` sequences with total context ``C`` reads ``C - D * c_ref`` more (or fewer) KV tokens, charged at the
roofline's KV read time per token: ``dec(D, C) = s(D) + (C - D * c_ref) * kv_s_per_token``, never below the
physical roofline (peak FLOPS and bandwidth, no overhead).

**Steps with prefill.** ``step(P, D, C) = dec(D, C) + P * t_pf`` with a measured prefill figure, or
``dec(D, C) + roofline(P, D, C) - roofline(0, D, C)`` without; a prefill-only step (``D = 0``) is ``P /
prefill_tokens_per_s`` or ``roofline(P, 0, C)``. The roofline here is :attr:`agentsim.spec.CurvePerf.roofline`
(its efficiencies are parameters, like any roofline's).

Points can be inline (``points``) or read from a CSV (``path``) with a concurrency column (``concurrency``,
``max_concurrency``, ``conc``, ``users`` or ``batch``) and an output-throughput column (with ``per: replica``:
``output_tokens_per_s``, ``output_tok_s_total``, ``output_tok_s``, ``output_throughput``, ``tokens_per_s``;
with ``per: gpu``: ``output_tok_s_per_gpu``, ``output_tokens_per_s_per_gpu``, ``tokens_per_s_per_gpu``, then
the replica names), filtered by ``select``.
"""

from __future__ import annotations

import bisect

import numpy as np
import numpy.typing as npt

from agentsim import spec
from agentsim.catalog import Hardware, ModelArch
from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays
from agentsim.perf.roofline import RooflinePerfModel
from agentsim.perf.table import PerfFileError, read_csv_rows

__all__ = ["CurvePerfModel", "curve_points"]

_CONCURRENCY = ("concurrency", "max_concurrency", "conc", "users", "batch")
_PER_REPLICA = ("output_tokens_per_s", "output_tok_s_total", "output_tok_s", "output_throughput", "tokens_per_s")
_PER_GPU = ("output_tok_s_per_gpu", "output_tokens_per_s_per_gpu", "tokens_per_s_per_gpu")

PHYSICAL = spec.RooflinePerf(
    mfu=1.0,
    mbu=1.0,
    overhead_s=0.0,
    comm_efficiency=1.0,
    collective_latency_s=0.0,
    moe_imbalance=1.0,
    kernel_latency_s=0.0,
)
"""Peak rates, no overhead, no kernel floor: the floor no measured step may go below (a measured engine may
launch fewer, fused kernels than the roofline's kernel floor counts)."""


def curve_points(spec_: spec.CurvePerf) -> list[tuple[float, float]]:
    """``(concurrency, output tokens/s)`` pairs of the curve, inline or read from ``path`` (as given: per
    replica or per GPU according to ``spec_.per``)."""
    if spec_.path is None:
        return [(p.concurrency, p.output_tokens_per_s) for p in spec_.points]
    rows = read_csv_rows(spec_.path, spec_.select)
    header = list(rows[0])
    b_col = next((c for c in _CONCURRENCY if c in header), None)
    names = (*_PER_GPU, *_PER_REPLICA) if spec_.per == "gpu" else _PER_REPLICA
    t_col = next((c for c in names if c in header), None)
    if b_col is None or t_col is None:
        raise PerfFileError(
            f"{spec_.path}: a curve needs a concurrency column ({', '.join(_CONCURRENCY)}) and an output tokens/s "
            f"column ({', '.join(names)})"
        )
    out = []
    for r in rows:
        try:
            out.append((float(r[b_col]), float(r[t_col])))
        except ValueError:
            raise PerfFileError(f"{spec_.path}: non-numeric {b_col}/{t_col} in row {r}") from None
    return out


class CurvePerfModel(PerfModel):
    """Step times from an output-tokens/s vs concurrency curve (module docstring), from
    :class:`agentsim.spec.CurvePerf`."""

    def __init__(
        self, spec_: spec.CurvePerf, hardware: Hardware, model: ModelArch, deployment: spec.Deployment
    ) -> None:
        self.spec = spec_
        self.roofline = RooflinePerfModel(hardware, model, deployment, spec_.roofline)
        self.floor = RooflinePerfModel(hardware, model, deployment, PHYSICAL, physical=True)
        self.out_of_range_count = 0
        scale = float(deployment.gpus) if spec_.per == "gpu" else 1.0
        raw = curve_points(spec_)
        if any(b <= 0 or x <= 0 for b, x in raw):
            raise PerfFileError(f"curve points must be positive: {raw}")
        merged: dict[float, list[float]] = {}
        for b, x in raw:
            merged.setdefault(b, []).append(x * scale)
        isl, osl = float(spec_.input_tokens), float(spec_.output_tokens)
        self.c_ref = isl + osl / 2.0
        self.prefill_s_per_token = 1.0 / (spec_.prefill_tokens_per_s * scale) if spec_.prefill_tokens_per_s else None
        self.kv_s_per_token = self.roofline.kv_s_per_token
        batches = sorted(merged)
        steps: list[float] = []
        self.floored_points = 0
        for b in batches:
            tps = sum(merged[b]) / len(merged[b])
            s = b / tps
            ctx = b * self.c_ref
            if spec_.subtract_prefill:
                t_pf = self._prefill_s(isl, b, ctx) / isl
                s -= b * isl * t_pf / osl
            lowest = self.floor.step_time(0.0, b, ctx)
            if s < lowest:
                self.floored_points += 1
                s = lowest
            steps.append(s)
        self._b = batches
        self._s = steps
        self._b_np = np.asarray(batches, dtype=np.float64)
        self._s_np = np.asarray(steps, dtype=np.float64)
        self._edge_lo = self.roofline.step_time(0.0, batches[0], batches[0] * self.c_ref)
        self._edge_hi = self.roofline.step_time(0.0, batches[-1], batches[-1] * self.c_ref)

    def _prefill_s(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        """Time the prefill of a step adds: measured figure, or the roofline's marginal time."""
        if self.prefill_s_per_token is not None:
            return prefill_tokens * self.prefill_s_per_token
        with_prefill = self.roofline.step_time(prefill_tokens, decode_seqs, context_tokens)
        return with_prefill - self.roofline.step_time(0.0, decode_seqs, context_tokens)

    # -- scalar hot path ---------------------------------------------------------------------------------

    def _curve(self, d: float) -> float:
        """Decode step time at batch ``d`` and the sweep's context (interpolated, or roofline-shaped beyond)."""
        bs, ss = self._b, self._s
        if d < bs[0]:
            self.out_of_range_count += 1
            return ss[0] * self.roofline.step_time(0.0, d, d * self.c_ref) / self._edge_lo
        if d > bs[-1]:
            self.out_of_range_count += 1
            return ss[-1] * self.roofline.step_time(0.0, d, d * self.c_ref) / self._edge_hi
        i = bisect.bisect_right(bs, d) - 1
        if i >= len(bs) - 1:
            return ss[-1]
        t = (d - bs[i]) / (bs[i + 1] - bs[i])
        return ss[i] + (ss[i + 1] - ss[i]) * t

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        p, d, c = prefill_tokens, decode_seqs, context_tokens
        if d <= 0.0:
            if p > 0.0 and self.prefill_s_per_token is not None:
                return p * self.prefill_s_per_token
            return self.roofline.step_time(p, 0.0, c)
        dec = self._curve(d) + (c - d * self.c_ref) * self.kv_s_per_token
        lowest = self.floor.step_time(0.0, d, c)
        if dec < lowest:
            dec = lowest
        if p > 0.0:
            dec = dec + self._prefill_s(p, d, c)
        return dec

    # -- vectorized ------------------------------------------------------------------------------------

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        p, d, c = as_step_arrays(prefill_tokens, decode_seqs, context_tokens)
        bs, ss = self._b_np, self._s_np
        n = len(bs)
        if n > 1:
            i = np.clip(np.searchsorted(bs, d, side="right") - 1, 0, n - 2)
            t = (d - bs[i]) / (bs[i + 1] - bs[i])
            inside = ss[i] + (ss[i + 1] - ss[i]) * t
            inside = np.where(d >= bs[-1], ss[-1], inside)
        else:
            inside = np.full(d.shape, ss[0])
        lo, hi = d < bs[0], d > bs[-1]
        n_out = int(np.count_nonzero(lo & (d > 0.0)) + np.count_nonzero(hi))
        self.out_of_range_count += n_out
        curve = inside
        if n_out:
            shape = self.roofline.step_times(np.zeros_like(d), d, d * self.c_ref)
            curve = np.where(lo, ss[0] * shape / self._edge_lo, np.where(hi, ss[-1] * shape / self._edge_hi, inside))
        dec = curve + (c - d * self.c_ref) * self.kv_s_per_token
        dec = np.maximum(dec, self.floor.step_times(np.zeros_like(d), d, c))
        if self.prefill_s_per_token is not None:
            pre = p * self.prefill_s_per_token
            only_prefill = np.where(p > 0.0, pre, self.roofline.step_times(p, np.zeros_like(d), c))
        else:
            full = self.roofline.step_times(p, d, c)
            pre = full - self.roofline.step_times(np.zeros_like(p), d, c)
            only_prefill = self.roofline.step_times(p, np.zeros_like(d), c)
        out: FloatArray = np.where(d <= 0.0, only_prefill, np.where(p > 0.0, dec + pre, dec))
        return out

    def __repr__(self) -> str:
        return (
            f"CurvePerfModel({len(self._b)} points, B {self._b[0]:g}..{self._b[-1]:g}, isl={self.spec.input_tokens}, "
            f"osl={self.spec.output_tokens}, per={self.spec.per}, floored={self.floored_points})"
        )
