"""Kaplan-Meier, as ``scipy.stats.ecdf`` computes it, in a few arrays instead of twenty.

Durations still running at the horizon are right-censored: their true duration is at least their age. The
Kaplan-Meier estimate of the survival function is, over the distinct durations ``t_1 < t_2 < ...``, the running
product ``S(t_i) = prod_{j <= i} (n_j - d_j) / n_j`` with ``n_j`` the items still at risk at ``t_j`` (duration
or age at least ``t_j``) and ``d_j`` those that ended exactly then; the CDF is ``1 - S``.

``scipy.stats.ecdf`` builds it from one sorted array of all items plus ~20 temporaries of that length (a Python
list of ones and zeros among them): ~185 bytes per item, gigabytes for the calls of a long run. Here the two
sorted inputs are searched for ``n_j`` and ``d_j``, a block of distinct durations at a time, and the product runs
on from block to block (``np.cumprod`` over the previous block's last value and the next block: the same
multiplications, in the same order). The integers, the ratios, the products and the CDF are scipy's, bit for
bit (``tests/test_summary_honest.py`` compares them); the memory is the inputs, the distinct durations and the
CDF.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

BLOCK = 1 << 16
"""Distinct durations handled at a time."""


def _unique(a: np.ndarray) -> np.ndarray:
    """The distinct values of an ascending array."""
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


def distinct(done: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """The distinct values of two ascending arrays, ascending (those of ``censored``, usually few, inserted
    into those of ``done``)."""
    ud, uc = _unique(done), _unique(censored)
    if not ud.size:
        return uc
    at = np.searchsorted(ud, uc)
    new = (at == ud.size) | (ud[np.minimum(at, ud.size - 1)] != uc)
    return np.insert(ud, at[new], uc[new])


def kaplan_meier(done: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct durations and the Kaplan-Meier CDF at each, from the durations of the items that ended
    (``done``) and the ages of those still running (``censored``), both ascending and without NaN: scipy's
    ``ecdf(CensoredData(uncensored=done, right=censored)).cdf`` ``quantiles`` and ``probabilities``."""
    times = distinct(done, censored)
    cdf = np.empty(times.size)
    n_done, n_censored = done.size, censored.size
    carry: float | None = None
    for a in range(0, times.size, BLOCK):
        t = times[a : a + BLOCK]
        first_done = np.searchsorted(done, t, "left")
        at_risk = (n_done - first_done) + (n_censored - np.searchsorted(censored, t, "left"))
        ended = np.searchsorted(done, t, "right") - first_done
        ratio = (at_risk - ended) / at_risk
        sf = np.cumprod(ratio) if carry is None else np.cumprod(np.concatenate(([carry], ratio)))[1:]
        carry = float(sf[-1])
        cdf[a : a + t.size] = 1 - sf
    return times, cdf


def area_above(times: np.ndarray, cdf: np.ndarray, *, overwrite: bool = False) -> float:
    """The area under the survival curve ``1 - cdf`` from 0 to the last time: the Kaplan-Meier mean, computed as
    ``np.sum(np.diff([0, *times]) * [1, *(1 - cdf[:-1])])``, the products a block at a time, from the last block
    to the first (``overwrite``: into ``cdf`` itself, which each block no longer needs once it is done)."""
    product = cdf if overwrite else np.empty(times.size)
    for a in reversed(range(0, times.size, BLOCK)):
        b = min(times.size, a + BLOCK)
        if a:
            before, surv = times[a - 1 : b - 1], 1.0 - cdf[a - 1 : b - 1]
        else:
            before, surv = np.concatenate(([0.0], times[: b - 1])), np.concatenate(([1.0], 1.0 - cdf[: b - 1]))
        product[a:b] = (times[a:b] - before) * surv
    return float(np.sum(product))


