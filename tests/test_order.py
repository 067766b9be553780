"""Order statistics in bounded memory (agentsim.analysis.order, survival.StreamedCurve): the same figures as numpy
and scipy, bit for bit where the docstrings say so, whatever the cap, and memory that does not grow with the
number of values."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from scipy import stats

from agentsim.analysis import order
from agentsim.analysis.order import Ordered, interpolate, keys
from agentsim.analysis.survival import StreamedCurve, area_above, kaplan_meier

PS = [0, 1, 2.5, 50, 90, 95, 99, 99.9, 100]


def samples(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    """Values of several shapes: continuous, heavy ties, one value repeated, tiny and negative, near-equal."""
    if kind == 0:
        return rng.exponential(1.0, n)
    if kind == 1:
        return rng.integers(0, 20, n).astype(float)
    if kind == 2:
        return np.concatenate([np.full(n, 3.5), rng.normal(0, 1, 10)])
    if kind == 3:
        return rng.normal(0, 1e-300, n)
    return 1.0 + rng.integers(0, 5, n) * 1e-15


def test_keys_order_floats_as_numbers() -> None:
    v = np.array([-np.inf, -1e300, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e300, np.inf])
    k = keys(v)
    assert (np.diff(k.astype(object)) >= 0).all()
    assert k[4] == k[5]  # -0.0 == 0.0
    assert (np.diff(k[5:].astype(object)) > 0).all() and (np.diff(k[:5].astype(object)) > 0).all()


def test_interpolate_is_numpy_percentile_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    for trial in range(500):
        n = int(rng.integers(1, 400))
        v = samples(rng, trial % 5, n)
        ps = sorted(rng.uniform(0, 100, 5).tolist()) + PS
        s = np.sort(v)
        got = interpolate(v.size, ps, lambda r, s=s: s[r])
        assert got.tolist() == np.percentile(v, ps).tolist()


@pytest.mark.parametrize("kind", range(5))
def test_ordered_with_a_small_cap_is_numpy(kind: int) -> None:
    rng = np.random.default_rng(kind)
    for _ in range(40):
        v = samples(rng, kind, int(rng.integers(1, 3000)))
        chunks = np.array_split(v, 7)
        cap = int(rng.integers(1, 60))
        o = Ordered(lambda chunks=chunks: iter(chunks), None, cap=cap)
        assert o.kept is None or v.size <= cap
        assert o.n == v.size
        assert o.percentiles(PS) == np.percentile(v, PS).tolist()
        blocks = list(o.blocks())
        assert all(0 < b.size <= cap for b in blocks)
        assert np.array_equal(np.concatenate(blocks), np.sort(v))
        mean = o.mean()
        assert mean is not None and abs(mean - v.mean()) <= 1e-14 * max(1.0, abs(v.mean()))


def test_ordered_keeps_what_fits_as_before() -> None:
    v = np.random.default_rng(2).exponential(1.0, 1000)
    o = Ordered(lambda: iter(np.array_split(v, 3)), rows=1000, cap=1000)
    assert o.kept is not None and o.mean() == v.mean() and o.percentiles(PS) == np.percentile(v, PS).tolist()
    empty = Ordered(lambda: iter([np.empty(0)]), rows=5)
    assert empty.n == 0 and empty.mean() is None and list(empty.blocks()) == []


def scipy_km(done: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    res = stats.ecdf(stats.CensoredData(uncensored=done, right=censored))
    return res.cdf.quantiles, res.cdf.probabilities


def test_streamed_kaplan_meier_is_scipys() -> None:
    rng = np.random.default_rng(3)
    for trial in range(120):
        done = np.abs(samples(rng, trial % 3, int(rng.integers(1, 2000))))
        censored = np.sort(np.abs(rng.normal(2, 1, int(rng.integers(1, 60)))))
        if trial % 4 == 0:
            censored = np.concatenate([censored, done[: min(5, done.size)]])  # ties with finished durations
            censored.sort()
        cap = int(rng.integers(1, 80))
        o = Ordered(lambda done=done: iter(np.array_split(done, 5)), None, cap=cap)
        probs = [0.5, 0.9, 0.95, 0.99]
        curve = StreamedCurve(o.blocks(), o.n, censored, probs)
        t, cdf = scipy_km(done, censored)
        mine_t, mine_cdf = kaplan_meier(np.sort(done), censored)
        assert np.array_equal(mine_t, t) and np.array_equal(mine_cdf, cdf)
        for p in probs:
            reached = cdf >= p - 1e-12
            assert curve.first.get(p) == (float(t[int(reached.argmax())]) if reached.any() else None)
        assert curve.last == t[-1]
        area = area_above(t, cdf)
        assert abs(curve.area - area) <= 1e-13 * abs(area)


def generated(n: int, chunk: int = 1 << 15) -> Iterator[np.ndarray]:
    """``n`` lognormal values, made a chunk at a time (never all at once)."""
    rng = np.random.default_rng(7)
    for a in range(0, n, chunk):
        yield rng.lognormal(0.0, 1.0, min(chunk, n - a))


def traced_peak(n: int) -> tuple[int, list[float], float | None, dict[float, float]]:
    """Percentiles, mean and a Kaplan-Meier curve of ``n`` generated values, and numpy's peak memory for them."""
    tracemalloc.start()
    try:
        o = Ordered(lambda: generated(n), rows=n)
        got = o.percentiles(PS)
        last, count = -np.inf, 0
        for b in o.blocks():
            assert b[0] >= last and b.size <= order.CAP
            last, count = b[-1], count + b.size
        assert count == n
        curve = StreamedCurve(o.blocks(), o.n, np.array([5.0, 50.0]), [0.5, 0.99])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, got, o.mean(), curve.first


