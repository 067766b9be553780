"""Distributions: a list of values summarized as its mean and percentiles, and durations with some items still
running at the horizon (right-censored) summarized by the Kaplan-Meier estimate.

:func:`dist` and :func:`censored_dist` take arrays; :func:`dist_of` and :func:`censored_dist_of` take the values
of an :class:`~agentsim.analysis.order.Ordered` (a run's column read from its file), kept as one array when
they are few and streamed in bounded memory otherwise, with the same figures (``docs/METRICS.md``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from agentsim.analysis.order import Ordered
from agentsim.analysis.survival import StreamedCurve, area_above, kaplan_meier

PERCENTILES = (50, 90, 99)


def dist(
    values: np.ndarray, *, overwrite: bool = False, percentiles: tuple[int, ...] = PERCENTILES
) -> dict[str, float | None]:
    """``mean`` and the ``percentiles`` (default ``p50, p90, p99``; and ``n``) of ``values``; nulls when there
    are none. ``overwrite``: ``values`` may be reordered (a temporary of the caller's: no copy is made of it)."""
    nan = np.isnan(values)
    v = values[~nan] if values.size and (not overwrite or nan.any()) else values
    del nan
    if v.size == 0:
        return {"n": 0, "mean": None, **{f"p{p}": None for p in percentiles}}
    out: dict[str, float | None] = {"n": int(v.size), "mean": float(v.mean())}  # before any reordering
    q = np.percentile(v, percentiles, overwrite_input=overwrite or v is not values)
    for p, x in zip(percentiles, q, strict=True):
        out[f"p{p}"] = float(x)
    return out


def censored_dist(
    done: np.ndarray, censored: np.ndarray, *, overwrite: bool = False, percentiles: tuple[int, ...] = PERCENTILES
) -> dict[str, Any]:
    """A duration distribution when some items were still running at the horizon: ``done`` holds the durations
    that finished, ``censored`` the ages reached by those that did not (their durations are at least that).
    ``overwrite``: ``done`` may be reordered (a temporary of the caller's).

    Without censored items this is :func:`dist` (numpy's percentiles), plus ``censored: 0``. With them, the
    distribution is the Kaplan-Meier estimate (``scipy.stats.ecdf`` on right-censored data, computed in less
    memory by :mod:`agentsim.analysis.survival`): a percentile the estimate reaches is its first duration with
    ``F >= p``; one it does not reach (too many items still running) is reported as a lower bound, the
    percentile with every censored item counted at its age, and named in ``lower_bounds``. The mean is the area
    under the estimated survival curve (a lower bound, and named so, when the longest item is still running).
    Counting only finished items instead would drop exactly the long ones."""
    censored = censored[~np.isnan(censored)]
    if censored.size == 0:
        return {**dist(done, overwrite=overwrite, percentiles=percentiles), "censored": 0}
    finite = done.size - int(np.count_nonzero(np.isnan(done)))
    if overwrite:
        done.sort()  # NaN last
        done = done[:finite]
    else:
        done = np.sort(done[~np.isnan(done)])
    out: dict[str, Any] = {"n": int(done.size), "censored": int(censored.size)}
    lower: list[str] = []
    if done.size == 0:  # nothing finished: every statistic is at least the imputed one
        both = censored
        out["mean"] = float(both.mean())
        for p, x in zip(percentiles, np.percentile(both, percentiles), strict=True):
            out[f"p{p}"] = float(x)
        out["lower_bounds"] = ["mean", *(f"p{p}" for p in percentiles)]
        out["estimator"] = "lower bound"
        return out
    times, probs = kaplan_meier(done, np.sort(censored))
    for p in percentiles:
        reached = probs >= p / 100.0 - 1e-12
        if reached.any():
            out[f"p{p}"] = float(times[int(reached.argmax())])
        else:  # the durations in any order: a percentile does not depend on it
            out[f"p{p}"] = float(np.percentile(np.concatenate([done, censored]), p, overwrite_input=True))
            lower.append(f"p{p}")
        del reached
    last = times[-1]
    out["mean"] = area_above(times, probs, overwrite=True)
    del times, probs
    if censored.max() >= last:
        lower.insert(0, "mean")
    out["lower_bounds"] = lower
    out["estimator"] = "kaplan-meier"
    return out


def dist_of(o: Ordered, percentiles: tuple[int, ...] = PERCENTILES) -> dict[str, float | None]:
    """:func:`dist` of the values of ``o`` (numpy's figures, bit for bit, however many there are)."""
    if o.kept is not None:
        return dist(o.kept, overwrite=True, percentiles=percentiles)
    out: dict[str, float | None] = {"n": o.n, "mean": o.mean()}
    for p, x in zip(percentiles, o.percentiles(percentiles), strict=True):
        out[f"p{p}"] = x
    return out


def censored_dist_of(o: Ordered, censored: np.ndarray, percentiles: tuple[int, ...] = PERCENTILES) -> dict[str, Any]:
    """:func:`censored_dist` of the finished durations ``o`` and the ages ``censored`` of the items still
    running (few: they are live), with the finished ones streamed in order when there are too many to hold
    (:class:`~agentsim.analysis.survival.StreamedCurve`: the same Kaplan-Meier product)."""
    if o.kept is not None:
        return censored_dist(o.kept, censored, overwrite=True, percentiles=percentiles)
    censored = np.sort(censored[~np.isnan(censored)])
    if censored.size == 0:
        return {**dist_of(o, percentiles), "censored": 0}
    curve = StreamedCurve(o.blocks(), o.n, censored, [p / 100.0 for p in percentiles])
    out: dict[str, Any] = {"n": o.n, "censored": int(censored.size)}
    lower: list[str] = []
    both: Ordered | None = None
    for p in percentiles:
        x = curve.first.get(p / 100.0)
        if x is None:  # not reached: the percentile with every censored item at its age, a lower bound
            if both is None:
                both = Ordered(lambda: itertools.chain(o.source(), [censored]), None, cap=o.cap, tempdir=o.tempdir)
            x = both.percentiles([p])[0]
            lower.append(f"p{p}")
        out[f"p{p}"] = x
    out["mean"] = curve.area
    if censored[-1] >= curve.last:
        lower.insert(0, "mean")
    out["lower_bounds"] = lower
    out["estimator"] = "kaplan-meier"
    return out