class StreamedCurve:
    """The Kaplan-Meier estimate of :func:`kaplan_meier`, over the finished durations given as ascending blocks
    (:meth:`agentsim.analysis.order.Ordered.blocks`: more than memory should hold at once) and the ages of the
    items still running (``censored``, ascending: those are live items, few), without holding the curve.

    It keeps what a summary reads of the curve: for each probability of ``probs`` the first duration whose CDF
    reaches it (:attr:`first`, as :func:`kaplan_meier`'s ``probs >= p - 1e-12``), the area under the survival
    curve (:attr:`area`: :func:`area_above`, the exactly rounded sum of each block's sum) and the last duration
    (:attr:`last`). The ratios and their running product are :func:`kaplan_meier`'s, bit for bit: the product
    runs over the same distinct durations in the same order, whatever the blocks."""

    def __init__(self, done_blocks: Iterable[np.ndarray], n_done: int, censored: np.ndarray, probs: list[float]):
        self.n_done, self.censored = n_done, censored
        self.probs = probs
        self.first: dict[float, float] = {}
        self._parts: list[float] = []
        self._below = 0  # finished durations before the next distinct time
        self._taken = 0  # censored ages already among the times
        self._carry: float | None = None
        self._t_prev, self._cdf_prev = 0.0, 0.0
        pending: tuple[float, int] | None = None
        for block in done_blocks:
            if not block.size:
                continue
            starts = np.concatenate(([True], block[1:] != block[:-1]))
            values = block[starts]
            counts = np.diff(np.append(np.flatnonzero(starts), block.size))
            if pending is not None:
                if values[0] == pending[0]:
                    counts[0] += pending[1]
                else:
                    self._emit(np.array([pending[0]]), np.array([pending[1]]))
            pending = (float(values[-1]), int(counts[-1]))
            for a in range(0, values.size - 1, BLOCK >> 2):  # a quarter block at a time: fewer temporaries
                b = min(values.size - 1, a + (BLOCK >> 2))
                self._emit(values[a:b], counts[a:b])
        if pending is not None:
            self._emit(np.array([pending[0]]), np.array([pending[1]]))
        self._emit(np.empty(0), np.empty(0, dtype=np.int64))  # the ages beyond the last finished duration
        self.area = math.fsum(self._parts)
        self.last = self._t_prev

    def _emit(self, values: np.ndarray, counts: np.ndarray) -> None:
        """Extend the curve by the distinct finished durations ``values`` (each ended ``counts`` times) and the
        censored ages up to the last of them (all of them when ``values`` is empty)."""
        c = self.censored
        upto = int(np.searchsorted(c, values[-1], "right")) if values.size else c.size
        ages = c[self._taken : upto]
        self._taken = upto
        times = distinct(values, ages)
        if not times.size:
            return
        at = np.searchsorted(values, times, "left")
        hit = (at < values.size) & (values[np.minimum(at, max(values.size - 1, 0))] == times) if values.size else (
            np.zeros(times.size, dtype=bool))  # fmt: skip
        ended = np.where(hit, counts[np.minimum(at, max(values.size - 1, 0))] if values.size else 0, 0)
        before = np.concatenate(([0], np.cumsum(counts)))[at] if values.size else np.full(times.size, 0)
        at_risk = (self.n_done - (self._below + before)) + (c.size - np.searchsorted(c, times, "left"))
        ratio = (at_risk - ended) / at_risk
        sf = np.cumprod(ratio) if self._carry is None else np.cumprod(np.concatenate(([self._carry], ratio)))[1:]
        self._carry = float(sf[-1])
        cdf = 1 - sf
        for p in self.probs:
            if p not in self.first:
                reached = cdf >= p - 1e-12
                if reached.any():
                    self.first[p] = float(times[int(reached.argmax())])
        before_t = np.concatenate(([self._t_prev], times[:-1]))
        surv = np.concatenate(([1.0 - self._cdf_prev], 1.0 - cdf[:-1]))
        self._parts.append(float(np.sum((times - before_t) * surv)))
        self._t_prev, self._cdf_prev = float(times[-1]), float(cdf[-1])
        self._below += int(counts.sum())
