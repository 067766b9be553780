"""Resolve a scenario against the world, once: the plain figures the engine and the analysis run on.

A scenario *names* things: a model and a hardware id, a built-in agent profile, a price tier, a CPU for the
tool pool, a trace file. :func:`resolve` looks every name up in the catalog (the built-in one plus the files the
scenario lists) and checks the scenario against what it finds: do the model and hardware exist, is ``tp`` a
divisor of the scale-up domain, do the weights fit the memory (the error gives the numbers), can every
workload's profile be built, is there a price. Every problem is gathered into one
:class:`~agentsim.errors.ScenarioError`, each with its field path.

What comes out, :class:`Resolved`, holds everything downstream needs and nothing it must look up: per pool the
deployment's hardware and model figures, its perf model, KV capacity and KV bytes per token, its price and
power (:class:`PoolRates`); the tool pool's rates; per workload its profile, or an opener of its trace's tasks,
and the context window its calls must fit (:func:`context_window`).
The engine (:mod:`agentsim.engine.sim`) and the analysis (:mod:`agentsim.analysis`) receive these objects and
never consult the catalog, so data flows one way: cli -> api -> resolve -> engine -> tables -> analysis -> store.

Prices (``pricing.kind: rental``): the catalog's $/GPU-hour for a tier (SemiAnalysis InferenceX TCO model), or
a given price. Owned hardware (``tco``): ``C_hr = (capex * CRF(r, n) + opex) / 8760 + kW_all_in * PUE *
$/kWh`` with the capital recovery factor ``CRF(r, n) = r (1+r)^n / ((1+r)^n - 1)``. Power per replica: TDP in
steps that compute prompt tokens, ``decode_power_fraction x TDP`` in decode-only steps, idle power otherwise,
times the GPUs and the PUE (``docs/METRICS.md``, pool rates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agentsim import spec
from agentsim.catalog import Catalog, CatalogError, Hardware, ModelArch, load_catalog, scenario_catalog
from agentsim.errors import ScenarioError
from agentsim.perf import build_perf
from agentsim.perf.memory import DoesNotFitError, kv_bytes_per_token, kv_capacity_tokens
from agentsim.perf.speculative import speculative_perf
from agentsim.serving.admission import EngineConfig
from agentsim.serving.cluster import PoolPlan
from agentsim.serving.presets import check_budget, engine_config, fill_engine, sglang_max_running
from agentsim.workload.profiles import resolve_profile
from agentsim.workload.taskgraph import TaskTemplate

HOURS_PER_YEAR = 8760.0

TOOLS_POOL = "tools"
"""The pool name of the tool pool in tables."""


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
    min_step_s: float = 0.0  # a minimal step (one decode token, no context): the per-step fixed cost in the load

    def __post_init__(self) -> None:
        if self.decode_w_per_replica < 0:
            object.__setattr__(
                self, "decode_w_per_replica", self.busy_w_per_replica
            )  # tool pool: worker cores in the unit (a task's tool time is counted in worker-seconds)

    @property
    def usd_per_s(self) -> float:
        """Dollars per second of one replica, provisioned."""
        return self.usd_per_replica_hour / 3600.0


@dataclass(frozen=True, slots=True)
class ResolvedPool:
    """One pool with every figure it runs on: what the cluster builds it from (``plan``: spec, perf model, KV
    capacity, KV bytes per token), the deployment's hardware and model, and its price and power."""

    plan: PoolPlan
    hardware: Hardware
    model: ModelArch
    rates: PoolRates

    @property
    def name(self) -> str:
        return self.plan.spec.name


TraceOpener = Callable[[], Iterator[tuple[float, TaskTemplate]]]
"""Opens a trace workload's file when called: ``(start_s, template)`` per task, streamed in file order."""


@dataclass(frozen=True, slots=True)
class ResolvedWorkload:
    """One workload: its label and spec (``workload``), either the profile its tasks are drawn from (synthetic)
    or the opener of its trace's tasks (``kind: trace``), and ``max_context_tokens``, the context window of the
    model that serves its calls (:func:`context_window`; None only for a workload resolved without pools)."""

    index: int
    label: str
    workload: spec.WorkloadSpec | spec.TraceWorkload
    profile: spec.AgentProfile | spec.FixedProfile | None = None
    open_trace: TraceOpener | None = None
    max_context_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    """A scenario resolved against the catalog: all the engine and the analysis need (module docstring)."""

    scenario: spec.Scenario
    pools: tuple[ResolvedPool, ...]
    tools: PoolRates | None
    workloads: tuple[ResolvedWorkload, ...]

    @property
    def plans(self) -> list[PoolPlan]:
        """What the cluster builds its pools from, in pool order."""
        return [p.plan for p in self.pools]

    @property
    def rates(self) -> list[PoolRates]:
        """Price and power of every pool, in pool order, then the tool pool's (if any)."""
        out = [p.rates for p in self.pools]
        if self.tools is not None:
            out.append(self.tools)
        return out


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


