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

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agentsim import spec
from agentsim.catalog import Catalog, CatalogError, Hardware, ModelArch, load_catalog, scenario_catalog
from agentsim.errors import ScenarioError
from agentsim.perf import build_perf
from agentsim.perf.memory import DoesNotFitError, kv_bytes_per_token, kv_capacity_tokens, sliding_window_kv
from agentsim.perf.speculative import speculative_perf
from agentsim.serving.admission import EngineConfig
from agentsim.serving.cluster import PoolPlan
from agentsim.serving.presets import check_budget, engine_config, fill_engine, precision_problem, sglang_max_running
from agentsim.serving.tiers import POLICIES, OffloadPlan
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
    model: str | None = None  # the model the pool serves (None: the tool pool)
    # The replica's lower KV tiers (host DRAM, NVMe: serving/tiers.py), provisioned with it: their price and
    # power are parts of usd_per_replica_hour and of the three power levels, reported apart too.
    tier_usd_per_replica_hour: float = 0.0
    tier_w_per_replica: float = 0.0
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

    @property
    def tier_usd_per_s(self) -> float:
        """The part of :attr:`usd_per_s` that pays for the replica's lower KV tiers."""
        return self.tier_usd_per_replica_hour / 3600.0


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
    models that serve its calls (:func:`context_window`; None only for a workload resolved without pools).
    ``model``: the index (in :attr:`Resolved.models`) of the model its calls go to; ``roles``: that of the
    lead's, the sub-agents' and the join's calls of an agent profile (-1: ``model``)."""

    index: int
    label: str
    workload: spec.WorkloadSpec | spec.TraceWorkload
    profile: spec.AgentProfile | spec.FixedProfile | None = None
    open_trace: TraceOpener | None = None
    max_context_tokens: int | None = None
    model: int = 0
    roles: tuple[int, int, int] = (-1, -1, -1)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A scenario resolved against the catalog: all the engine and the analysis need (module docstring)."""

    scenario: spec.Scenario
    pools: tuple[ResolvedPool, ...]
    tools: PoolRates | None
    workloads: tuple[ResolvedWorkload, ...]
    models: tuple[str, ...] = ()  # the models the pools serve, in pool order (calls carry an index into it)

    @property
    def plans(self) -> list[PoolPlan]:
        """What the cluster builds its pools from, in pool order."""
        return [p.plan for p in self.pools]

    @property
    def windows(self) -> list[int]:
        """The context window of each model, in :attr:`models` order (:func:`context_window`)."""
        out: list[int] = []
        for m in self.models:
            window = context_window(self.pools, m)
            assert window is not None  # the models are those the pools serve
            out.append(window)
        return out

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
        model=pool.deployment.model,
    )


def tool_rates(
    tools: spec.ToolPool, pricing: spec.PricingSpec, catalog: Catalog, nodes: ToolNodes | None = None
) -> PoolRates:
    """Price and power of the tool pool, as one unit of ``workers`` cores.

    Price: the catalog's $/core-hour for the pricing tier (``own_hyperscaler`` under TCO pricing, whose capex is
    per GPU). Power: the CPU's TDP and idle power per core, times PUE. With KV tiers on the nodes (``nodes``):
    whole sockets are priced, the cores no worker uses draw their idle power at every level, and the KV memory its
    power; the memory's part of the price and its power are the pool's tier figures (docs/METRICS.md).
    """
    cpu = catalog.get_cpu(tools.cpu)
    tier = pricing.tier if isinstance(pricing, spec.Rental) else "own_hyperscaler"
    per_core = catalog.get_cpu_price(tools.cpu).usd_per_hour(tier)
    rates = PoolRates(
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
    if nodes is None:
        return rates
    spare_w = (nodes.sockets * cpu.cores - tools.workers) * cpu.idle_w / cpu.cores * pricing.pue
    kv_w = nodes.kv_gb * (cpu.dram_w_per_gb or 0.0) * pricing.pue
    return replace(
        rates,
        usd_per_replica_hour=nodes.sockets * cpu.cores * per_core,
        busy_w_per_replica=rates.busy_w_per_replica + spare_w + kv_w,
        idle_w_per_replica=rates.idle_w_per_replica + spare_w + kv_w,
        decode_w_per_replica=rates.busy_w_per_replica + spare_w + kv_w,
        tier_usd_per_replica_hour=nodes.kv_gb * (cpu.dram_usd_per_gb_hour or 0.0),
        tier_w_per_replica=kv_w,
    )


@dataclass(frozen=True, slots=True)
class ToolNodes:
    """The tool pool's CPU nodes when pools keep their KV DRAM tier there (``kv_offload.host: tools``).

    Capacity is split statically, as engines size their CPU caches at start (vLLM ``--kv-offloading-size``,
    Dynamo's ``DYN_KVBM_CPU_CACHE_GB``): each worker keeps ``gb_per_worker`` for its tool, a pool that sets
    ``dram_gb`` gets it per replica, and the rest of the sockets' memory is shared evenly by the replicas of the
    pools that leave it unset (an autoscaled pool counts its ``max_replicas``)."""

    sockets: int
    kv_gb: float  # the nodes' memory holding KV tiers, GB in all
    share_gb: float  # DRAM per replica of a pool that leaves dram_gb unset
    link_gb_s: float  # default reload bandwidth: the cluster's kv_link (the KV crosses the network)


def tool_nodes(cluster: spec.ClusterSpec, catalog: Catalog) -> ToolNodes | None:
    """The tool nodes' sockets and KV memory (:class:`ToolNodes`), or None when no pool keeps its KV there.
    ValueError when the sockets given cannot hold the workers' cores or the memory asked for."""
    tools = cluster.tools
    hosted = [
        (p.autoscale.max_replicas if p.autoscale is not None else p.replicas, p.kv_offload)
        for p in cluster.pools
        if p.kv_offload is not None and p.kv_offload.host == "tools" and p.kv_offload.policy != "none"
    ]
    if tools is None or not hosted:
        return None
    cpu = catalog.get_cpu(tools.cpu)
    asked = sum(n * off.dram_gb for n, off in hosted if off.dram_gb is not None)
    sharing = sum(n for n, off in hosted if off.dram_gb is None)
    kept = tools.workers * tools.gb_per_worker
    need = max(-(-tools.workers // cpu.cores), math.ceil((kept + asked) / cpu.memory_gb - 1e-9), 1)
    sockets = tools.sockets if tools.sockets is not None else need
    free = sockets * cpu.memory_gb - kept - asked
    if sockets * cpu.cores < tools.workers or free < 0 or (sharing and free <= 0):
        raise ValueError(
            f"{sockets} x {tools.cpu} ({cpu.cores} cores, {cpu.memory_gb:g} GB each) cannot hold {tools.workers} "
            f"workers ({kept:g} GB) and the KV tiers asked for ({asked:g} GB{' + a share' if sharing else ''}): "
            f"at least {need + (1 if sharing and need == sockets else 0)} sockets"
        )
    share = free / sharing if sharing else 0.0
    return ToolNodes(sockets, asked + share * sharing, share, cluster.kv_link.bandwidth_gb_s)


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


def served_models(pools: Sequence[spec.PoolSpec]) -> tuple[str, ...]:
    """The models the pools serve (each pool's ``deployment.model``), in pool order, each once."""
    return tuple(dict.fromkeys(p.deployment.model for p in pools))


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



def context_window(pools: Sequence[ResolvedPool], model: str | None = None) -> int | None:
    """The context window a call of ``model`` must fit: the smallest ``max_context_tokens`` among the models of
    the pools that serve it (all pools when ``model`` is None; None without pools).

    Only pools serving a call's model take it (a router picks among them), and a call handed off is decoded on a
    decode pool of the same model, so the window is that model's (the smallest, should a user catalog give two
    pools of one model different windows)."""
    return min(
        (p.model.max_context_tokens for p in pools if model is None or p.plan.spec.deployment.model == model),
        default=None,
    )


def _roles(
    i: int,
    w: spec.WorkloadSpec | spec.TraceWorkload,
    profile: spec.AgentProfile | spec.FixedProfile | None,
    models: tuple[str, ...],
    errors: list[tuple[str, str]],
) -> tuple[int, tuple[int, int, int], list[str]]:
    """The model index of a workload's calls and of its profile's roles (lead, sub-agents, join; -1: the
    workload's), and the names of every model it calls. Each named model must be served by a pool; with several
    models served, a workload that names none is an error (which pool could take its calls?)."""
    where = f"workload[{i}]"
    named: list[tuple[str, str]] = []  # (field path, model)
    if w.model is not None:
        named.append((f"{where}.model", w.model))
    lead = sub = join = None
    if isinstance(profile, spec.AgentProfile):
        lead = profile.model
        if profile.fanout is not None:
            sub, join = profile.fanout.model, profile.fanout.join_model
        what = f"{where}.{'overrides' if isinstance(w, spec.WorkloadSpec) and w.overrides else 'profile'}"
        for field, m in (("model", lead), ("fanout.model", sub), ("fanout.join_model", join)):
            if m is not None:
                named.append((f"{what}.{field}", m))
    for path, m in named:
        if m not in models:
            errors.append((path, f"no pool serves model {m!r}; the pools serve: {', '.join(models)}"))
    default = w.model if w.model is not None else lead
    if default is None:
        if len(models) > 1:
            errors.append(
                (
                    f"{where}.model",
                    f"the pools serve several models ({', '.join(models)}): name the one this workload calls",
                )
            )
        default = models[0] if models else None

    def index(m: str | None) -> int:
        return models.index(m) if m is not None and m in models else -1

    called = sorted({m for m in (default, lead, sub, join) if m is not None and m in models}, key=models.index)
    base = max(index(default), 0)
    return base, (index(lead), index(sub), index(join)), called


def _workloads(
    scenario: spec.Scenario, pools: Sequence[ResolvedPool], models: tuple[str, ...], errors: list[tuple[str, str]]
) -> list[ResolvedWorkload]:
    out: list[ResolvedWorkload] = []
    for i, w in enumerate(scenario.workload):
        profile: spec.AgentProfile | spec.FixedProfile | None = None
        if isinstance(w, spec.WorkloadSpec):
            try:
                profile = resolve_profile(w)
            except ValueError as e:
                errors.append((f"workload[{i}].{'overrides' if w.overrides else 'profile'}", str(e)))
                out.append(ResolvedWorkload(i, w.label, w))
                continue
        model, roles, called = _roles(i, w, profile, models, errors)
        # Compaction and rejection use the smallest window among the models the workload calls.
        windows = [x for x in (context_window(pools, m) for m in called) if x is not None]
        window = min(windows) if windows else context_window(pools)
        if isinstance(w, spec.TraceWorkload):
            problem = _trace_problem(w.path)
            if problem is not None:
                errors.append((f"workload[{i}].path", problem))
            opener = _trace_opener(w, window)
            out.append(ResolvedWorkload(i, w.label, w, open_trace=opener, max_context_tokens=window, model=model))
            continue
        out.append(
            ResolvedWorkload(i, w.label, w, profile=profile, max_context_tokens=window, model=model, roles=roles)
        )
    return out


def _pool(
    i: int,
    pool: spec.PoolSpec,
    pricing: spec.PricingSpec,
    catalog: Catalog,
    errors: list[tuple[str, str]],
    nodes: ToolNodes | None = None,
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
    except UnservedPrecisionError as e:
        errors.append((f"{where}.deployment.{e.field}", str(e)))
        return None
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
    bytes_per_token = float(kv_bytes_per_token(model, d))
    offload: OffloadPlan | None = None
    if pool.kv_offload is not None and pool.kv_offload.policy != "none":
        if not engine.prefix_caching:  # the tiers hold the prefix cache's blocks: without it there is nothing to keep
            errors.append((f"{where}.kv_offload", f"policy {pool.kv_offload.policy!r} needs prefix caching, "
                           "which this pool's engine has off (deployment.engine.prefix_caching: false): the lower "
                           "tiers keep the prefix cache's evicted blocks; turn it on or set kv_offload.policy: none"))
            return None
        try:
            offload, tier_usd_h, tier_w = offload_plan(pool.kv_offload, hw, d.gpus, bytes_per_token, nodes)
        except ValueError as e:
            errors.append((f"{where}.kv_offload", str(e)))
            return None
        rates = with_tiers(rates, tier_usd_h, tier_w * pricing.pue)
    plan = PoolPlan(pool, perf, kv, bytes_per_token, engine, offload)
    return ResolvedPool(plan, hw, model, rates)


DRAM_SHARE = 0.5
"""Share of the host memory per GPU a KV tier takes by default (the rest: the OS, the engine, pinned buffers)."""


def offload_plan(
    off: spec.KvOffload, hw: Hardware, gpus: int, bytes_per_token: float, nodes: ToolNodes | None = None
) -> tuple[OffloadPlan, float, float]:
    """One replica's lower KV tiers (serving/tiers.py) from ``kv_offload`` and the hardware's host figures
    (per GPU x ``gpus``): the plan, the tiers' $/hour and their watts (before PUE). With ``host: tools`` the DRAM
    tier is a share of the tool ``nodes`` reached over the network, priced and powered with them (not here).
    ValueError when a figure the scenario leaves unset is not in the catalog."""
    host = hw.host
    on_tools = off.host == "tools"
    if on_tools and nodes is None:
        raise ValueError("host: tools needs the tool nodes (cluster.tools), which could not be sized")
    missing = [
        name
        for name, unset in (
            ("dram_gb", off.dram_gb is None and not on_tools),
            ("dram_gb_s", off.dram_gb_s is None and not on_tools),
            ("nvme_gb_s", off.nvme_gb > 0 and off.nvme_gb_s is None),
        )
        if unset
    ]
    if host is None and missing:
        raise ValueError(f"the catalog has no host memory figures for {hw.name}: set {', '.join(missing)}")
    if on_tools:
        assert nodes is not None
        dram_gb = off.dram_gb if off.dram_gb is not None else nodes.share_gb
        dram_gb_s = off.dram_gb_s if off.dram_gb_s is not None else nodes.link_gb_s
    else:
        dram_gb = off.dram_gb if off.dram_gb is not None else DRAM_SHARE * gpus * host.dram_gb_per_gpu  # type: ignore[union-attr]
        dram_gb_s = off.dram_gb_s if off.dram_gb_s is not None else gpus * host.link_gb_s_per_gpu  # type: ignore[union-attr]
    nvme_gb_s = off.nvme_gb_s if off.nvme_gb_s is not None else (gpus * host.nvme_gb_s_per_gpu if host else 1.0)
    if host is not None:
        # A tier larger than the replica's hosts hold is a typo or another machine: say so with the numbers.
        if not on_tools and dram_gb > gpus * host.dram_gb_per_gpu:
            raise ValueError(
                f"dram_gb {dram_gb:g} GB per replica exceeds the host DRAM of its {gpus} GPU(s): "
                f"{gpus} x {host.dram_gb_per_gpu:g} GB ({hw.name}, catalog host figures)"
            )
        if off.nvme_gb > gpus * host.nvme_gb_per_gpu:
            raise ValueError(
                f"nvme_gb {off.nvme_gb:g} GB per replica exceeds the local NVMe of its {gpus} GPU(s): "
                f"{gpus} x {host.nvme_gb_per_gpu:g} GB ({hw.name}, catalog host figures)"
            )
    plan = OffloadPlan(
        POLICIES[off.policy],
        int(dram_gb * 1e9 // bytes_per_token),
        int(off.nvme_gb * 1e9 // bytes_per_token),
        dram_gb_s * 1e9,
        nvme_gb_s * 1e9,
        bytes_per_token,
    )
    if host is None:
        return plan, 0.0, 0.0
    local_gb = 0.0 if on_tools else dram_gb  # a DRAM tier on the tool nodes is their cost and power
    usd_h = local_gb * host.dram_usd_per_gb_hour + off.nvme_gb * host.nvme_usd_per_gb_hour
    watts = local_gb * host.dram_w_per_gb + off.nvme_gb * host.nvme_w_per_gb
    return plan, usd_h, watts


def with_tiers(rates: PoolRates, usd_per_hour: float, watts: float) -> PoolRates:
    """``rates`` with a replica's lower KV tiers added: their price to the replica's, their power to each of its
    three power levels (memory draws the same whether the GPUs compute or not)."""
    return replace(
        rates,
        usd_per_replica_hour=rates.usd_per_replica_hour + usd_per_hour,
        busy_w_per_replica=rates.busy_w_per_replica + watts,
        idle_w_per_replica=rates.idle_w_per_replica + watts,
        decode_w_per_replica=rates.decode_w_per_replica + watts,
        tier_usd_per_replica_hour=usd_per_hour,
        tier_w_per_replica=watts,
    )


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


class UnservedPrecisionError(ValueError):
    """The deployment's engine has no kernels for its weights' or KV cache's precision on its hardware; ``field``
    is the deployment field at fault (``precision`` or ``kv_precision``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def resolve_engine(pool: spec.PoolSpec, model: ModelArch, hw: Hardware) -> tuple[spec.PoolSpec, int, EngineConfig]:
    """``pool`` with its engine preset filled in (every unset knob, the KV precision, the roofline's overheads
    when unset: :mod:`agentsim.serving.presets`), its KV capacity per replica and the engine its replicas run
    (with the KV each call holds for sliding-window layers, :func:`~agentsim.perf.memory.sliding_window_kv`).
    Raises :class:`UnservedPrecisionError` (the preset has no kernels for the precision there,
    :func:`~agentsim.serving.presets.precision_problem`), :class:`DoesNotFitError` (the weights leave no KV cache)
    or ValueError (inconsistent limits)."""
    d = fill_engine(pool.deployment, hw, model)
    unserved = precision_problem(d, hw)
    if unserved is not None:
        raise UnservedPrecisionError(*unserved)
    kv = kv_capacity_tokens(model, hw, d)
    engine = d.engine
    if engine.max_num_seqs is None:  # SGLang: from the KV capacity
        engine = engine.model_copy(update={"max_num_seqs": sglang_max_running(kv)})
        d = d.model_copy(update={"engine": engine})
    tokens_per_step = engine.speculative.tokens_per_step if engine.speculative is not None else 1.0
    problem = check_budget(engine, tokens_per_step)
    if problem is not None:
        raise ValueError(problem)
    perf = pool.perf
    if isinstance(perf, spec.RooflinePerf):
        unset = {
            "overhead_s": engine.step_overhead_s,
            "overhead_s_per_seq": engine.step_overhead_s_per_seq,
            "kernel_latency_s": engine.kernel_latency_s,
        }
        update = {k: v for k, v in unset.items() if getattr(perf, k) is None}
        if update:
            perf = perf.model_copy(update=update)
    elif isinstance(perf, spec.CurvePerf) and perf.roofline.kernel_latency_s is None:
        # the roofline that shapes a curve's steps takes the preset's kernel floor too
        shape = perf.roofline.model_copy(update={"kernel_latency_s": engine.kernel_latency_s})
        perf = perf.model_copy(update={"roofline": shape})
    window = sliding_window_kv(model, d)  # vLLM: each running call also holds its sliding-window layers' blocks
    config = engine_config(engine, tokens_per_step, window, d.attention_ranks)
    return pool.model_copy(update={"deployment": d, "perf": perf}), kv, config


def resolve(scenario: spec.Scenario, catalog: Catalog | None = None) -> Resolved:
    """``scenario`` against ``catalog`` (default: the built-in catalog) plus the catalog files the scenario
    lists; a :class:`ScenarioError` names every problem found (module docstring)."""
    catalog = scenario_catalog(scenario, catalog if catalog is not None else load_catalog())
    errors: list[tuple[str, str]] = []
    nodes: ToolNodes | None = None
    try:
        nodes = tool_nodes(scenario.cluster, catalog)
    except CatalogError:
        pass  # reported with the tool pool below
    except ValueError as e:
        errors.append(("cluster.tools.sockets", str(e)))
    pools = [_pool(i, p, scenario.pricing, catalog, errors, nodes) for i, p in enumerate(scenario.cluster.pools)]
    models = served_models(scenario.cluster.pools)
    workloads = _workloads(scenario, [p for p in pools if p is not None], models, errors)
    tools: PoolRates | None = None
    if scenario.cluster.tools is not None:
        try:
            tools = tool_rates(scenario.cluster.tools, scenario.pricing, catalog, nodes)
        except CatalogError as e:
            errors.append(("cluster.tools.cpu", _msg(e)))
    if errors:
        raise ScenarioError(errors, scenario.name)
    return Resolved(scenario, tuple(p for p in pools if p is not None), tools, tuple(workloads), models)
