"""Arrival processes against renewal theory.

Counts of a stationary renewal process with rate λ and gap CV c over a long window T have mean exactly λT
and variance ≈ c² λT; gaps have mean 1/λ and second moment (1 + c²)/λ². The time from an arbitrary instant to
the next arrival (the equilibrium residual) has mean (1 + c²) / (2λ). Tolerances: Z standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentsim.spec import Closed, Exponential, GammaArrivals, Poisson
from agentsim.workload.arrivals import (
    OpenArrivals,
    arrival_array,
    arrival_times,
    start_offsets,
    think_times,
)

Z = 5.0

SPECS = [
    Poisson(rate_per_s=20.0),
    GammaArrivals(rate_per_s=20.0, cv=0.3),
    GammaArrivals(rate_per_s=20.0, cv=1.0),
    GammaArrivals(rate_per_s=20.0, cv=3.0),
]


def _cv(spec: Poisson | GammaArrivals) -> float:
    return 1.0 if isinstance(spec, Poisson) else spec.cv


def assert_mean_in_ci(x: np.ndarray, expected: float, what: str) -> None:
    se = float(np.std(x, ddof=1)) / math.sqrt(len(x))
    assert abs(float(np.mean(x)) - expected) <= Z * se, f"{what}: {np.mean(x)} vs {expected} (se {se})"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-cv{_cv(s)}")
def test_rate_and_gap_cv(spec: Poisson | GammaArrivals) -> None:
    rng = np.random.default_rng(1)
    horizon = 10_000.0  # ~200k arrivals
    t = arrival_array(spec, rng, horizon)
    lam, c = spec.rate_per_s, _cv(spec)
    expected = lam * horizon
    assert abs(len(t) - expected) <= Z * math.sqrt(c * c * expected) + 1
    gaps = np.diff(t)
    assert_mean_in_ci(gaps, 1.0 / lam, "gap mean")
    assert_mean_in_ci(gaps * gaps, (1.0 + c * c) / lam**2, "gap second moment")


@pytest.mark.parametrize("spec", SPECS[1:], ids=lambda s: f"cv{_cv(s)}")
def test_stationary_from_time_zero(spec: GammaArrivals) -> None:
    """The first arrival is an equilibrium residual, so short windows at t=0 already have rate λ."""
    rng = np.random.default_rng(2)
    lam, c = spec.rate_per_s, spec.cv
    reps = 8_000
    window = 1.0 / lam
    firsts = np.empty(reps)
    counts = np.empty(reps)
    for i in range(reps):
        a = OpenArrivals(spec, rng, block=8)
        firsts[i] = a.next()
        counts[i] = len(a.until(window)) + (firsts[i] < window)
    assert_mean_in_ci(firsts, (1.0 + c * c) / (2.0 * lam), "first arrival")
    assert_mean_in_ci(counts, lam * window, "arrivals in the first mean gap")


def test_iterator_and_array_agree_and_respect_the_window() -> None:
    spec = GammaArrivals(rate_per_s=5.0, cv=2.0)
    it = list(arrival_times(spec, np.random.default_rng(9), horizon_s=300.0, start_s=100.0))
    arr = arrival_array(spec, np.random.default_rng(9), horizon_s=300.0, start_s=100.0)
    assert it == arr.tolist()
    assert len(it) > 500
    assert min(it) >= 100.0 and max(it) < 300.0
    assert np.all(np.diff(arr) >= 0)


def test_blocks_do_not_change_the_stream() -> None:
    spec = Poisson(rate_per_s=3.0)
    a = OpenArrivals(spec, np.random.default_rng(4), block=7)
    b = OpenArrivals(spec, np.random.default_rng(4), block=7)
    first = [a.next() for _ in range(20)]
    rest = a.until(40.0)
    assert first + rest.tolist() == list(b.until(40.0))


def test_closed_start_offsets() -> None:
    rng = np.random.default_rng(0)
    assert np.array_equal(start_offsets(Closed(agents=5), rng), np.zeros(5))
    offs = start_offsets(Closed(agents=50_000, ramp_s=60.0), rng)
    assert offs.shape == (50_000,)
    assert offs.min() >= 0.0 and offs.max() < 60.0
    assert_mean_in_ci(offs, 30.0, "ramp offsets")


def test_closed_think_times() -> None:
    spec = Closed(agents=3, think_s=Exponential(mean=4.0))
    it = think_times(spec, np.random.default_rng(0))
    x = np.array([next(it) for _ in range(50_000)])
    assert_mean_in_ci(x, 4.0, "think time")
    zero = think_times(Closed(agents=1), np.random.default_rng(0))
    assert next(zero) == 0.0
