"""Dollars and joules: provisioned pool time turned into cost, and each step's cost shared among its calls.

A replica costs ``usd_per_s = gpus * usd_per_gpu_hour / 3600`` whether it works or not, and draws
``busy_w`` while it runs steps and ``idle_w`` otherwise (per-GPU power x GPUs x PUE). The engine gives every
call its share of the replica's busy seconds (each step's time split among the calls in it in proportion to the
tokens each processed), so a call's cost is ``busy_share_s * usd_per_s`` and its energy
``busy_share_s * busy_w``. What no call used is the pool's idle cost. Calls plus idle add up to the provisioned
total exactly (a test checks it).

Pricing (``spec.Rental``): the catalog's $/GPU-hour for a tier (SemiAnalysis InferenceX TCO model), or a given
price. Owned hardware (``spec.Tco``): ``C_hr = (capex * CRF(r, n) + opex) / 8760 + kW_all_in * PUE * $/kWh``
with the capital recovery factor ``CRF(r, n) = r (1+r)^n / ((1+r)^n - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentsim import spec
from agentsim.catalog import Catalog

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True, slots=True)
class PoolRates:
    """Per-replica price and power of one pool."""

    pool: str
    replicas: int
    gpus_per_replica: int
    usd_per_gpu_hour: float
    busy_w_per_replica: float
    idle_w_per_replica: float

    @property
    def usd_per_s(self) -> float:
        """Dollars per second of one replica, provisioned."""
        return self.gpus_per_replica * self.usd_per_gpu_hour / 3600.0


def crf(rate: float, years: float) -> float:
    """Capital recovery factor: the yearly payment that repays 1 over ``years`` at interest ``rate``."""
    if rate == 0:
        return 1.0 / years
    g = float((1.0 + rate) ** years)
    return rate * g / (g - 1.0)


def usd_per_gpu_hour(pricing: spec.PricingSpec, hardware: str, catalog: Catalog) -> float:
    """Fully loaded $/GPU-hour of ``hardware`` under ``pricing``."""
    if isinstance(pricing, spec.Rental):
        if pricing.usd_per_gpu_hour is not None:
            return pricing.usd_per_gpu_hour
        return float(catalog.get_price(hardware).usd_per_hour(pricing.tier))
    kw = pricing.kw_all_in_per_gpu
    if kw is None:
        kw = catalog.get_price(hardware).kw_all_in
    capital = pricing.capex_usd_per_gpu * crf(pricing.interest_rate, pricing.years)
    return float((capital + pricing.opex_usd_per_gpu_year) / HOURS_PER_YEAR + kw * pricing.pue * pricing.usd_per_kwh)


def pool_rates(pool: spec.PoolSpec, pricing: spec.PricingSpec, catalog: Catalog) -> PoolRates:
    """Price and power of one pool's replicas.

    Power: GPUs draw their TDP while running steps and their idle power otherwise, times the facility PUE.
    (The all-in kW of the price table covers host and network too; it is folded into the price, not the
    energy, so energy is the accelerators' draw at the facility meter.)
    """
    hw = catalog.get_hardware(pool.deployment.hardware)
    gpus = pool.deployment.gpus
    return PoolRates(
        pool=pool.name,
        replicas=pool.replicas,
        gpus_per_replica=gpus,
        usd_per_gpu_hour=usd_per_gpu_hour(pricing, pool.deployment.hardware, catalog),
        busy_w_per_replica=gpus * hw.tdp_w * pricing.pue,
        idle_w_per_replica=gpus * hw.idle_w * pricing.pue,
    )


def attach_call_costs(calls: pa.Table, rates: list[PoolRates]) -> pa.Table:
    """Add ``usd`` and ``energy_j`` to the calls table: each call's busy share on its replica, and on its
    prefill replica when it was disaggregated, priced at that replica's pool rates."""
    usd_s = {r.pool: r.usd_per_s for r in rates}
    watts = {r.pool: r.busy_w_per_replica for r in rates}

    def per_call(pool_col: str, busy_col: str, table: dict[str, float]) -> np.ndarray:
        pools = calls.column(pool_col).to_pylist()
        busy = calls.column(busy_col).to_numpy(zero_copy_only=False)
        rate = np.array([table.get(p, 0.0) if p is not None else 0.0 for p in pools], dtype=float)
        return np.asarray(busy * rate, dtype=float)

    usd = per_call("pool", "busy_s", usd_s) + per_call("prefill_pool", "prefill_busy_s", usd_s)
    energy = per_call("pool", "busy_s", watts) + per_call("prefill_pool", "prefill_busy_s", watts)
    calls = calls.append_column("usd", pa.array(usd))
    return calls.append_column("energy_j", pa.array(energy))


def attach_task_costs(tasks: pa.Table, calls: pa.Table) -> pa.Table:
    """Add ``usd`` and ``energy_j`` to the tasks table: the sums over each task's calls."""
    n = tasks.num_rows
    if n == 0 or calls.num_rows == 0:
        return tasks.append_column("usd", pa.array(np.zeros(n))).append_column("energy_j", pa.array(np.zeros(n)))
    grouped = calls.group_by("task_id").aggregate([("usd", "sum"), ("energy_j", "sum")])
    index = pc.index_in(tasks.column("task_id"), grouped.column("task_id"))
    usd = pc.fill_null(pc.take(grouped.column("usd_sum"), index), 0.0)
    energy = pc.fill_null(pc.take(grouped.column("energy_j_sum"), index), 0.0)
    return tasks.append_column("usd", usd).append_column("energy_j", energy)
