"""Service-level objectives: their grammar, the values a run gives for each, and what one replication reports.

A key is ``<metric>_<statistic>_s`` or ``<metric>_s``, its value a target in seconds:

- ``metric``: ``ttft`` (time to first token of a call), ``tpot`` (time per output token after the first),
  ``e2e`` (a call's end-to-end time), ``task`` (a task's duration, ``done_s - start_s``);
- ``statistic``: ``pNN`` or ``pNN.N`` (that percentile; ``ttft_p99_s``, ``task_p95_s``, ``tpot_p99.9_s``) or
  ``mean``; the target holds when the statistic is ``<=`` the value;
- no statistic (``ttft_s=2``, ``task_s=900``): a per-item threshold; it holds when the fraction of items within
  it is at least the plan's ``attainment`` (default 0.9).

Values are taken over the summary's window (calls issued and tasks started at or after ``warmup_s``, all
workloads pooled). Work unfinished at the horizon is not dropped: an item that has already taken longer than
the target by ``horizon_s`` counts as an infinite value (a certain miss), so an overloaded cluster whose long
tasks never finish cannot pass on the few short ones that did; an unfinished item still within its target has
an unknown outcome and is left out.

A replication reports each SLO as a :class:`Sample`: for a percentile, a histogram of its finite values on a
fixed logarithmic grid (:data:`EDGES`: 0.5% wide bins from 10 us to 10^6 s, so a percentile read from it is
within 0.25% of the exact one) plus the count of infinite values; for a mean, the sum and count; for a
threshold, the count within the target and the count of items. Pooling replications and resampling them
(:mod:`agentsim.planning.plan.confidence`) needs only these.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agentsim import spec
from agentsim.analysis.rows import col, e2e_of, tpot_of, ttft_of
from agentsim.analysis.tables import Table

_SLO_KEY = re.compile(r"^(ttft|tpot|e2e|task)(?:_(mean|p(\d+(?:\.\d+)?)))?_s$")

LOG_MIN, LOG_MAX, BIN = math.log(1e-5), math.log(1e6), 0.005
EDGES = np.exp(np.arange(LOG_MIN, LOG_MAX + BIN, BIN))
"""Bin edges (seconds) of a percentile SLO's histogram: 0.5% apart; values below the first edge fall in the
first bin, above the last in the last."""


@dataclass(frozen=True)
class Slo:
    """One parsed SLO: ``metric`` in ``ttft, tpot, e2e, task``; ``stat`` ``"mean"``, a percentile (float) or
    ``None`` for a threshold with attainment; ``target`` in seconds."""

    key: str
    metric: str
    stat: float | Literal["mean"] | None
    target: float


def parse_slo(key: str, target: float) -> Slo:
    """Parse one SLO key (see the module docstring); ``ValueError`` naming the grammar if it does not match."""
    m = _SLO_KEY.match(key)
    if m is None:
        raise ValueError(
            f"unknown SLO {key!r}: expected <metric>_<stat>_s or <metric>_s with metric in ttft, tpot, e2e, "
            "task and stat mean or pNN (ttft_p99_s, task_p95_s, tpot_mean_s, ttft_s)"
        )
    if isinstance(target, bool) or not (isinstance(target, int | float) and math.isfinite(target) and target > 0):
        raise ValueError(f"SLO {key}: the target must be a positive number of seconds, got {target!r}")
    stat: float | Literal["mean"] | None
    if m.group(2) is None:
        stat = None
    elif m.group(2) == "mean":
        stat = "mean"
    else:
        stat = float(m.group(3))
        if not 0 < stat < 100:
            raise ValueError(f"SLO {key}: the percentile must be in (0, 100)")
    return Slo(key, m.group(1), stat, float(target))


def percentile(values: np.ndarray, q: float) -> float:
    """numpy's linear-interpolation percentile, with ``inf`` values allowed (numpy would give NaN)."""
    v = np.sort(values)
    h = (v.size - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, v.size - 1)
    a, b = float(v[lo]), float(v[hi])
    frac = h - lo
    if frac == 0.0 or a == b:
        return a
    if math.isinf(b):
        return math.inf
    return a + (b - a) * frac


def values(slo: Slo, scenario: spec.Scenario, calls: Table, tasks: Table) -> np.ndarray:
    """The window values of an SLO's metric: finished ones, plus ``inf`` for unfinished items already past the
    target at the horizon."""
    t0, t1 = scenario.warmup_s, scenario.horizon_s
    if slo.metric == "task":
        start = col(tasks, "start_s")
        w = start >= t0
        done = col(tasks, "done_s")[w]
        start = start[w]
        finished = ~np.isnan(done)
        late = ~finished & (t1 - start > slo.target)
        return np.concatenate([(done - start)[finished], np.full(int(late.sum()), math.inf)])
    issue = col(calls, "issue_s")
    w = issue >= t0
    # only the latency this SLO is on: each reads its own columns from the run's files
    v = {"ttft": ttft_of, "e2e": e2e_of, "tpot": tpot_of}[slo.metric](calls)[w]
    issue = issue[w]
    known = ~np.isnan(v)
    if slo.metric in ("ttft", "e2e"):
        late = ~known & (t1 - issue > slo.target)
    else:  # tpot: an unfinished call whose decode so far already averages above the target will miss it
        first = col(calls, "first_token_s")[w]
        out = col(calls, "output_tokens")[w]
        done = col(calls, "done_s")[w]
        with np.errstate(invalid="ignore", divide="ignore"):
            so_far = (t1 - first) / (out - 1)
        late = np.isnan(done) & ~np.isnan(first) & (out > 1) & (so_far > slo.target)
    return np.concatenate([v[known], np.full(int(late.sum()), math.inf)])


def statistic(slo: Slo, v: np.ndarray) -> float | None:
    """The SLO's statistic of ``v`` (for a threshold: the fraction within the target); None if empty."""
    if v.size == 0:
        return None
    if slo.stat is None:
        return float(np.count_nonzero(v <= slo.target) / v.size)
    if slo.stat == "mean":
        return math.inf if np.isinf(v).any() else float(v.mean())
    return percentile(v, slo.stat)


@dataclass(frozen=True)
class Sample:
    """What one replication reports of one SLO (module docstring): ``n`` items, of which ``inf`` infinite;
    ``hist`` (percentiles: counts of the finite values per :data:`EDGES` bin), ``total`` (means: the sum of the
    finite values), ``within`` (thresholds: items within the target); ``exact`` is the replication's own
    statistic, computed from its values."""

    n: int
    inf: int
    exact: float | None
    hist: np.ndarray | None = None
    total: float = 0.0
    within: int = 0


def sample(slo: Slo, v: np.ndarray) -> Sample:
    """One replication's :class:`Sample` of ``slo`` from its values."""
    finite = v[np.isfinite(v)]
    n_inf = int(v.size - finite.size)
    exact = statistic(slo, v)
    if slo.stat is None:
        return Sample(int(v.size), n_inf, exact, within=int(np.count_nonzero(v <= slo.target)))
    if slo.stat == "mean":
        return Sample(int(v.size), n_inf, exact, total=float(finite.sum()))
    idx = np.clip(np.searchsorted(EDGES, finite, side="right") - 1, 0, EDGES.size - 2)
    hist = np.bincount(idx, minlength=EDGES.size - 1).astype(np.int64)
    return Sample(int(v.size), n_inf, exact, hist=hist)
