"""Named random streams, and the cost formulas (capital recovery, TCO, rental prices from the catalog)."""

from __future__ import annotations

import numpy as np
import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.resolve import crf, pool_rates, usd_per_gpu_hour
from agentsim.rng import Streams


def test_streams_are_reproducible_and_independent_of_each_other() -> None:
    a = Streams(7).get("arrivals/chat").random(5)
    s = Streams(7)
    s.get("something-else").random(1000)  # consuming another stream must not shift this one
    b = s.get("arrivals/chat").random(5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, Streams(8).get("arrivals/chat").random(5))
    assert not np.array_equal(a, Streams(7).get("arrivals/code").random(5))


def test_crf_matches_annuity_formula() -> None:
    # 8% over 4 years: 0.08 * 1.08^4 / (1.08^4 - 1) = 0.301921...
    assert crf(0.08, 4) == pytest.approx(0.08 * 1.08**4 / (1.08**4 - 1))
    assert crf(0.0, 4) == pytest.approx(0.25)
    # Paying crf per year for n years repays the principal at rate r (present value = 1).
    r, n = 0.1, 5
    assert sum(crf(r, n) / (1 + r) ** k for k in range(1, n + 1)) == pytest.approx(1.0)


def test_tco_price_per_hour() -> None:
    cat = load_catalog()
    t = spec.Tco(capex_usd_per_gpu=30_000, years=4, interest_rate=0.0, opex_usd_per_gpu_year=876,
                 kw_all_in_per_gpu=2.0, pue=1.25, usd_per_kwh=0.1)
    # capital 30000/4 per year + 876 opex = 8376 per year = 0.956 $/h; power 2 kW x 1.25 x 0.1 = 0.25 $/h
    assert usd_per_gpu_hour(t, "h100", cat) == pytest.approx(8376 / 8760 + 0.25)


def test_rental_prices_come_from_the_research_table() -> None:
    cat = load_catalog()
    # research.md section 3 (SemiAnalysis InferenceX TCO model), 3-year rental column
    for hw, usd in {"h100": 1.30, "h200": 1.60, "b200": 2.90, "mi300x": 1.55}.items():
        assert usd_per_gpu_hour(spec.Rental(), hw, cat) == pytest.approx(usd)
    assert usd_per_gpu_hour(spec.Rental(usd_per_gpu_hour=4.2), "h100", cat) == 4.2


def test_pool_rates_scale_with_gpus() -> None:
    cat = load_catalog()
    pool = spec.PoolSpec(name="p", replicas=3,
                         deployment=spec.Deployment(model="llama-3.3-70b", hardware="h200", tp=4))
    r = pool_rates(pool, spec.Rental(), cat)
    assert r.usd_per_s == pytest.approx(4 * 1.60 / 3600)
    h200 = cat.get_hardware("h200")
    assert r.busy_w_per_replica == pytest.approx(4 * h200.tdp_w * 1.3)
    assert r.idle_w_per_replica == pytest.approx(4 * h200.idle_w * 1.3)
