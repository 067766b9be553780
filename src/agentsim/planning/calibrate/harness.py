"""The benchmark harness: a measured condition reproduced as a small scenario on the pool being calibrated.

**The pool** of a labeled measurement (:func:`pool_from_labels`) maps its ``model`` and ``hardware`` labels to
catalog ids (:func:`catalog_id`) and its parallelism and precision labels to a one-replica deployment.

**Reproducing a condition** (:func:`condition_scenario`, :class:`HarnessOptions`): a fixed profile (``isl``
prompt, ``osl`` output tokens, no shared prefix) on the pool being calibrated; ``concurrency`` becomes a closed
loop of that many agents with zero think time, ``qps`` a Poisson process, offline a closed loop with more agents
than the engine can batch (so its queue never empties). Agents start spread over one request lifetime ``L``
(estimated from the starting perf model), the summary window skips ``warmup_waves`` lifetimes after that, and
the window lasts ``waves`` lifetimes (at least ``min_requests / qps`` for open loops). The horizon is fixed
before a search starts (:func:`plan_condition`), so a fit's objective is a deterministic function of the
coefficients; a run that ends with no call completed in its window but calls still running (coefficients much
slower than the start's) is simulated again with a longer horizon, as is a burst whose requests did not all
finish (:data:`FINITE_EXTEND`), deterministically too.

**The engine** of a condition (:func:`condition_engine`) is the pool's, under an engine preset
(:mod:`agentsim.serving.presets`): ``preset: auto`` (default) takes the one the row's ``engine`` label names
(TensorRT-LLM, vLLM, SGLang), else the pool's own; ``scenario`` always the pool's; ``vllm``, ``sglang`` or
``trtllm`` that one. Knobs the pool's engine sets explicitly win over the preset. The deprecated options
``admission: no-evict`` (now: the preset's guaranteed-no-evict admission) and ``kv_free_fraction`` (now: the
``of-free`` KV rule with that fraction, TensorRT-LLM's) still override the preset.

**Simulating** a condition (:func:`simulate_points`, :class:`Runner`) gives its predicted output tokens/s, mean
TTFT and mean TPOT, in this process or in a pool of worker processes.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from agentsim import spec
from agentsim.catalog import Catalog, load_catalog
from agentsim.planning.calibrate.bench import (
    FINITE_THINK_S,
    ROWWISE_FP8_VLLM,
    BenchLoad,
    bench_load,
    engine_overrides,
    measured_by_trtllm_bench,
    parse_engine_args,
    trtllm_bench_settings,
    uses_trtllm_bench,
    vllm_max_model_len,
    vllm_version,
)
from agentsim.planning.calibrate.measurements import CalibrationError, Measurement, cell_number
from agentsim.serving.admission import NO_EVICT

__all__ = [
    "PRESET_KNOBS",
    "HarnessOptions",
    "Plan",
    "Runner",
    "catalog_id",
    "condition_engine",
    "condition_scenario",
    "for_presets",
    "kv_tokens",
    "label_preset",
    "plan_condition",
    "pool_from_labels",
    "preset_kernel_latency",
    "preset_value",
    "replace_model",
    "scenario_for",
    "simulate_points",
]


# --------------------------------------------------------------------------- deployments from labels


def catalog_id(name: str, ids: Iterable[str]) -> str | None:
    """The catalog id a published name refers to: ``Llama-3.3-70B-Instruct`` -> ``llama-3.3-70b``,
    ``Qwen3-235B-A22B (MoE)`` -> ``qwen3-235b-a22b``, ``H100 SXM`` -> ``h100``. None if nothing matches."""
    known = list(ids)
    n = re.sub(r"\(.*?\)", "", name.lower()).strip()
    n = n.split("/")[-1]
    n = re.sub(r"[\s_]+", "-", n)
    for suffix in ("-instruct", "-fp8", "-fp4", "-sxm5", "-sxm", "-hf"):
        n = n.replace(suffix, "")
    n = n.strip("-")
    if n in known:
        return n
    contained = [k for k in known if k in n]
    return max(contained, key=len) if contained else None


def _int_label(labels: Mapping[str, str], names: Sequence[str], pattern: str) -> int | None:
    for k in names:
        v = cell_number(labels.get(k))
        if v is not None and v > 0:
            return int(v)
    for k in ("notes", "config", "parallelism"):
        m = re.search(pattern, labels.get(k, ""), flags=re.IGNORECASE) if pattern else None
        if m:
            return int(m.group(1))
    return None


def _precision(text: str) -> spec.Precision:
    t = text.lower()
    if "fp4" in t:
        return "fp4"
    if "fp8" in t or "int8" in t:
        return "fp8"
    return "bf16"


def pool_from_labels(
    m: Measurement,
    catalog: Catalog,
    *,
    engine: spec.EngineSpec | None = None,
    perf: spec.RooflinePerf | spec.LinearPerf | spec.TablePerf | spec.CurvePerf | None = None,
    moe: Literal["auto", "tp", "ep-dp"] = "auto",
) -> spec.PoolSpec:
    """The pool of a labeled measurement: ``model`` and ``hardware`` mapped to catalog ids (:func:`catalog_id`),
    ``tp`` from a ``tp`` column, ``TPn`` in the notes, or ``n_gpus``; ``pp`` likewise; one replica per ``tp * pp``
    of the row's ``n_gpus`` (dstack's "8xMi300x 2FP8" runs served two TP4 instances on 8 GPUs: twice one
    instance's tokens in the same elapsed time); precision from a ``precision`` column (FP8, FP4/NVFP4/MXFP4,
    else bf16). MoE models: ``ep-dp`` deploys
    expert parallelism over the ``tp`` GPUs with data-parallel attention (TensorRT-LLM's published MoE recipe
    uses ``--ep`` and ``enable_attention_dp``), ``tp`` plain tensor parallelism, ``auto`` ``ep-dp`` when the
    ``engine`` label names TensorRT-LLM and ``tp`` otherwise; ``ep`` and ``dp_attention`` columns win."""
    labels = m.labels
    model = catalog_id(labels.get("model", ""), catalog.models)
    hardware = catalog_id(labels.get("hardware", ""), catalog.hardware)
    if model is None or hardware is None:
        raise CalibrationError(
            f"{m.source}: cannot map model {labels.get('model')!r} / hardware {labels.get('hardware')!r} to catalog "
            "ids; give the pool (--scenario/--pool) or add them to a catalog file"
        )
    gpus = _int_label(labels, ("n_gpus", "gpus"), "")
    tp = _int_label(labels, ("tp", "tensor_parallel"), r"\bTP\s*(\d+)") or gpus or 1
    pp = _int_label(labels, ("pp", "pipeline_parallel"), r"\bPP\s*(\d+)") or parse_engine_args(
        labels.get("engine_args", "")
    ).get("pp", 1)
    arch = catalog.get_model(model)
    ep = _int_label(labels, ("ep",), r"\bEP\s*(\d+)")
    dpa_label = labels.get("dp_attention", "").strip().lower()
    recipe = moe
    if recipe == "auto":
        recipe = "ep-dp" if "tensorrt" in labels.get("engine", "").lower() else "tp"
    dpa = arch.is_moe and (dpa_label in ("1", "true", "yes") or (not dpa_label and recipe == "ep-dp" and tp > 1))
    if ep is None:
        ep = tp if dpa else 1
    deployment = spec.Deployment(
        model=model,
        hardware=hardware,
        tp=tp,
        pp=pp,
        ep=ep,
        data_parallel_attention=dpa,
        precision=_precision(labels.get("precision", "")),
        kv_precision=_precision(labels["kv_precision"]) if labels.get("kv_precision", "").strip() else None,
        engine=engine if engine is not None else spec.EngineSpec(),
    )
    # A row on more GPUs than one instance uses ran several instances (data-parallel replicas behind one endpoint).
    replicas = gpus // (tp * pp) if gpus and gpus > tp * pp and gpus % (tp * pp) == 0 else 1
    return spec.PoolSpec(name="bench", deployment=deployment, perf=perf or spec.RooflinePerf(), replicas=replicas)


# --------------------------------------------------------------------------- reproducing a condition


@dataclass(frozen=True)
class HarnessOptions:
    """How benchmark conditions are reproduced in the simulator (module docstring)."""

    waves: float = 4.0
    warmup_waves: float = 1.0
    min_requests: int = 200
    max_horizon_s: float = 7200.0
    preset: Literal["auto", "scenario", "vllm", "sglang", "trtllm"] = "auto"
    admission: Literal["auto", "engine", "no-evict"] = "auto"  # deprecated: the preset's admission
    kv_free_fraction: float | None = None  # deprecated: the preset's KV rule
    seed: int = 0


def replace_model(model: Any, **changes: Any) -> Any:
    """A validated copy of a frozen pydantic model with some fields changed."""
    return type(model).model_validate({**model.model_dump(), **changes})


PerfAny = spec.RooflinePerf | spec.LinearPerf | spec.TablePerf | spec.CurvePerf


def with_perf(pool: spec.PoolSpec, perf: PerfAny, engine: Mapping[str, float] | None = None) -> spec.PoolSpec:
    """``pool`` with its perf replaced, and the engine knobs fitted with it (``frontend_s``) when given."""
    out: spec.PoolSpec = replace_model(pool, perf=perf.model_dump())
    if engine:
        knobs = replace_model(out.deployment.engine, **engine)
        out = replace_model(out, deployment=replace_model(out.deployment, engine=knobs))
    return out


def label_preset(labels: Mapping[str, str]) -> spec.EnginePreset | None:
    """The engine preset a row's ``engine`` label names (TensorRT-LLM, SGLang, vLLM), or None."""
    name = labels.get("engine", "").lower().replace("_", "-")
    if "tensorrt" in name or "trt-llm" in name or "trtllm" in name:
        return "trtllm"
    if "sglang" in name:
        return "sglang"
    if "vllm" in name:
        return "vllm"
    return None