def _msg(e: Exception) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _trace_opener(w: spec.TraceWorkload, window: int | None) -> TraceOpener:
    def open_trace() -> Iterator[tuple[float, TaskTemplate]]:
        # Imported here: the trace layer (Parquet reading) is needed only by runs that replay a trace.
        from agentsim.traces.io import read_trace
        from agentsim.workload.replay import replay_template

        for t in read_trace(w.path):
            yield t.start_s, replay_template(t.template, list(t.hash_ids), list(t.release_s), t.start_s, w, window)

    return open_trace


def _trace_problem(path: str) -> str | None:
    """Why ``path`` is not a trace that can be replayed (missing, not Parquet, not agentsim's schema), or None.
    Only the file's footer is read here; its rows are checked as they are replayed."""
    from agentsim.traces.io import read_trace_meta
    from agentsim.traces.schema import TraceError

    if not Path(path).is_file():
        return f"no such trace file: {path}" + (" (a relative path is read from the scenario file's directory)"
                                                 if not Path(path).is_absolute() else "")
    try:
        read_trace_meta(path)
    except TraceError as e:
        return str(e)
    return None


def context_window(pools: Sequence[ResolvedPool]) -> int | None:
    """The context window every call of the scenario must fit: the smallest ``max_context_tokens`` among the
    models of the pools (None without pools).

    Today any entry pool (unified or prefill) may take any call, and a call handed off is decoded on a decode
    pool that holds its whole context too, so a call must fit every pool's model. When pools serve different
    models (issue 15), the window becomes per workload: that of the pools its calls may reach."""
    return min((p.model.max_context_tokens for p in pools), default=None)


def _workloads(
    scenario: spec.Scenario, window: int | None, errors: list[tuple[str, str]]
) -> list[ResolvedWorkload]:
    out: list[ResolvedWorkload] = []
    for i, w in enumerate(scenario.workload):
        if isinstance(w, spec.TraceWorkload):
            problem = _trace_problem(w.path)
            if problem is not None:
                errors.append((f"workload[{i}].path", problem))
            out.append(ResolvedWorkload(i, w.label, w, open_trace=_trace_opener(w, window), max_context_tokens=window))
            continue
        try:
            out.append(ResolvedWorkload(i, w.label, w, profile=resolve_profile(w), max_context_tokens=window))
        except ValueError as e:
            errors.append((f"workload[{i}].{'overrides' if w.overrides else 'profile'}", str(e)))
    return out


def _pool(
    i: int, pool: spec.PoolSpec, pricing: spec.PricingSpec, catalog: Catalog, errors: list[tuple[str, str]]
) -> ResolvedPool | None:
    where = f"cluster.pools[{i}]"
    d = pool.deployment
    model: ModelArch | None = None
    hw: Hardware | None = None
    try:
        model = catalog.get_model(d.model)
    except CatalogError as e:
        errors.append((f"{where}.deployment.model", _msg(e)))
    try:
        hw = catalog.get_hardware(d.hardware)
    except CatalogError as e:
        errors.append((f"{where}.deployment.hardware", _msg(e)))
    priced = True
    if isinstance(pricing, spec.Rental) and pricing.usd_per_gpu_hour is None:
        try:
            catalog.get_price(d.hardware)
        except CatalogError as e:
            errors.append(("pricing.usd_per_gpu_hour", f"no catalog price: {_msg(e)}; set one"))
            priced = False
    if model is None or hw is None:
        return None
    wide_ep = d.data_parallel_attention and d.tp % hw.scaleup_domain_gpus == 0  # EP over several domains (NICs)
    if hw.scaleup_domain_gpus % d.tp and not wide_ep:
        errors.append(
            (
                f"{where}.deployment.tp",
                f"{d.tp} is not a divisor of the {hw.scaleup_domain_gpus} GPUs of a {d.hardware} scale-up domain"
                " (nor, with data_parallel_attention, a multiple of it: wide expert parallelism)",
            )
        )
        return None
    if d.pp > model.layers:
        errors.append((f"{where}.deployment.pp", f"{d.pp} stages for {model.layers} layers"))
        return None
    problem = heads_problem(model, d)
    if problem is not None:
        errors.append((f"{where}.deployment.tp", problem))
        return None
    try:
        pool, kv, engine = resolve_engine(pool, model, hw)
    except DoesNotFitError as e:
        errors.append((f"{where}.deployment", str(e)))
        return None
    except ValueError as e:
        errors.append((f"{where}.deployment.engine", str(e)))
        return None
    d = pool.deployment
    try:
        perf = build_perf(pool, catalog)
        speculative = d.engine.speculative
        if speculative is not None:
            perf = speculative_perf(perf, speculative, pool, model, catalog)
    except (ValueError, CatalogError) as e:
        errors.append((f"{where}.perf" if d.engine.speculative is None else f"{where}.deployment.engine", _msg(e)))
        return None
    if not priced:
        return None
    try:
        rates = pool_rates(pool, pricing, catalog)
    except CatalogError as e:
        errors.append(("pricing", _msg(e)))
        return None
    # The fixed cost of a step, which the continuous-batching load (docs/METRICS.md, headroom) sets apart.
    rates = replace(rates, min_step_s=float(perf.step_time(0.0, 1.0, 0.0)))
    plan = PoolPlan(pool, perf, kv, float(kv_bytes_per_token(model, d)), engine, model.max_context_tokens)
    return ResolvedPool(plan, hw, model, rates)


