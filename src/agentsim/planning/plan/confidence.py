"""How sure: an SLO statistic pooled over replications, its confidence interval, and the decision it supports.

Replications (the same scenario under different seeds) are independent; the calls and tasks *within* one run
are not (a queue that grows delays many calls at once). So the unit of resampling is the replication, not the
call: the statistic is computed over the pooled items of all replications (a percentile of every window call,
the mean, the fraction within a threshold), and its uncertainty comes from a cluster bootstrap, which redraws
whole replications with replacement (``B`` = 2000 redraws, a fixed seed per SLO so a plan is reproducible).

Few replications make a bootstrap interval too narrow (with 3 runs its percentile interval covers the truth
about three times in four). The interval is therefore built from the bootstrap's *standard error* with the
small-sample correction of a mean of ``R`` clusters: ``se * sqrt(R / (R - 1))`` with Student's ``t`` on
``R - 1`` degrees of freedom. Latencies and means are positive and skewed, so the interval is taken on the log
scale (``est * exp(+-t se_log)``): it is never negative and widens upward. Fractions (threshold SLOs) use the
plain scale, clipped to [0, 1]. A statistic that is infinite (unfinished items past their target weigh in)
bounds the interval above at infinity. ``tests/test_plan_confidence.py`` checks the coverage: at least 93% of
200 synthetic cases with a known answer inside the reported 95% interval.

Each SLO is then decided by the reported interval itself, so what a reader sees is what was decided: **meets**
when the interval's upper end is within the target (for a threshold, its lower end at or above the attainment):
at least 95% confidence (97.5% one-sided); **fails** when its lower end is beyond it; **marginal** otherwise,
which the search answers with more replications.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agentsim.analysis.batches import t975
from agentsim.planning.plan.slo import BIN, EDGES, Sample, Slo

Decision = Literal["meets", "fails", "marginal"]

BOOTSTRAP = 2000


@dataclass(frozen=True)
class Estimate:
    """An SLO statistic over ``replications`` runs: the pooled ``value``, its two-sided 95% interval
    ``[lo, hi]`` (None with one replication), and the decision it supports."""

    value: float | None
    lo: float | None
    hi: float | None
    decision: Decision
    replications: int
    items: int


def _pooled_percentiles(
    hists: np.ndarray, infs: np.ndarray, weights: np.ndarray, q: float, first_bin: int
) -> np.ndarray:
    """The ``q``-th percentile of the pooled items of each row of ``weights`` (replications counted that many
    times): numpy's linear interpolation over ranks, read from the log-spaced histograms (within 0.25%);
    ``hists`` holds the bins from ``first_bin`` on."""
    counts = weights @ hists  # (B, K) pooled counts per bin
    finite = counts.sum(axis=1)
    total = finite + weights @ infs
    rank = (total - 1.0) * q / 100.0  # 0-based rank of the percentile
    cum = np.cumsum(counts, axis=1)
    out = np.full(weights.shape[0], math.inf)
    ok = (rank < finite) & (total > 0)
    if ok.any():
        c = cum[ok]
        r = rank[ok]
        k = np.argmax(c > r[:, None], axis=1)  # the bin holding the rank
        before = np.where(k > 0, c[np.arange(c.shape[0]), k - 1], 0.0)
        in_bin = counts[ok][np.arange(c.shape[0]), k]
        frac = (r - before + 0.5) / in_bin  # position inside the bin, log-uniform
        out[ok] = EDGES[first_bin + k] * np.exp(np.clip(frac, 0.0, 1.0) * BIN)
    out[total == 0] = np.nan
    return out


def _statistics(slo: Slo, samples: Sequence[Sample], weights: np.ndarray) -> np.ndarray:
    """The pooled statistic for each row of ``weights`` (rows: how many times each replication counts)."""
    n = np.array([s.n for s in samples], dtype=float)
    infs = np.array([s.inf for s in samples], dtype=float)
    items = weights @ n
    with np.errstate(invalid="ignore", divide="ignore"):
        if slo.stat is None:
            within = np.array([s.within for s in samples], dtype=float)
            return np.where(items > 0, (weights @ within) / items, np.nan)
        if slo.stat == "mean":
            totals = np.array([s.total for s in samples])
            mean = (weights @ totals) / (items - weights @ infs)
            return np.where(items == 0, np.nan, np.where(weights @ infs > 0, math.inf, mean))
    hists = np.stack([s.hist if s.hist is not None else np.zeros(EDGES.size - 1) for s in samples]).astype(float)
    used = np.flatnonzero(hists.sum(axis=0))
    if used.size == 0:
        return np.where(items > 0, math.inf, np.nan)
    lo_bin, hi_bin = int(used[0]), int(used[-1]) + 1
    sub = hists[:, lo_bin:hi_bin]
    return _pooled_percentiles(sub, infs, weights, float(slo.stat), lo_bin)


def estimate(slo: Slo, samples: Sequence[Sample], attainment: float = 0.9) -> Estimate:
    """Pool ``samples`` (one per replication) of ``slo``; interval and decision (module docstring)."""
    r = len(samples)
    items = sum(s.n for s in samples)
    if r == 0 or items == 0:
        return Estimate(None, None, None, "fails", r, items)
    value = float(_statistics(slo, samples, np.ones((1, r)))[0])
    if r == 1:
        return Estimate(value, None, None, _decide(slo, value, None, None, attainment), r, items)
    rng = np.random.default_rng(zlib.crc32(slo.key.encode()))
    picks = rng.integers(0, r, size=(BOOTSTRAP, r))
    weights = np.zeros((BOOTSTRAP, r))
    np.add.at(weights, (np.repeat(np.arange(BOOTSTRAP), r), picks.ravel()), 1.0)
    boot = _statistics(slo, samples, weights)
    boot = boot[~np.isnan(boot)]
    inflate = math.sqrt(r / (r - 1))
    t2 = t975(r - 1)
    if slo.stat is None:  # a fraction: plain scale, clipped to [0, 1]
        se = float(np.std(boot)) * inflate
        lo, hi = max(0.0, value - t2 * se), min(1.0, value + t2 * se)
    elif not math.isfinite(value):
        lo = float(np.min(boot)) if boot.size else math.inf
        hi = math.inf
    elif value <= 0.0:
        lo = hi = value
    else:
        # Any resample with an infinite statistic leaves the upper side unbounded.
        finite = boot[np.isfinite(boot) & (boot > 0)]
        se = float(np.std(np.log(finite))) * inflate if finite.size > 1 else 0.0
        lo = value * math.exp(-t2 * se)
        hi = math.inf if finite.size < boot.size else value * math.exp(t2 * se)
    return Estimate(value, lo, hi, _decide(slo, value, lo, hi, attainment), r, items)


def _decide(slo: Slo, value: float, lo: float | None, hi: float | None, attainment: float) -> Decision:
    if lo is None or hi is None:  # one replication: no interval, no confident decision either way
        return "marginal"
    if slo.stat is None:
        if lo >= attainment:
            return "meets"
        return "fails" if hi < attainment else "marginal"
    if hi <= slo.target:
        return "meets"
    return "fails" if lo > slo.target else "marginal"


def combine(decisions: Sequence[Decision]) -> Decision:
    """All SLOs of a point: it meets when each meets, fails when any fails, otherwise it is marginal."""
    if any(d == "fails" for d in decisions):
        return "fails"
    if all(d == "meets" for d in decisions):
        return "meets"
    return "marginal"