def condition_engine(
    pool: spec.PoolSpec, m: Measurement, opts: HarnessOptions, catalog: Catalog | None = None
) -> spec.EngineSpec:
    """The engine condition ``m`` runs on ``pool``: its preset chosen by ``opts.preset`` (module docstring), the
    deprecated ``admission`` and ``kv_free_fraction`` overrides applied. Under ``preset: auto`` with a
    ``catalog``, the row's own engine settings win (:func:`agentsim.planning.calibrate.bench.engine_overrides`:
    vLLM V0 defaults, the published server flags, trtllm-bench's batch limits)."""
    engine = pool.deployment.engine
    preset: spec.EnginePreset = engine.preset
    if opts.preset == "auto" and opts.admission != "engine":
        preset = label_preset(m.labels) or engine.preset
    elif opts.preset in ("vllm", "sglang", "trtllm"):
        preset = opts.preset
    changes: dict[str, Any] = {"preset": preset}
    if opts.preset == "auto" and catalog is not None:
        changes |= _row_engine(pool, m, preset, catalog)
    if opts.admission == "no-evict":
        changes["admission"] = "guaranteed-no-evict"
    if opts.kv_free_fraction is not None:
        changes |= {"kv_memory": "of-free", "gpu_memory_utilization": opts.kv_free_fraction}
    out = spec.EngineSpec.model_validate({**engine.model_dump(exclude_none=True), **changes})
    if opts.preset == "auto" and catalog is not None:
        out = _started_with(pool, m, out, catalog)
    return out


