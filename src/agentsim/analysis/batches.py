"""Batch means: how sure one run is of a statistic, and whether two runs differ beyond noise.

The calls of one run are correlated (a queue that grows delays many at once), so they cannot be treated as
independent samples: a bootstrap over calls would claim far too much certainty. The classic remedy of
simulation output analysis is *batch means*: the measurement window is cut into :data:`BATCHES` consecutive
stretches of equal length on the replicas' sampling grid, the statistic is computed in each (the TTFT p99 of the
calls issued in it, the output tokens per second of its replica samples, ...), and those per-batch values, long
enough to be nearly independent, give a standard error. A whole-run statistic ``v`` then has the 95% interval
``v +- t(0.975, B-1) * sd(batches) / sqrt(B)``, and two runs differ significantly when Welch's t-test on their
batch values rejects equality at :data:`ALPHA` (``scipy.stats``).

Used by the run summary's ``noise_floor`` warning (:mod:`agentsim.analysis.warnings`) and by ``agentsim compare``
(:mod:`agentsim.report.significance`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pyarrow as pa

from agentsim.analysis.rows import col

BATCHES = 10
ALPHA = 0.05
MIN_BATCHES = 3


def edges(replicas: pa.Table, t0: float, t1: float, batches: int = BATCHES) -> np.ndarray:
    """``batches + 1`` boundaries of equal stretches of ``[t0, t1]`` on the replicas' sampling grid (so that
    counters difference exactly); fewer when the grid is coarser than that, empty without samples."""
    t = np.unique(col(replicas, "t_s")) if replicas.num_rows else np.empty(0)
    t = t[(t >= t0) & (t <= t1)]
    if t.size < batches + 1:
        return t
    picked: np.ndarray = t[np.round(np.linspace(0, t.size - 1, batches + 1)).astype(int)]
    return picked


def per_batch(
    values: np.ndarray, times: np.ndarray, bounds: np.ndarray, stat: Callable[[np.ndarray], float]
) -> np.ndarray:
    """``stat`` of the finite ``values`` whose ``times`` fall in each batch ``[bounds[i], bounds[i+1])``; NaN for
    an empty batch."""
    out = []
    for a, b in pairwise(bounds):
        v = values[(times >= a) & (times < b)]
        v = v[np.isfinite(v)]
        out.append(stat(v) if v.size else np.nan)
    return np.asarray(out, dtype=float)


def percentile(q: float) -> Callable[[np.ndarray], float]:
    """The ``q``-th percentile as a batch statistic."""
    return lambda v: float(np.percentile(v, q))


@functools.cache  # one quantile per sample size, not one per metric and point
def t975(df: int) -> float:
    """Student's ``t(0.975, df)``: the half-width of a two-sided 95% interval in standard errors
    (``scipy.stats.t.ppf``, imported here because ``import agentsim`` imports this module)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def half_width(batch: np.ndarray) -> float | None:
    """The half-width of the two-sided 95% interval of a whole-run statistic from its per-batch values
    (Student's t over the finite batches); None with fewer than :data:`MIN_BATCHES`."""
    b = batch[np.isfinite(batch)]
    if b.size < MIN_BATCHES:
        return None
    return float(t975(b.size - 1) * b.std(ddof=1) / np.sqrt(b.size))


def significant(a: np.ndarray, b: np.ndarray) -> bool | None:
    """Whether two runs' per-batch values differ at :data:`ALPHA` (Welch's t-test); None when either has fewer
    than :data:`MIN_BATCHES` finite batches. Identical constant values are not a difference; constant but unequal
    ones are (the test is undefined there)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < MIN_BATCHES or b.size < MIN_BATCHES:
        return None
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-300)
    if np.ptp(a) <= 1e-9 * scale and np.ptp(b) <= 1e-9 * scale:  # constant up to rounding: the test is undefined
        return bool(abs(a.mean() - b.mean()) > 1e-9 * scale)
    from scipy import stats

    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue < ALPHA)
