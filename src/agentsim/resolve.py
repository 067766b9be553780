"""Checks that need the catalog, and the per-pool plan the cluster is built from.

The spec validates shapes and ranges; this module validates a scenario against the world: do the model and
hardware exist, is ``tp`` a divisor of the scale-up domain, do the weights fit the memory (the error gives the
numbers), can every workload's profile be resolved. All problems are gathered and raised together as one
:class:`~agentsim.errors.ScenarioError`, each with its field path.
"""

from __future__ import annotations

from pathlib import Path

from agentsim import spec
from agentsim.catalog import Catalog, CatalogError
from agentsim.errors import ScenarioError
from agentsim.perf import build_perf
from agentsim.perf.memory import DoesNotFitError, kv_bytes_per_token, kv_capacity_tokens
from agentsim.serving.cluster import PoolPlan
from agentsim.workload.profiles import resolve_profile


def _msg(e: Exception) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def plan_pools(scenario: spec.Scenario, catalog: Catalog) -> list[PoolPlan]:
    """Perf model and KV capacity of every pool, or a :class:`ScenarioError` listing everything wrong."""
    errors: list[tuple[str, str]] = []
    plans: list[PoolPlan] = []
    for i, w in enumerate(scenario.workload):
        if isinstance(w, spec.TraceWorkload):
            if not Path(w.path).is_file():
                errors.append((f"workload[{i}].path", f"no such trace file: {w.path}"))
            continue
        try:
            resolve_profile(w)
        except ValueError as e:
            errors.append((f"workload[{i}].{'overrides' if w.overrides else 'profile'}", str(e)))
    for i, pool in enumerate(scenario.cluster.pools):
        where = f"cluster.pools[{i}]"
        d = pool.deployment
        try:
            model = catalog.get_model(d.model)
        except CatalogError as e:
            errors.append((f"{where}.deployment.model", _msg(e)))
            model = None
        try:
            hw = catalog.get_hardware(d.hardware)
        except CatalogError as e:
            errors.append((f"{where}.deployment.hardware", _msg(e)))
            hw = None
        if isinstance(scenario.pricing, spec.Rental) and scenario.pricing.usd_per_gpu_hour is None:
            try:
                catalog.get_price(d.hardware)
            except CatalogError as e:
                errors.append(("pricing.usd_per_gpu_hour", f"no catalog price: {_msg(e)}; set one"))
        if model is None or hw is None:
            continue
        if hw.scaleup_domain_gpus % d.tp:
            errors.append(
                (
                    f"{where}.deployment.tp",
                    f"{d.tp} is not a divisor of the {hw.scaleup_domain_gpus} GPUs of a {d.hardware} scale-up domain",
                )
            )
            continue
        if d.pp > model.layers:
            errors.append((f"{where}.deployment.pp", f"{d.pp} stages for {model.layers} layers"))
            continue
        try:
            kv = kv_capacity_tokens(model, hw, d)
        except DoesNotFitError as e:
            errors.append((f"{where}.deployment", str(e)))
            continue
        try:
            perf = build_perf(pool, catalog)
        except (ValueError, CatalogError) as e:
            errors.append((f"{where}.perf", _msg(e)))
            continue
        plans.append(PoolPlan(pool, perf, kv, float(kv_bytes_per_token(model, d))))
    tools = scenario.cluster.tools
    if tools is not None:
        try:
            catalog.get_cpu(tools.cpu)
            catalog.get_cpu_price(tools.cpu)
        except CatalogError as e:
            errors.append(("cluster.tools.cpu", _msg(e)))
    if errors:
        raise ScenarioError(errors, scenario.name)
    return plans