def _row_engine(pool: spec.PoolSpec, m: Measurement, preset: spec.EnginePreset, catalog: Catalog) -> dict[str, Any]:
    """Engine knobs the row's labels fix (module docstring of :mod:`agentsim.planning.calibrate.bench`)."""
    from agentsim.serving.presets import TRTLLM_BENCH_SEQ_OVERHEAD_S, kv_precision

    dep = pool.deployment
    model = catalog.get_model(dep.model)
    out = engine_overrides(m, model)
    out.pop("pp", None)
    version = vllm_version(m.labels)
    if version is not None and version < ROWWISE_FP8_VLLM and catalog.get_hardware(dep.hardware).vendor == "amd":
        # before PyTorch's rowwise-scaled FP8 GEMM on ROCm, vLLM dequantized per-channel FP8 GEMMs unfused
        out.setdefault("fp8_dequant", "unfused")
    if preset == "trtllm" and measured_by_trtllm_bench(m):
        # trtllm-bench has no server: no detokenizing or streaming per request (serving/presets.py)
        out.setdefault("step_overhead_s_per_seq", TRTLLM_BENCH_SEQ_OVERHEAD_S)
    if preset == "trtllm" and uses_trtllm_bench(m, bench_load(m)):
        kv = kv_precision(dep.model_copy(update={"engine": dep.engine.model_copy(update={"preset": preset})}), model)
        seqs, tokens = trtllm_bench_settings(
            model,
            catalog.get_hardware(dep.hardware),
            tp=dep.tp,
            pp=dep.pp,
            precision=dep.precision,
            kv_bytes=2.0 if kv == "bf16" else 1.0,
            isl=m.isl,
            osl=m.osl,
        )
        # per rank, as the tool sets them (the engine counts TensorRT-LLM's limits per attention-DP rank)
        out = {"max_num_seqs": seqs, "max_batched_tokens": tokens, "chunked_prefill": False, **out}
    return out