def test_memory_is_bounded_by_the_cap(monkeypatch: Any) -> None:
    """One and two million values (8 and 16 MB) with a cap of 2**16 values (0.5 MB): the percentiles, the
    blocks in order and the Kaplan-Meier curve hold the same few caps whatever the count (numpy's allocations,
    as tracemalloc sees them), and the figures are numpy's."""
    monkeypatch.setattr(order, "CAP", 1 << 16)
    small, _, _, _ = traced_peak(1_000_000)
    n = 2_000_000
    peak, got, mean, first = traced_peak(n)
    whole = np.concatenate(list(generated(n)))
    assert got == np.percentile(whole, PS).tolist()
    assert mean is not None and abs(mean - whole.mean()) <= 1e-14 * whole.mean()
    assert first[0.5] == pytest.approx(float(np.median(whole)), rel=1e-3)  # two censored of two million
    assert peak <= 1.15 * small, f"{peak / 1e6:.1f} MB for 2M values against {small / 1e6:.1f} MB for 1M"
    assert peak < whole.nbytes / 2, f"{peak / 1e6:.1f} MB held for {whole.nbytes / 1e6:.0f} MB of values"


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal summaries: every count, percentile and verdict the same; a mean to a few units in the last place
    (the mean of more values than the cap is an exactly rounded sum of per-chunk sums, not numpy's)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and path.endswith(".mean"):
        assert b == pytest.approx(a, rel=1e-12), path
    else:
        assert a == b, path


def test_summary_with_a_tiny_cap_is_the_summary(monkeypatch: Any) -> None:
    """The default example (percentile SLOs, calls and tasks running at the horizon: Kaplan-Meier) summarized
    keeping every column, and again with a cap of 50 values (every distribution streamed in order, every
    percentile selected a bin at a time): the same summary and warnings."""
    import agentsim
    from agentsim.analysis.metrics import summarize
    from agentsim.analysis.tables import ParquetColumns
    from agentsim.analysis.warnings import collect
    from agentsim.resolve import resolve

    s = agentsim.load_scenario(agentsim.default_scenario(), ["horizon_s=1500", "warmup_s=300"])
    r = agentsim.api.run(s)
    files = r.files()
    tables = [ParquetColumns(files[name]) for name in ("calls", "tasks", "replicas")]
    rates = resolve(s).rates
    whole = summarize(s, *tables, rates)
    assert whole["ttft_s"]["censored"] > 0 and whole["task_s"]["censored"] > 0
    monkeypatch.setattr(order, "CAP", 50)
    streamed = summarize(s, *tables, rates)
    close(whole, streamed)
    assert collect(whole, s, *tables) == collect(streamed, s, *tables)
    # The noise-floor warning's per-batch percentiles (no noise_floor warning here, so the comparison above does
    # not reach them): each batch's and the window's streamed p99 is numpy's over the same filtered calls.
    from agentsim.analysis.slo import target_values

    calls = r.calls
    issue = calls.column("issue_s").to_numpy()
    first = calls.column("first_token_s").to_numpy(zero_copy_only=False)
    workload = np.asarray(calls.column("workload").to_pylist())
    label = s.workload[0].label
    for window in (None, (300.0, 600.0), (900.0, 1200.0)):
        keep = (issue >= s.warmup_s) & (workload == label)
        if window is not None:
            keep &= (issue >= window[0]) & (issue < window[1])
        ttft = (first - issue)[keep]
        ttft = ttft[np.isfinite(ttft)]
        streamed_p99 = target_values(tables[0], tables[1], "ttft_p99_s", label, s.warmup_s, window)
        assert streamed_p99.n == ttft.size > 50
        assert streamed_p99.percentiles([99])[0] == np.percentile(ttft, 99)