def heads_problem(model: ModelArch, d: spec.Deployment) -> str | None:
    """Why ``tp`` cannot split ``model``'s attention, or None. Tensor parallelism gives each GPU an equal share
    of the query heads, so ``tp`` must divide them; the KV heads are split the same way, or replicated when
    there are fewer of them than GPUs (vLLM and SGLang: then ``tp`` must be a multiple of them). DP attention
    does not split attention (each GPU holds every head) and MLA's one latent KV is not split by head."""
    if d.data_parallel_attention or d.tp == 1:
        return None
    if model.heads % d.tp:
        return f"{d.tp} does not divide the {model.heads} attention heads of {d.model}: each GPU needs an equal share"
    if model.attention != "mla" and model.kv_heads % d.tp and d.tp % model.kv_heads:
        return (
            f"{d.tp} neither divides the {model.kv_heads} KV heads of {d.model} nor is a multiple of them "
            "(KV heads are split over tp, or replicated when fewer)"
        )
    return None


def resolve_engine(pool: spec.PoolSpec, model: ModelArch, hw: Hardware) -> tuple[spec.PoolSpec, int, EngineConfig]:
    """``pool`` with its engine preset filled in (every unset knob, the KV precision, the roofline's overhead
    when unset: :mod:`agentsim.serving.presets`), its KV capacity per replica and the engine its replicas run.
    Raises :class:`DoesNotFitError` (the weights leave no KV cache) or ValueError (inconsistent limits)."""
    d = fill_engine(pool.deployment, hw)
    kv = kv_capacity_tokens(model, hw, d)
    engine = d.engine
    if engine.max_num_seqs is None:  # SGLang: from the KV capacity
        engine = engine.model_copy(update={"max_num_seqs": sglang_max_running(kv)})
        d = d.model_copy(update={"engine": engine})
    problem = check_budget(engine)
    if problem is not None:
        raise ValueError(problem)
    perf = pool.perf
    if isinstance(perf, spec.RooflinePerf) and perf.overhead_s is None:
        perf = perf.model_copy(update={"overhead_s": engine.step_overhead_s})
    tokens_per_step = engine.speculative.tokens_per_step if engine.speculative is not None else 1.0
    return pool.model_copy(update={"deployment": d, "perf": perf}), kv, engine_config(engine, tokens_per_step)


def resolve(scenario: spec.Scenario, catalog: Catalog | None = None) -> Resolved:
    """``scenario`` against ``catalog`` (default: the built-in catalog) plus the catalog files the scenario
    lists; a :class:`ScenarioError` names every problem found (module docstring)."""
    catalog = scenario_catalog(scenario, catalog if catalog is not None else load_catalog())
    errors: list[tuple[str, str]] = []
    pools = [_pool(i, p, scenario.pricing, catalog, errors) for i, p in enumerate(scenario.cluster.pools)]
    workloads = _workloads(scenario, context_window([p for p in pools if p is not None]), errors)
    tools: PoolRates | None = None
    if scenario.cluster.tools is not None:
        try:
            tools = tool_rates(scenario.cluster.tools, scenario.pricing, catalog)
        except CatalogError as e:
            errors.append(("cluster.tools.cpu", _msg(e)))
    if errors:
        raise ScenarioError(errors, scenario.name)
    return Resolved(scenario, tuple(p for p in pools if p is not None), tools, tuple(workloads))
