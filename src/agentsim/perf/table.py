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

**Files.** ``TablePerf.path`` reads the steps from a CSV instead of inline ``points`` (:func:`table_points`):

* ``format: csv``, a generic table of measured steps, one row per step, with a header naming (case-insensitive)
  the prefill tokens (``prefill_tokens``, ``tokens`` or ``p``), the decode sequences (``decode_seqs``,
  ``batch``, ``batch_size`` or ``d``), the context tokens (``context_tokens``, ``context`` or ``c``) and the
  step latency (``step_s``, ``latency_s``, ``time_s`` in seconds or ``step_ms``, ``latency_ms``, ``time_ms``
  in milliseconds); other columns are ignored unless ``select`` filters on them;
* ``format: splitwise``, the Splitwise simulator's ``perf_model.csv`` (static batches of ``batch_size``
  requests of ``prompt_size`` prompt and ``token_size`` output tokens, ``prompt_time`` and ``token_time`` in
  ms). Each row becomes two steps: the batch's prefill ``(P = batch_size * prompt_size, D = 0, C = 0) ->
  prompt_time``, and its mean decode iteration ``(P = 0, D = batch_size, C = batch_size * (prompt_size +
  token_size / 2)) -> token_time``: ``token_time`` is the mean over the ``token_size - 1`` iterations, during
  which each sequence's context runs from ``prompt_size + 1`` to ``prompt_size + token_size - 1``, on average
  ``prompt_size + token_size / 2``. The file mixes models, hardware and tensor-parallel degrees: ``select``
  (e.g. ``{model: llama2-70b, hardware: h100-80gb, tensor_parallel: 4}``) must narrow it to one.

Queries outside the grid's range on any axis follow ``out_of_range``: ``clip`` holds the edge value,
``extrapolate`` continues the edge cell's slope (the result floored at the smallest measured step time, since
a step never takes less than the cheapest step measured), ``error`` raises :class:`PerfRangeError`. Each
out-of-range query is counted in :attr:`TablePerfModel.out_of_range_count` whatever the policy, so a run can
report how often it left the measured region.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agentsim import spec
from agentsim.perf.base import FloatArray, PerfModel, as_step_arrays

__all__ = ["MAX_GRID_NODES", "PerfFileError", "PerfRangeError", "TablePerfModel", "read_csv_rows", "table_points"]

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


class PerfFileError(ValueError):
    """A perf CSV that cannot be read or does not have the columns its format needs; the message names it."""


def _matches(cell: str, wanted: str | float) -> bool:
    if isinstance(wanted, str):
        try:
            return float(cell) == float(wanted)
        except ValueError:
            return cell.strip() == wanted
    try:
        return float(cell) == float(wanted)
    except ValueError:
        return False


def read_csv_rows(path: str | Path, select: Mapping[str, str | float] | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts (header keys lower-cased and stripped), keeping only the rows whose
    ``select`` columns hold the given values (numbers compare as numbers: ``8`` matches ``8.0``)."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(f)]
    except OSError as e:
        raise PerfFileError(f"{p}: cannot read: {e.strerror or e}") from None
    select = {k.lower(): v for k, v in (select or {}).items()}
    if rows:
        missing = sorted(k for k in select if k not in rows[0])
        if missing:
            raise PerfFileError(f"{p}: select names column(s) {', '.join(missing)} not in the header")
    kept = [r for r in rows if all(_matches(r[k], v) for k, v in select.items())]
    if not kept:
        raise PerfFileError(f"{p}: no rows" + (f" match select {dict(select)}" if select else ""))
    return kept


def _column(path: str | Path, header: Sequence[str], names: Sequence[str], what: str) -> str:
    for name in names:
        if name in header:
            return name
    raise PerfFileError(f"{path}: no {what} column; expected one of {', '.join(names)}")


def _number(path: str | Path, row: Mapping[str, str], column: str) -> float:
    try:
        return float(row[column])
    except ValueError:
        raise PerfFileError(f"{path}: column {column}: {row[column]!r} is not a number") from None


def _single_config(path: str | Path, rows: list[dict[str, str]], columns: Sequence[str]) -> None:
    """Splitwise files mix configurations: insist that the selected rows are one."""
    for column in columns:
        values = sorted({r.get(column, "") for r in rows})
        if len(values) > 1:
            raise PerfFileError(
                f"{path}: the rows mix {column} values {', '.join(values)}; narrow them with select: {{{column}: ...}}"
            )


def table_points(spec_: spec.TablePerf) -> list[spec.TablePoint]:
    """The measured steps of a table: its inline ``points``, or those read from ``path`` in ``format``."""
    if spec_.path is None:
        return list(spec_.points)
    path = spec_.path
    rows = read_csv_rows(path, spec_.select)
    header = list(rows[0])
    out: list[spec.TablePoint] = []
    if spec_.format == "splitwise":
        _single_config(path, rows, ("model", "hardware", "tensor_parallel"))
        cols = {n: _column(path, header, (n,), n) for n in ("prompt_size", "batch_size", "token_size")}
        cols |= {n: _column(path, header, (n,), n) for n in ("prompt_time", "token_time")}
        for r in rows:
            prompt, batch, tokens = (_number(path, r, cols[k]) for k in ("prompt_size", "batch_size", "token_size"))
            out.append(
                spec.TablePoint(
                    prefill_tokens=batch * prompt,
                    decode_seqs=0,
                    context_tokens=0,
                    step_s=_number(path, r, cols["prompt_time"]) / 1e3,
                )
            )
            out.append(
                spec.TablePoint(
                    prefill_tokens=0,
                    decode_seqs=batch,
                    context_tokens=batch * (prompt + tokens / 2.0),
                    step_s=_number(path, r, cols["token_time"]) / 1e3,
                )
            )
        return out
    p_col = _column(path, header, ("prefill_tokens", "tokens", "p"), "prefill tokens")
    d_col = _column(path, header, ("decode_seqs", "batch", "batch_size", "d"), "decode sequences")
    c_col = _column(path, header, ("context_tokens", "context", "c"), "context tokens")
    seconds = ("step_s", "latency_s", "time_s")
    t_col = _column(path, header, (*seconds, "step_ms", "latency_ms", "time_ms"), "step latency")
    scale = 1.0 if t_col in seconds else 1e-3
    for r in rows:
        out.append(
            spec.TablePoint(
                prefill_tokens=_number(path, r, p_col),
                decode_seqs=_number(path, r, d_col),
                context_tokens=_number(path, r, c_col),
                step_s=_number(path, r, t_col) * scale,
            )
        )
    return out


class TablePerfModel(PerfModel):
    """Multilinear interpolation over measured steps, from :class:`agentsim.spec.TablePerf`."""

    def __init__(self, spec_: spec.TablePerf) -> None:
        self.spec = spec_
        self.policy = spec_.out_of_range
        self.out_of_range_count = 0
        self.points = table_points(spec_)
        points = np.array(
            [(p.prefill_tokens, p.decode_seqs, p.context_tokens, p.step_s) for p in self.points],
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
            f"TablePerfModel({len(self.points)} points on a {' x '.join(map(str, self.shape))} grid, "
            f"{self.filled_nodes} filled, out_of_range={self.policy!r})"
        )