def _started_with(
    pool: spec.PoolSpec, m: Measurement, engine: spec.EngineSpec, catalog: Catalog
) -> spec.EngineSpec:
    """``engine`` with its KV capacity raised to the ``--max-model-len`` a vLLM row's server started with, where the
    memory model leaves less: the server started, so its KV cache held one sequence of that length
    (:func:`agentsim.planning.calibrate.bench.vllm_max_model_len`; docs/FIDELITY.md, cause 22: vLLM's profile of a
    long unchunked budget). Decided on the engine the row runs, every override applied."""
    started = vllm_max_model_len(m) if engine.preset == "vllm" else None
    if started is None or engine.kv_capacity_tokens is not None:
        return engine
    modelled = kv_tokens(replace_model(pool, deployment=replace_model(pool.deployment, engine=engine)), catalog)
    return engine if modelled >= started else replace_model(engine, kv_capacity_tokens=started)


PRESET_KNOBS: Final[Mapping[str, str]] = MappingProxyType(
    {"kernel_latency_s": "kernel_latency_s", "overhead_s_per_seq": "step_overhead_s_per_seq"}
)
"""Roofline coefficients a calibration starts from the row's engine preset, by the engine field the preset fills:
the kernel time (10 us under CUDA graphs, 32 us eager) and the per-sequence cost (vLLM V1's, V0's, 0 for
``trtllm-bench``). A value fitted from one preset's start says nothing of rows whose preset starts elsewhere
(:func:`for_presets`)."""


def _filled(pool: spec.PoolSpec, engine: spec.EngineSpec, catalog: Catalog) -> spec.EngineSpec:
    """``engine`` on ``pool``'s deployment as :func:`agentsim.serving.presets.fill_engine` fills it."""
    from agentsim.serving.presets import fill_engine

    dep = pool.deployment.model_copy(update={"engine": engine})
    return fill_engine(dep, catalog.get_hardware(dep.hardware), catalog.get_model(dep.model)).engine


def preset_value(pool: spec.PoolSpec, engine: spec.EngineSpec, catalog: Catalog, knob: str) -> float:
    """The value the presets give ``engine``'s field ``knob`` on ``pool``'s deployment (the eager kernel time for an
    engine without CUDA graphs, vLLM V0's per-sequence cost for a V0 row); 0 where they give none."""
    return float(getattr(_filled(pool, engine, catalog), knob) or 0.0)


def preset_kernel_latency(pool: spec.PoolSpec, engine: spec.EngineSpec, catalog: Catalog) -> float:
    """The kernel time the presets give ``engine`` on ``pool``'s deployment (:func:`preset_value`)."""
    return preset_value(pool, engine, catalog, "kernel_latency_s")


def for_presets(
    pool: spec.PoolSpec, fitted_for: Mapping[str, float], engine: spec.EngineSpec, catalog: Catalog
) -> spec.PoolSpec:
    """``pool`` for a condition run on ``engine``: each roofline coefficient of :data:`PRESET_KNOBS` that
    ``fitted_for`` names was fitted from that preset value; where ``engine``'s preset gives another (an eager row
    under a kernel time fitted with CUDA graphs, a V0 row under a per-sequence cost fitted on V1 rows), the condition
    drops the fitted value and takes its own preset's. ``pool`` unchanged when nothing differs."""
    perf = pool.perf
    if not isinstance(perf, spec.RooflinePerf):
        return pool
    live = {name: v for name, v in fitted_for.items() if getattr(perf, name) is not None}
    if not live:
        return pool
    filled = _filled(pool, engine, catalog)
    drop = {name: None for name, v in live.items() if float(getattr(filled, PRESET_KNOBS[name]) or 0.0) != v}
    return pool.model_copy(update={"perf": perf.model_copy(update=drop)}) if drop else pool


