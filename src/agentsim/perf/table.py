"""Measured step times, interpolated: the throughput curve of a real engine on real hardware.

A table is a list of measured steps ``(prefill_tokens, decode_seqs, context_tokens) -> step_s`` (from a
profiler, a benchmark sweep or another simulator). To answer a step the table has not seen, the model
interpolates *multilinearly over the grid* that the points span: the distinct values of each axis, sorted,
are the grid lines; a query finds its cell on each axis and blends the cell's 2 x 2 x 2 corners with weights
linear in each coordinate. The interpolant is exact at every measured point, linear between grid nodes along
each axis, continuous, and needs no solver (scipy is not a dependency).

Measurements rarely fill a full grid (a prefill sweep at ``D = 0``, a decode sweep at ``P = 0``). Missing
grid nodes are filled from a least-squares fit of the linear step model ``a + b*P + c*C + d*D`` to the
measured points (:mod:`agentsim.perf.linear`), floored at the smallest measured step time; measured nodes keep
their measured values (repeated measurements of one shape are averaged). The number of filled nodes is in
:attr:`TablePerfModel.filled_nodes`: a table where most nodes are filled is mostly a linear fit, and a
denser sweep will say more. An axis with a single value is constant along that axis.

Queries outside the grid's range on any axis follow ``out_of_range``: ``clip`` holds the edge value,
``extrapolate`` continues the edge cell's slope (the result floored at the smallest measured step time, since
a step never takes less than the cheapest step measured), ``error`` raises :class:`PerfRangeError`. Each
out-of-range query is counted in :attr:`TablePerfModel.out_of_range_count` whatever the policy, so a run can
report how often it left the measured region.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import numpy.typing as npt

from agentsim import spec
from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays

__all__ = ["MAX_GRID_NODES", "PerfRangeError", "TablePerfModel"]

MAX_GRID_NODES = 1_000_000
"""Largest grid (product of the distinct values per axis) a table may span."""

_AXES = ("prefill_tokens", "decode_seqs", "context_tokens")


def _locate(xs: list[float], x: float, clip: bool) -> tuple[int, int, float]:
    """The grid cell ``[xs[i], xs[i+1]]`` holding (or nearest to) ``x`` and the position ``t`` of ``x`` in it
    (0 at the left node, 1 at the right one; clipped to [0, 1] unless extrapolating). A single-node axis is
    the cell ``(0, 0)`` at ``t = 0``: constant along that axis."""
    n = len(xs)
    if n == 1:
        return 0, 0, 0.0
    i = bisect.bisect_right(xs, x) - 1
    if i < 0:
        i = 0
    elif i > n - 2:
        i = n - 2
    t = (x - xs[i]) / (xs[i + 1] - xs[i])
    if clip:
        t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
    return i, i + 1, t


class PerfRangeError(ValueError):
    """A step outside the table's measured range, with ``out_of_range: error``."""


