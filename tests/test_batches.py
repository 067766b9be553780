"""Batch means (``agentsim.analysis.batches``): the intervals and tests behind ``compare`` and ``noise_floor``.

Checked against the mathematics, not against printed numbers: Welch's test on independent batches rejects a
true equality about ``ALPHA`` of the time and finds a two-standard-deviation shift almost always; on an AR(1)
series (correlated like the calls of a queue) batch-means intervals of the mean cover it about 95% of the time,
where the textbook interval that treats every sample as independent covers it far less often.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy import stats

from agentsim.analysis import batches


def binomial_band(n: int, p: float) -> tuple[float, float]:
    """The central 99.9% range of a Binomial(n, p) proportion."""
    lo, hi = stats.binom.ppf([0.0005, 0.9995], n, p)
    return lo / n, hi / n


def test_welch_on_batches_rejects_a_true_equality_at_alpha() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    rejected = sum(bool(batches.significant(rng.normal(5, 2, 10), rng.normal(5, 2, 10))) for _ in range(n))
    lo, hi = binomial_band(n, batches.ALPHA)
    assert lo <= rejected / n <= hi


def test_welch_on_batches_finds_a_real_shift() -> None:
    rng = np.random.default_rng(2)
    found = [batches.significant(rng.normal(0, 1, 10), rng.normal(2, 1, 10)) for _ in range(500)]
    # Welch's power at a 2-sd shift with 10 + 10 batches is about 0.98 (noncentral t, df ~ 18).
    assert np.mean(found) > 0.95


def test_significant_needs_batches_and_handles_constants() -> None:
    assert batches.significant(np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0])) is None
    assert batches.significant(np.array([1.0, np.nan, 2.0, np.nan]), np.ones(5)) is None  # two finite batches
    assert batches.significant(np.full(5, 3.0), np.full(5, 3.0)) is False  # same price, no difference
    assert batches.significant(np.full(5, 3.0), np.full(5, 4.0)) is True  # a different price is one


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(0, 1, n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi**2)  # stationary start
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_batch_means_interval_covers_a_correlated_mean() -> None:
    """AR(1) with phi = 0.9 (mean 0): 10 batches of 2,000 samples are nearly independent, so the t interval on
    batch means covers 0 about 95% of the time; the iid interval on the 20,000 samples is ~4.4x too narrow
    (sqrt((1 + phi) / (1 - phi))) and covers it about 35% of the time."""
    rng = np.random.default_rng(3)
    n, reps = 20_000, 300
    times = np.arange(n, dtype=float)
    edges = np.linspace(0, n, batches.BATCHES + 1)
    hits = naive = 0
    for _ in range(reps):
        x = ar1(rng, n, 0.9)
        half = batches.half_width(batches.per_batch(x, times, edges, np.mean))
        assert half is not None
        hits += abs(x.mean()) <= half
        naive += abs(x.mean()) <= 1.96 * x.std(ddof=1) / np.sqrt(n)
    lo, hi = binomial_band(reps, 0.95)
    assert lo - 0.03 <= hits / reps <= hi  # batches of 2,000 at phi 0.9 keep a little correlation
    assert naive / reps < 0.6


def test_edges_follow_the_sampling_grid() -> None:
    t = np.repeat(np.arange(0.0, 101.0), 2)  # two replicas sampled every second
    replicas = pa.table({"t_s": t})
    e = batches.edges(replicas, 20.0, 100.0)
    assert e.size == batches.BATCHES + 1 and e[0] == 20.0 and e[-1] == 100.0
    assert np.all(np.isin(e, t)) and np.allclose(np.diff(e), 8.0)
    assert batches.edges(replicas, 20.0, 25.0).size == 6  # coarser than 10 batches: every sample
    assert batches.edges(pa.table({"t_s": pa.array([], pa.float64())}), 0.0, 1.0).size == 0
