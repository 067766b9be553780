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
