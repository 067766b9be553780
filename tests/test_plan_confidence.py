"""How sure a plan is (``agentsim.planning.plan.confidence``): intervals that cover known answers, are never
negative, pool replications exactly as one long run would, and decide meets / fails / marginal as stated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from agentsim.planning.plan.confidence import combine, estimate
from agentsim.planning.plan.slo import parse_slo, percentile, sample


def _case(rng: np.random.Generator) -> tuple[str, float, object, int, int]:
    """A random synthetic case with a known answer: a distribution, a statistic and its true value."""
    kind = rng.choice(["exponential", "lognormal", "gamma"])
    scale = float(rng.uniform(0.05, 5.0))
    if kind == "exponential":
        dist = stats.expon(scale=scale)
    elif kind == "lognormal":
        dist = stats.lognorm(float(rng.uniform(0.3, 1.2)), scale=scale)
    else:
        dist = stats.gamma(float(rng.uniform(0.5, 4.0)), scale=scale)
    stat = str(rng.choice(["p50", "p90", "p99", "mean", "threshold"]))
    if stat == "mean":
        key, truth = "ttft_mean_s", float(dist.mean())
    elif stat == "threshold":
        key, truth = "ttft_s", 0.85  # the fraction within the distribution's 85th percentile
    else:
        key, truth = f"ttft_{stat}_s", float(dist.ppf(float(stat[1:]) / 100))
    target = float(dist.ppf(0.85)) if stat == "threshold" else 1.0
    return key, target, (dist, truth), int(rng.choice([3, 5, 8])), int(rng.integers(300, 3000))


def test_intervals_cover_known_answers() -> None:
    """200 synthetic cases (exponential, lognormal and gamma latencies; p50, p90, p99, mean and threshold
    attainment; 3, 5 or 8 replications of 300-3000 items): at least 93% of the reported 95% intervals contain
    the true value."""
    rng = np.random.default_rng(20261206)
    inside = 0
    for _ in range(200):
        key, target, (dist, truth), reps, n = _case(rng)  # type: ignore[misc]
        slo = parse_slo(key, target)
        e = estimate(slo, [sample(slo, dist.rvs(size=n, random_state=rng)) for _ in range(reps)])
        assert e.lo is not None and e.hi is not None and e.lo >= 0  # never a negative interval
        inside += e.lo <= truth <= e.hi
    assert inside >= 186, f"coverage {inside / 200:.1%}"


def test_pooled_percentile_equals_one_long_run_within_the_bin_width() -> None:
    """Pooling replications gives the percentile of all their items together (read from 0.5% bins: within
    0.25%); infinite items (misses past the target) count at the top."""
    rng = np.random.default_rng(3)
    runs = [rng.lognormal(0.0, 1.0, 2000) for _ in range(4)]
    runs[2] = np.concatenate([runs[2], np.full(30, math.inf)])
    everything = np.concatenate(runs)
    for q in (50.0, 90.0, 99.0):
        slo = parse_slo(f"ttft_p{q:g}_s", 10.0)
        e = estimate(slo, [sample(slo, r) for r in runs])
        assert e.value == pytest.approx(percentile(everything, q), rel=0.0026)
    slo = parse_slo("ttft_p99.9_s", 10.0)  # the top 0.1% is infinite: the statistic is
    assert estimate(slo, [sample(slo, r) for r in runs]).value == math.inf


def test_decisions() -> None:
    rng = np.random.default_rng(5)
    runs = [rng.exponential(1.0, 5000) for _ in range(5)]  # p99 = ln 100 = 4.6
    for target, expected in ((10.0, "meets"), (2.0, "fails"), (4.6, "marginal")):
        slo = parse_slo("ttft_p99_s", target)
        assert estimate(slo, [sample(slo, r) for r in runs]).decision == expected, target
    slo = parse_slo("ttft_p99_s", 10.0)
    assert estimate(slo, [sample(slo, runs[0])]).decision == "marginal"  # one replication: no confidence
    thr = parse_slo("ttft_s", math.log(10))  # 90% of an exponential(1) lies within ln 10
    assert estimate(thr, [sample(thr, r) for r in runs], attainment=0.8).decision == "meets"
    assert estimate(thr, [sample(thr, r) for r in runs], attainment=0.95).decision == "fails"
    assert combine(["meets", "meets"]) == "meets"
    assert combine(["meets", "marginal"]) == "marginal"
    assert combine(["marginal", "fails"]) == "fails"