def kv_tokens(pool: spec.PoolSpec, catalog: Catalog, free_fraction: float | None = None) -> int:
    """KV capacity of one replica of ``pool`` under its engine preset (``agentsim.resolve.resolve_engine``);
    with ``free_fraction``, TensorRT-LLM's rule: that fraction of the HBM the weights and the activation reserve
    leave. Raises :class:`agentsim.perf.DoesNotFitError` when nothing is left."""
    from agentsim.resolve import resolve_engine

    if free_fraction is not None:
        engine = pool.deployment.engine.model_copy(
            update={"kv_memory": "of-free", "gpu_memory_utilization": free_fraction}
        )
        pool = pool.model_copy(update={"deployment": pool.deployment.model_copy(update={"engine": engine})})
    dep = pool.deployment
    return resolve_engine(pool, catalog.get_model(dep.model), catalog.get_hardware(dep.hardware))[1]


@dataclass(frozen=True)
class Plan:
    """A condition's fixed simulation set-up: the pool's engine knobs, the load and the time window."""

    engine: spec.EngineSpec
    arrivals: spec.Poisson | spec.Closed
    horizon_s: float
    warmup_s: float
    lifetime_s: float
    step_overhead_s: float = 0.002  # the preset's, for a roofline whose overhead_s is unset
    finite: bool = False  # exactly the arrivals' agents send one request each, all measured (a burst)
    step_overhead_s_per_seq: float = 0.0  # the preset's, for a roofline whose overhead_s_per_seq is unset