class TablePerfModel(PerfModel):
    """Multilinear interpolation over measured steps, from :class:`agentsim.spec.TablePerf`."""

    def __init__(self, spec_: spec.TablePerf) -> None:
        self.spec = spec_
        self.policy = spec_.out_of_range
        self.out_of_range_count = 0
        points = np.array(
            [(p.prefill_tokens, p.decode_seqs, p.context_tokens, p.step_s) for p in spec_.points],
            dtype=np.float64,
        )
        axes = [np.unique(points[:, k]) for k in range(3)]
        shape = tuple(len(a) for a in axes)
        nodes = math.prod(shape)
        if nodes > MAX_GRID_NODES:
            raise ValueError(
                f"the table's points span a {' x '.join(map(str, shape))} grid ({nodes:,} nodes > "
                f"{MAX_GRID_NODES:,}); measure on shared grid values per axis (round the coordinates)"
            )
        index = tuple(np.searchsorted(axes[k], points[:, k]) for k in range(3))
        flat = np.ravel_multi_index(index, shape)
        total = np.zeros(nodes)
        count = np.zeros(nodes)
        np.add.at(total, flat, points[:, 3])
        np.add.at(count, flat, 1.0)
        values = np.divide(total, count, out=np.full(nodes, np.nan), where=count > 0)
        self.min_step_s = float(points[:, 3].min())
        missing = np.isnan(values)
        self.filled_nodes = int(missing.sum())
        if self.filled_nodes:
            values[missing] = self._linear_fill(axes, shape, values, missing)

        self.shape = shape
        self._axes_np = axes
        self._values_np = values.reshape(shape)
        # Plain Python copies for the scalar path: list indexing and bisect beat numpy on single values.
        self._axes = [a.tolist() for a in axes]
        self._values: list[float] = values.tolist()
        self._strides = (shape[1] * shape[2], shape[2], 1)

    def _linear_fill(
        self, axes: list[FloatArray], shape: tuple[int, ...], values: FloatArray, missing: FloatArray
    ) -> FloatArray:
        """Values for the grid nodes no point measured: the least-squares linear fit, floored."""
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        design = np.column_stack([np.ones(len(grid)), grid])
        known = np.logical_not(missing)
        coef, *_ = np.linalg.lstsq(design[known], values[known], rcond=None)
        fitted: FloatArray = np.maximum(design[missing] @ coef, self.min_step_s)
        return fitted

    # -- scalar hot path ---------------------------------------------------------------------------------

    def step_time(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> float:
        ax_p, ax_d, ax_c = self._axes
        if (
            prefill_tokens < ax_p[0]
            or prefill_tokens > ax_p[-1]
            or decode_seqs < ax_d[0]
            or decode_seqs > ax_d[-1]
            or context_tokens < ax_c[0]
            or context_tokens > ax_c[-1]
        ):
            self.out_of_range_count += 1
            if self.policy == "error":
                raise PerfRangeError(self._range_message(prefill_tokens, decode_seqs, context_tokens))
        clip = self.policy != "extrapolate"
        p0, p1, tp_ = _locate(ax_p, prefill_tokens, clip)
        d0, d1, td = _locate(ax_d, decode_seqs, clip)
        k0, k1, tc = _locate(ax_c, context_tokens, clip)
        v = self._values
        sp, sd, _ = self._strides
        a0, a1, b0, b1 = p0 * sp, p1 * sp, d0 * sd, d1 * sd
        uc = 1.0 - tc
        c00 = v[a0 + b0 + k0] * uc + v[a0 + b0 + k1] * tc
        c01 = v[a0 + b1 + k0] * uc + v[a0 + b1 + k1] * tc
        c10 = v[a1 + b0 + k0] * uc + v[a1 + b0 + k1] * tc
        c11 = v[a1 + b1 + k0] * uc + v[a1 + b1 + k1] * tc
        c_0 = c00 * (1.0 - td) + c01 * td
        c_1 = c10 * (1.0 - td) + c11 * td
        out = c_0 * (1.0 - tp_) + c_1 * tp_
        if not clip and out < self.min_step_s:
            out = self.min_step_s
        return out

    # -- vectorized ------------------------------------------------------------------------------------

    def step_times(
        self, prefill_tokens: npt.ArrayLike, decode_seqs: npt.ArrayLike, context_tokens: npt.ArrayLike
    ) -> FloatArray:
        query = as_step_arrays(prefill_tokens, decode_seqs, context_tokens)
        shape = query[0].shape
        q = [a.ravel() for a in query]
        m = q[0].size
        lo = [np.zeros(m, dtype=np.intp) for _ in range(3)]
        hi = [np.zeros(m, dtype=np.intp) for _ in range(3)]
        frac = [np.zeros(m) for _ in range(3)]
        outside = np.zeros(m, dtype=bool)
        for k in range(3):
            xs = self._axes_np[k]
            x = q[k]
            n = len(xs)
            outside |= (x < xs[0]) | (x > xs[-1])
            if n == 1:
                continue
            i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, n - 2)
            t = (x - xs[i]) / (xs[i + 1] - xs[i])
            if self.policy != "extrapolate":
                t = np.clip(t, 0.0, 1.0)
            lo[k], hi[k], frac[k] = i, i + 1, t
        n_out = int(outside.sum())
        if n_out:
            self.out_of_range_count += n_out
            if self.policy == "error":
                first = int(np.argmax(outside))
                raise PerfRangeError(
                    f"{n_out} of {m} steps outside the table; first: "
                    + self._range_message(float(q[0][first]), float(q[1][first]), float(q[2][first]))
                )
        v = self._values_np
        tp_, td, tc = frac
        c_ab = [v[a, b, lo[2]] * (1.0 - tc) + v[a, b, hi[2]] * tc for a in (lo[0], hi[0]) for b in (lo[1], hi[1])]
        c_0 = c_ab[0] * (1.0 - td) + c_ab[1] * td
        c_1 = c_ab[2] * (1.0 - td) + c_ab[3] * td
        out = c_0 * (1.0 - tp_) + c_1 * tp_
        if self.policy == "extrapolate":
            out = np.maximum(out, self.min_step_s)
        result: FloatArray = out.reshape(shape)
        return result

    def _range_message(self, prefill_tokens: float, decode_seqs: float, context_tokens: float) -> str:
        query = (prefill_tokens, decode_seqs, context_tokens)
        ranges = ", ".join(
            f"{name} {x:g} (table {xs[0]:g}..{xs[-1]:g})" for name, x, xs in zip(_AXES, query, self._axes, strict=True)
        )
        return f"step outside the measured table: {ranges}; set out_of_range to clip or extrapolate"

    def __repr__(self) -> str:
        return (
            f"TablePerfModel({len(self.spec.points)} points on a {' x '.join(map(str, self.shape))} grid, "
            f"{self.filled_nodes} filled, out_of_range={self.policy!r})"
        )
