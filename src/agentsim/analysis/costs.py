"""Dollars and joules: provisioned pool time turned into cost, and each step's cost shared among its calls.

A replica costs ``usd_per_s = gpus * usd_per_gpu_hour / 3600`` whether it works or not. It draws TDP in steps
that compute prompt tokens, ``decode_power_fraction x TDP`` in decode-only steps (memory-bound: Splitwise measured
~380 W vs ~700 W on H100) and its idle power otherwise (per-GPU power x GPUs x PUE). The engine gives every
call its share of the replica's busy seconds (each step's time split among the calls in it in proportion to the
tokens each processed), so a call's cost is ``busy_share_s * usd_per_s`` and its energy
``busy_share_s * busy_w``. What no call used is the pool's idle cost. Calls plus idle add up to the provisioned
total exactly (a test checks it).

The rates themselves (price and power per replica, from the catalog and the pricing rule) are resolved once,
before the run (:class:`agentsim.resolve.PoolRates`); this module only applies them to the tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from agentsim import columns
from agentsim.analysis.tables import Table, batches
from agentsim.engine.records import PerTaskSums
from agentsim.resolve import TOOLS_POOL, PoolRates

COST_SUMS = ("usd", "energy_j")
"""The call columns a task sums besides its tokens and busy time (:class:`~agentsim.engine.records.TaskSums`)."""

POOLS_SCHEMA = columns.schema(columns.POOLS)


def attach_call_costs(calls: pa.Table, rates: list[PoolRates]) -> pa.Table:
    """Add ``usd`` and ``energy_j`` to the calls table (or to a batch of it: each row's cost is its own): each
    call's busy share on its replica, and on its prefill replica when it was disaggregated, priced at that
    replica's pool rates."""
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


def attach_task_costs(tasks: pa.Table, sums: PerTaskSums, tools: PoolRates | None = None) -> pa.Table:
    """Add ``usd`` and ``energy_j`` to (a batch of) the tasks table: the sums over each task's calls (``sums``,
    taken with ``extra=COST_SUMS`` over the costed call table), plus its tool calls' worker-seconds at the tool
    pool's per-worker rates."""
    tasks = _add_tool_costs(tasks, tools)
    ids = tasks.column("task_id").to_numpy()
    parts = [pa.array(sums.of(name, ids) + tasks.column(f"tool_{name}").to_numpy()) for name in COST_SUMS]
    return tasks.append_column("usd", parts[0]).append_column("energy_j", parts[1])


def _add_tool_costs(tasks: pa.Table, tools: PoolRates | None) -> pa.Table:
    busy = np.asarray(tasks.column("tool_busy_s").to_numpy(zero_copy_only=False), dtype=float)
    if tools is None:
        usd = energy = np.zeros(len(busy))
    else:
        # tool_busy_s is in worker-seconds; the rates are for the whole pool of workers. A KV tier kept on the
        # tool nodes (tier_*: 0 otherwise) is paid by the pools' calls' nodes, not by the tools' time.
        usd = busy * (tools.usd_per_s - tools.tier_usd_per_s) / tools.workers
        energy = busy * (tools.busy_w_per_replica - tools.tier_w_per_replica) / tools.workers
    return tasks.append_column("tool_usd", pa.array(usd)).append_column("tool_energy_j", pa.array(energy))


def pools_table(rates: list[PoolRates], replicas: Table, calls: Table, horizon_s: float) -> pa.Table:
    """Per pool over the whole run: provisioned cost, the part charged to calls, the idle remainder, energy."""
    t = np.asarray(replicas.column("t_s").to_numpy(), dtype=float)
    last = replicas.filter(pa.array(t == horizon_s))
    busy_by_pool: dict[str, float] = {}
    prompt_by_pool: dict[str, float] = {}
    prov_by_pool: dict[str, float] = {}
    count_by_pool: dict[str, int] = {}
    for pool, busy, prompt, prov in zip(
        last.column("pool").to_pylist(),
        last.column("busy_s").to_pylist(),
        last.column("busy_prompt_steps_s").to_pylist(),
        last.column("provisioned_s").to_pylist(),
        strict=True,
    ):
        busy_by_pool[pool] = busy_by_pool.get(pool, 0.0) + busy
        prompt_by_pool[pool] = prompt_by_pool.get(pool, 0.0) + prompt
        prov_by_pool[pool] = prov_by_pool.get(pool, 0.0) + prov
        count_by_pool[pool] = count_by_pool.get(pool, 0) + 1
    usd_s = {r.pool: r.usd_per_s for r in rates}
    # Each call's busy seconds priced at its pool's rate and summed per pool, on its replica's pool and then on
    # its prefill replica's: the sums run over the first column's rows in row order, then go on over the second's
    # (one np.bincount per batch, each starting from the sums so far: the same additions as a single loop).
    number = {r.pool: i for i, r in enumerate(rates)}
    price = np.array([r.usd_per_s for r in rates])
    sums: np.ndarray = np.zeros(len(rates))
    bins = np.arange(len(rates))
    for pool_col, busy_col in (("pool", "busy_s"), ("prefill_pool", "prefill_busy_s")):
        for batch in batches(calls, [pool_col, busy_col]):  # a batch at a time: the sums go on from batch to batch
            pools = batch.column(pool_col).dictionary_encode()
            lut = np.array([number[p] for p in pools.dictionary.to_pylist()] + [-1], dtype=np.int64)
            code = lut[np.asarray(pools.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)]
            del pools
            routed = code >= 0
            code = code[routed]
            busy = np.asarray(batch.column(busy_col).to_numpy(zero_copy_only=False), dtype=float)[routed]
            del routed
            busy *= price[code]
            sums = np.bincount(np.concatenate([bins, code]), weights=np.concatenate([sums, busy]), minlength=len(rates))
    usd_by_pool = {r.pool: float(sums[i]) for i, r in enumerate(rates)}
    if TOOLS_POOL in usd_s:
        # Tool work is charged to tasks, not calls: its "calls" cost is the busy part of the pool.
        usd_by_pool[TOOLS_POOL] = busy_by_pool.get(TOOLS_POOL, 0.0) * usd_s[TOOLS_POOL]
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "pool",
            "role",
            "model",
            "replicas",
            "gpus",
            "usd_per_gpu_hour",
            "provisioned_usd",
            "calls_usd",
            "idle_usd",
            "busy_s",
            "idle_s",
            "busy_energy_j",
            "idle_energy_j",
            "kv_tier_usd",
            "kv_tier_energy_j",
        )
    }
    for r in rates:
        provisioned_s = prov_by_pool.get(r.pool, 0.0)
        busy = busy_by_pool.get(r.pool, 0.0)
        provisioned = r.usd_per_s * provisioned_s
        rows["pool"].append(r.pool)
        rows["role"].append(r.role)
        rows["model"].append(r.model)
        rows["replicas"].append(count_by_pool.get(r.pool, 0))
        rows["gpus"].append(count_by_pool.get(r.pool, 0) * r.gpus_per_replica)
        rows["usd_per_gpu_hour"].append(r.usd_per_gpu_hour)
        rows["provisioned_usd"].append(provisioned)
        rows["calls_usd"].append(usd_by_pool.get(r.pool, 0.0))
        rows["idle_usd"].append(r.usd_per_s * (provisioned_s - busy))
        rows["busy_s"].append(busy)
        rows["idle_s"].append(provisioned_s - busy)
        prompt = prompt_by_pool.get(r.pool, 0.0)
        rows["busy_energy_j"].append(prompt * r.busy_w_per_replica + (busy - prompt) * r.decode_w_per_replica)
        rows["idle_energy_j"].append((provisioned_s - busy) * r.idle_w_per_replica)
        rows["kv_tier_usd"].append(r.tier_usd_per_s * provisioned_s)
        rows["kv_tier_energy_j"].append(r.tier_w_per_replica * provisioned_s)
    return pa.table(rows, schema=POOLS_SCHEMA)