def plan_condition(pool: spec.PoolSpec, m: Measurement, catalog: Catalog, opts: HarnessOptions) -> Plan:
    """The fixed set-up of condition ``m`` on ``pool``: admission cap, load and window, sized by ``pool``'s perf
    model (module docstring). A search plans once, from its starting coefficients."""
    from agentsim.perf import build_perf
    from agentsim.resolve import resolve_engine

    engine = condition_engine(pool, m, opts, catalog)
    load = bench_load(m)
    pool = replace_model(pool, deployment=replace_model(pool.deployment, engine=engine))
    dep = pool.deployment
    filled, kv, config = resolve_engine(pool, catalog.get_model(dep.model), catalog.get_hardware(dep.hardware))
    # Guaranteed-no-evict admits a call only with its whole output reserved; the others hold half on average.
    per_seq = m.isl + m.osl if config.admission == NO_EVICT else m.isl + m.osl / 2.0
    cap = max(1, min(config.max_num_seqs, int(kv // max(per_seq, 1.0))))
    replicas = max(1, pool.replicas)
    perf = build_perf(filled, catalog)
    budget = config.max_batched_tokens
    chunk = float(min(m.isl, budget))
    t_pf = perf.step_time(chunk, 0.0, 0.0) / chunk if chunk > 0 else 0.0

    def lifetime(batch: float) -> float:
        b = max(1.0, min(batch, float(cap)))
        return b * m.isl * t_pf + m.osl * perf.step_time(0.0, b, b * (m.isl + m.osl / 2.0))

    overhead = filled.deployment.engine.step_overhead_s
    step_overhead = 0.002 if overhead is None else overhead
    seq_overhead = filled.deployment.engine.step_overhead_s_per_seq or 0.0
    plan = _plan(engine, m, load, cap, replicas, lifetime, opts, step_overhead)
    return dataclasses.replace(plan, step_overhead_s_per_seq=seq_overhead)


def _plan(
    engine: spec.EngineSpec,
    m: Measurement,
    load: BenchLoad,
    cap: int,
    replicas: int,
    lifetime: Any,
    opts: HarnessOptions,
    step_overhead: float,
) -> Plan:
    """:func:`plan_condition` once the engine, its admission cap and the lifetime of a request are known."""
    if load.finite:
        return _finite_plan(engine, m, load, cap * replicas, lifetime, opts, step_overhead)
    if load.mode == "poisson":
        assert m.qps is not None
        rate = m.qps / replicas
        batch = 1.0
        for _ in range(8):
            batch = max(1.0, min(float(cap), rate * lifetime(batch)))
        life = lifetime(batch)
        warmup = opts.warmup_waves * life
        horizon = warmup + max(opts.waves * life, opts.min_requests / m.qps)
        arrivals: spec.Poisson | spec.Closed = spec.Poisson(rate_per_s=m.qps)
    else:
        if load.mode == "closed" and m.concurrency is not None:
            agents = max(1, round(m.concurrency))
            batch = agents / replicas
        else:
            batch = float(cap)
            agents = replicas * (cap + max(8, cap // 4))
        life = lifetime(batch)
        warmup = (1.0 + opts.warmup_waves) * life
        horizon = warmup + opts.waves * life
        arrivals = spec.Closed(agents=agents, ramp_s=life)
    horizon = min(horizon, opts.max_horizon_s)
    warmup = min(warmup, 0.5 * horizon)
    return Plan(engine, arrivals, horizon, warmup, life, step_overhead)


FINITE_HORIZON_FACTOR = 3.0
"""A finite run's horizon over its estimated duration (waves of the batch cap, each one request lifetime)."""


def _finite_plan(
    engine: spec.EngineSpec,
    m: Measurement,
    load: BenchLoad,
    cap: int,
    lifetime: Any,
    opts: HarnessOptions,
    step_overhead: float,
) -> Plan:
    """A finite run (module docstring of :mod:`agentsim.planning.calibrate.bench`): ``n`` clients that each send
    one request, at time 0 (a burst) or uniformly over ``n / qps`` (Poisson arrivals given their number); no
    warm-up; a horizon a few times the estimated duration, so that every request completes."""
    n = int(load.requests or 1)
    ramp = n / m.qps if load.mode == "poisson" and m.qps else 0.0
    batch = float(min(n, cap))
    life = float(lifetime(batch))
    duration = ramp + math.ceil(n / max(batch, 1.0)) * life
    horizon = max(FINITE_HORIZON_FACTOR * duration, ramp + 2.0 * life)
    arrivals = spec.Closed(agents=n, ramp_s=ramp, think_s=spec.Constant(value=FINITE_THINK_S))
    return Plan(engine, arrivals, horizon, 0.0, life, step_overhead, finite=True)


def condition_scenario(
    pool: spec.PoolSpec,
    m: Measurement,
    catalog: Catalog | None = None,
    options: HarnessOptions | None = None,
) -> spec.Scenario:
    """The scenario that reproduces benchmark condition ``m`` on ``pool`` (module docstring)."""
    catalog = catalog if catalog is not None else load_catalog()
    plan = plan_condition(pool, m, catalog, options or HarnessOptions())
    return scenario_for(pool, m, plan, (options or HarnessOptions()).seed)


def scenario_for(pool: spec.PoolSpec, m: Measurement, plan: Plan, seed: int) -> spec.Scenario:
    """The scenario of condition ``m`` on ``pool`` (whose perf may differ from the planning one) under ``plan``."""
    deployment = replace_model(pool.deployment, engine=plan.engine)
    fixed = spec.FixedProfile(
        prompt_tokens=spec.Constant(value=round(m.isl)), output_tokens=spec.Constant(value=round(m.osl))
    )
    return spec.Scenario(
        name="bench",
        seed=seed,
        horizon_s=plan.horizon_s,
        warmup_s=plan.warmup_s,
        sample_interval_s=plan.horizon_s,
        workload=[spec.WorkloadSpec(name="bench", profile=fixed, arrivals=plan.arrivals)],
        cluster=spec.ClusterSpec(
            pools=[replace_model(pool, deployment=deployment, replicas=max(1, pool.replicas))],
            router=spec.LeastLoad(),
        ),
        pricing=spec.Rental(usd_per_gpu_hour=1.0),
    )


def _predict(scenario: spec.Scenario, catalog: Catalog) -> dict[str, float | None]:
    """Simulate a condition's scenario; its metrics. In a closed loop with zero think time the throughput
    follows from the interactive response-time law ``X = N / R`` (``N`` agents, ``R`` mean request latency in the
    window) times the output tokens per request: exact in steady state and smooth in the coefficients, whereas
    counting the tokens of a short window jumps by a whole step's tokens as coefficients move (which stalls
    the search). Open loops (and closed loops where no request completed in the window) count tokens. A finite
    run (each client sends one request: a burst) reports what the benchmark tools report: every output token over
    the time from the start to the last completion, and the mean TTFT and TPOT of all its requests."""
    from agentsim.api import run

    workload = scenario.workload[0]
    finite = _is_finite(workload)

    def measured(result: Any) -> bool:
        # The horizon was planned from the starting coefficients (an estimate): a burst must finish every request;
        # a loop, a call completed in its window unless none still runs (else a metric would be missing)
        if finite:
            return _all_done(result.calls)
        return bool(result.summary.get("calls_completed")) or not result.summary.get("calls_unfinished")

    result = run(scenario, catalog=catalog)
    for _ in range(FINITE_RETRIES):
        if measured(result):
            break
        scenario = replace_model(scenario, horizon_s=FINITE_EXTEND * scenario.horizon_s)
        result = run(scenario, catalog=catalog)
    if finite:
        return _finite_metrics(result.calls, result.summary, scenario.horizon_s)
    summary = result.summary
    throughput = summary.get("output_tokens_per_s")
    e2e = (summary.get("call_e2e_s") or {}).get("mean")
    if (
        isinstance(workload, spec.WorkloadSpec)
        and isinstance(workload.arrivals, spec.Closed)
        and isinstance(workload.profile, spec.FixedProfile)
        and isinstance(workload.profile.output_tokens, spec.Constant)
        and e2e
    ):
        throughput = workload.arrivals.agents * workload.profile.output_tokens.value / e2e
    return {
        "output_tok_s": throughput,
        "ttft_s": (summary.get("ttft_s") or {}).get("mean"),
        "tpot_s": (summary.get("tpot_s") or {}).get("mean"),
    }


FINITE_RETRIES = 4
FINITE_EXTEND = 4.0
"""A finite run whose requests did not all complete by its horizon, or a closed or open loop with no call completed
in its window, runs again with the horizon this many times longer, up to :data:`FINITE_RETRIES` times (the planned
duration is an estimate)."""


def _all_done(calls: Any) -> bool:
    import numpy as np

    done = np.asarray(calls.column("done_s").to_numpy(zero_copy_only=False), dtype=float)
    return bool(np.isfinite(done).all())


def _is_finite(workload: Any) -> bool:
    return (
        isinstance(workload, spec.WorkloadSpec)
        and isinstance(workload.arrivals, spec.Closed)
        and isinstance(workload.arrivals.think_s, spec.Constant)
        and workload.arrivals.think_s.value >= FINITE_THINK_S
    )


def _finite_metrics(calls: Any, summary: Mapping[str, Any], horizon_s: float) -> dict[str, float | None]:
    """Output tokens/s of a finite run: generated tokens over the time to the last completion (the horizon when a
    request did not complete), with the summary's mean TTFT and TPOT (no warm-up: every request)."""
    import numpy as np

    done = np.asarray(calls.column("done_s").to_numpy(zero_copy_only=False), dtype=float)
    generated = float(np.sum(calls.column("generated_tokens").to_numpy()))
    finished = np.isfinite(done)
    end = float(np.max(done[finished])) if finished.all() and finished.size else horizon_s
    return {
        "output_tok_s": generated / end if end > 0 else None,
        "ttft_s": (summary.get("ttft_s") or {}).get("mean"),
        "tpot_s": (summary.get("tpot_s") or {}).get("mean"),
    }


class Runner:
    """Simulates lists of scenarios, in this process or in a pool of worker processes, each on ``catalog`` (the
    worker processes receive it pickled: an in-memory catalog, such as a fit's candidate, reaches them whole)."""

    def __init__(self, catalog: Catalog, jobs: int = 1) -> None:
        self.catalog = catalog
        self.jobs = jobs
        self._pool: Any = None

    def __enter__(self) -> Runner:
        if self.jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            from agentsim.planning.sweep import die_with_parent

            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=die_with_parent)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def run(self, scenarios: Sequence[spec.Scenario]) -> list[dict[str, float | None]]:
        """Predicted metrics of each scenario, in order."""
        if self._pool is None or len(scenarios) < 2:
            return [_predict(s, self.catalog) for s in scenarios]
        return list(self._pool.map(_predict, scenarios, [self.catalog] * len(scenarios)))


def simulate_points(
    pool: spec.PoolSpec | Sequence[spec.PoolSpec],
    measurements: Sequence[Measurement],
    catalog: Catalog | None = None,
    options: HarnessOptions | None = None,
    *,
    jobs: int = 1,
) -> list[dict[str, float | None]]:
    """Predicted metrics for each measurement on ``pool`` (one pool for all, or one per measurement)."""
    catalog = catalog if catalog is not None else load_catalog()
    opts = options or HarnessOptions()
    pools = list(pool) if isinstance(pool, Sequence) else [pool] * len(measurements)
    scenarios = [
        scenario_for(p, m, plan_condition(p, m, catalog, opts), opts.seed)
        for p, m in zip(pools, measurements, strict=True)
    ]
    with Runner(catalog, jobs) as runner:
        return runner.run(scenarios)
