"""Dollars and joules: provisioned pool time turned into cost, and each step's cost shared among its calls.

A replica costs ``usd_per_s = gpus * usd_per_gpu_hour / 3600`` whether it works or not. It draws TDP in steps
that compute prompt tokens, ``decode_power_fraction x TDP`` in decode-only steps (memory-bound: Splitwise measured
~380 W vs ~700 W on H100) and its idle power otherwise (per-GPU power x GPUs x PUE). The engine gives every
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

from agentsim import spec
from agentsim.catalog import Catalog
from agentsim.engine.records import number_tasks

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True, slots=True)
class PoolRates:
    """Per-replica price and power of one pool. The tool pool is one "replica" of ``workers`` CPU cores
    (``gpus_per_replica = 0``, ``usd_per_gpu_hour = None``)."""

    pool: str
    replicas: int
    gpus_per_replica: int
    usd_per_gpu_hour: float | None
    usd_per_replica_hour: float
    busy_w_per_replica: float
    idle_w_per_replica: float
    role: str = "unified"
    workers: int = 1
    decode_w_per_replica: float = -1.0  # power in decode-only steps; < 0 means the same as busy_w_per_replica

    def __post_init__(self) -> None:
        if self.decode_w_per_replica < 0:
            object.__setattr__(
                self, "decode_w_per_replica", self.busy_w_per_replica
            )  # tool pool: worker cores in the unit (a task's tool time is counted in worker-seconds)

    @property
    def usd_per_s(self) -> float:
        """Dollars per second of one replica, provisioned."""
        return self.usd_per_replica_hour / 3600.0


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
    price = usd_per_gpu_hour(pricing, pool.deployment.hardware, catalog)
    return PoolRates(
        pool=pool.name,
        replicas=pool.replicas,
        gpus_per_replica=gpus,
        usd_per_gpu_hour=price,
        usd_per_replica_hour=gpus * price,
        busy_w_per_replica=gpus * hw.tdp_w * pricing.pue,
        idle_w_per_replica=gpus * hw.idle_w * pricing.pue,
        role=pool.role,
        decode_w_per_replica=gpus * max(hw.tdp_w * pricing.decode_power_fraction, hw.idle_w) * pricing.pue,
    )


TOOLS_POOL = "tools"
"""The pool name of the tool pool in tables."""


def tool_rates(tools: spec.ToolPool, pricing: spec.PricingSpec, catalog: Catalog) -> PoolRates:
    """Price and power of the tool pool, as one unit of ``workers`` cores.

    Price: the catalog's $/core-hour for the pricing tier (``own_hyperscaler`` under TCO pricing, whose capex is
    per GPU). Power: the CPU's TDP and idle power per core, times PUE.
    """
    cpu = catalog.get_cpu(tools.cpu)
    tier = pricing.tier if isinstance(pricing, spec.Rental) else "own_hyperscaler"
    per_core = catalog.get_cpu_price(tools.cpu).usd_per_hour(tier)
    return PoolRates(
        pool=TOOLS_POOL,
        replicas=1,
        gpus_per_replica=0,
        usd_per_gpu_hour=None,
        usd_per_replica_hour=tools.workers * per_core,
        busy_w_per_replica=tools.workers * cpu.tdp_w / cpu.cores * pricing.pue,
        idle_w_per_replica=tools.workers * cpu.idle_w / cpu.cores * pricing.pue,
        role="tools",
        workers=tools.workers,
    )


def attach_call_costs(calls: pa.Table, rates: list[PoolRates]) -> pa.Table:
    """Add ``usd`` and ``energy_j`` to the calls table: each call's busy share on its replica, and on its
    prefill replica when it was disaggregated, priced at that replica's pool rates."""
    usd_s = {r.pool: r.usd_per_s for r in rates}
    prompt_w = {r.pool: r.busy_w_per_replica for r in rates}
    decode_w = {r.pool: r.decode_w_per_replica for r in rates}

    def per_call(pool_col: str, busy_col: str, table: dict[str, float]) -> np.ndarray:
        # Vectorized lookup: dictionary-encode the pool names, price the few distinct ones, index by code
        # (a null pool, code -1, picks the trailing 0).
        pools = calls.column(pool_col).combine_chunks().dictionary_encode()
        lut = np.array([table.get(p, 0.0) for p in pools.dictionary.to_pylist()] + [0.0], dtype=float)
        codes = np.asarray(pools.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        busy = np.asarray(calls.column(busy_col).to_numpy(zero_copy_only=False), dtype=float)
        return np.asarray(busy * lut[codes], dtype=float)

    def energy_of(pool_col: str, busy_col: str, prompt_col: str) -> np.ndarray:
        # Steps that compute prompt tokens draw TDP; decode-only steps draw less (see spec.Rental).
        prompt = per_call(pool_col, prompt_col, prompt_w)
        decode = per_call(pool_col, busy_col, decode_w) - per_call(pool_col, prompt_col, decode_w)
        return np.asarray(prompt + decode, dtype=float)

    usd = per_call("pool", "busy_s", usd_s) + per_call("prefill_pool", "prefill_busy_s", usd_s)
    energy = energy_of("pool", "busy_s", "busy_prompt_steps_s") + energy_of(
        "prefill_pool", "prefill_busy_s", "prefill_busy_prompt_steps_s"
    )
    calls = calls.append_column("usd", pa.array(usd))
    return calls.append_column("energy_j", pa.array(energy))


def attach_task_costs(tasks: pa.Table, calls: pa.Table, tools: PoolRates | None = None) -> pa.Table:
    """Add ``usd`` and ``energy_j`` to the tasks table: the sums over each task's calls, plus its tool calls'
    worker-seconds at the tool pool's per-worker rates."""
    tasks = _add_tool_costs(tasks, tools)
    of_task, of_call, size = number_tasks(tasks.column("task_id").to_numpy(), calls.column("task_id").to_numpy())
    parts = []
    for name, tool_name in (("usd", "tool_usd"), ("energy_j", "tool_energy_j")):
        sums = np.bincount(of_call, weights=calls.column(name).to_numpy(), minlength=size)
        parts.append(pa.array(sums[of_task] + tasks.column(tool_name).to_numpy()))
    return tasks.append_column("usd", parts[0]).append_column("energy_j", parts[1])


def _add_tool_costs(tasks: pa.Table, tools: PoolRates | None) -> pa.Table:
    busy = np.asarray(tasks.column("tool_busy_s").to_numpy(zero_copy_only=False), dtype=float)
    if tools is None:
        usd = energy = np.zeros(len(busy))
    else:
        # tool_busy_s is in worker-seconds; the rates are for the whole pool of workers.
        usd = busy * tools.usd_per_s / tools.workers
        energy = busy * tools.busy_w_per_replica / tools.workers
    return tasks.append_column("tool_usd", pa.array(usd)).append_column("tool_energy_j", pa.array(energy))
