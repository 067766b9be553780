"""The scenario: everything a user can say about a run, as one typed, frozen tree.

A scenario names a workload (agent profiles and how tasks arrive), a cluster (pools of replicas of a
deployment, each with a throughput curve, and a router) and a pricing rule. It is pure data: pydantic v2
models, ``frozen=True`` and ``extra="forbid"`` so a typo is an error rather than a silently ignored key, and
polymorphism by tagged unions on ``kind`` so error messages name the variant that failed. Nothing here has
behaviour; the layers below read these objects and never mutate them.

Checks that need the catalog (does the model fit the memory, is ``tp`` a divisor of the GPUs per node) live in
:mod:`agentsim.resolve`, because the spec itself knows no data files.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Tag,
    model_validator,
)


class Strict(BaseModel):
    """Base of every spec model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- distributions


class Constant(Strict):
    """Always ``value``."""

    kind: Literal["constant"] = "constant"
    value: NonNegativeFloat


class Uniform(Strict):
    """Uniform on ``[low, high]``."""

    kind: Literal["uniform"] = "uniform"
    low: NonNegativeFloat
    high: NonNegativeFloat

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class Exponential(Strict):
    """Exponential with the given mean (CV 1)."""

    kind: Literal["exponential"] = "exponential"
    mean: PositiveFloat


class Lognormal(Strict):
    """Lognormal given by its ``median`` and the shape ``sigma`` (std-dev of the log).

    ``p90 = median * exp(1.2816 * sigma)``; ``mean = median * exp(sigma**2 / 2)``. Optionally clipped.
    """

    kind: Literal["lognormal"] = "lognormal"
    median: PositiveFloat
    sigma: NonNegativeFloat
    min: NonNegativeFloat | None = None
    max: PositiveFloat | None = None

    @model_validator(mode="after")
    def _clip_ordered(self) -> Lognormal:
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Gamma(Strict):
    """Gamma with the given mean and coefficient of variation (std/mean)."""

    kind: Literal["gamma"] = "gamma"
    mean: PositiveFloat
    cv: PositiveFloat


class Empirical(Strict):
    """Draw from ``values`` with optional ``weights`` (normalised)."""

    kind: Literal["empirical"] = "empirical"
    values: list[NonNegativeFloat] = Field(min_length=1)
    weights: list[NonNegativeFloat] | None = None

    @model_validator(mode="after")
    def _weights(self) -> Empirical:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"weights has {len(self.weights)} entries but values has {len(self.values)}")
            if sum(self.weights) <= 0:
                raise ValueError("weights must not all be zero")
        return self


Dist = Annotated[Constant | Uniform | Exponential | Lognormal | Gamma | Empirical, Field(discriminator="kind")]
"""A distribution of a non-negative quantity (tokens, seconds, counts)."""


# --------------------------------------------------------------------------- workload


class FanOut(Strict):
    """Parallel sub-agents: after ``at_step`` lead steps, ``subagents`` chains run in parallel and a join call
    waits for all of them. Each sub-agent starts from the lead's context as its cacheable prefix. The join is an
    extra call, not one of the lead's ``steps``; after it the lead makes its remaining ``steps - at_step``."""

    subagents: Dist
    at_step: PositiveInt = 1
    steps: Dist
    result_tokens: Dist = Field(description="tokens each sub-agent's result adds to the lead's context")


class AgentProfile(Strict):
    """An agent template: a chain of calls whose context grows step by step.

    ``prompt(1) = system + task``; ``prompt(k) = prompt(k-1) + output(k-1) + tool_result(k-1)``; the previous
    prompt is the cacheable prefix of the next call. ``system_prompt_tokens`` is shared by every task of the
    workload when ``shared_system_prompt`` (a policy or tool-schema prompt), so it is a cross-task prefix.
    """

    kind: Literal["agent"] = "agent"
    system_prompt_tokens: Dist = Constant(value=2000)
    shared_system_prompt: bool = True
    task_prompt_tokens: Dist = Constant(value=500)
    steps: Dist = Constant(value=10)
    output_tokens: Dist = Constant(value=300)
    tool_result_tokens: Dist = Constant(value=500)
    tool_s: Dist = Constant(value=2.0)
    gap: Literal["tool", "think"] = Field(
        "tool",
        description="what the time between steps is: a tool call (runs on the cluster's tool pool when there "
        "is one) or human think time (never queues)",
    )
    fanout: FanOut | None = None
    context_limit_tokens: PositiveInt = 200_000
    compact_to_tokens: PositiveInt = Field(
        20_000, description="context after compaction when the next prompt would pass the limit"
    )

    @model_validator(mode="after")
    def _compaction(self) -> AgentProfile:
        if self.compact_to_tokens >= self.context_limit_tokens:
            raise ValueError(
                f"compact_to_tokens ({self.compact_to_tokens}) must be below "
                f"context_limit_tokens ({self.context_limit_tokens})"
            )
        return self


class FixedProfile(Strict):
    """One call per task with the given prompt and output tokens and no shared prefix: the shape of serving
    benchmarks (fixed ISL/OSL), for calibration and comparison with published figures."""

    kind: Literal["fixed"] = "fixed"
    prompt_tokens: Dist
    output_tokens: Dist


Profile = Annotated[AgentProfile | FixedProfile, Field(discriminator="kind")]


class Poisson(Strict):
    """Tasks arrive as a Poisson process (exponential inter-arrival times)."""

    kind: Literal["poisson"] = "poisson"
    rate_per_s: PositiveFloat


class GammaArrivals(Strict):
    """Renewal process with gamma inter-arrival times: mean ``1/rate_per_s``, coefficient of variation ``cv``
    (cv > 1 is burstier than Poisson, cv < 1 smoother)."""

    kind: Literal["gamma"] = "gamma"
    rate_per_s: PositiveFloat
    cv: PositiveFloat


class Closed(Strict):
    """A fixed population of agents: each starts its next task ``think_s`` after its last one ended."""

    kind: Literal["closed"] = "closed"
    agents: PositiveInt
    think_s: Dist = Constant(value=0.0)
    ramp_s: NonNegativeFloat = Field(
        0.0, description="agents start uniformly spread over [0, ramp_s) so they do not all arrive at t=0"
    )


Arrivals = Annotated[Poisson | GammaArrivals | Closed, Field(discriminator="kind")]


class Slo(Strict):
    """Service-level objectives. A call meets its SLO when its TTFT and TPOT are within the targets; a task
    when its duration is. ``*_p99_s`` style names: the target is on that percentile of the run."""

    ttft_s: PositiveFloat | None = Field(None, description="per-call TTFT target")
    tpot_s: PositiveFloat | None = Field(None, description="per-call time-per-output-token target")
    task_s: PositiveFloat | None = Field(None, description="per-task duration target")
    ttft_p99_s: PositiveFloat | None = None
    tpot_p99_s: PositiveFloat | None = None
    task_p95_s: PositiveFloat | None = None


class WorkloadSpec(Strict):
    """One stream of synthetic tasks: a profile, its arrivals and its SLOs.

    ``profile`` is a built-in name (``agentsim catalog``) or an inline profile; ``overrides`` changes fields of
    a named profile (validated like the profile itself).
    """

    kind: Literal["synthetic"] = "synthetic"
    name: str | None = None
    profile: str | Profile = "coding-agent"
    overrides: dict[str, object] = Field(default_factory=dict)
    arrivals: Arrivals = Poisson(rate_per_s=0.1)
    slo: Slo = Slo()
    max_tasks: PositiveInt | None = Field(None, description="stop issuing new tasks after this many")

    @property
    def label(self) -> str:
        """The workload's name in tables: ``name``, else the profile's name or kind."""
        if self.name:
            return self.name
        if isinstance(self.profile, str):
            return self.profile
        return self.profile.kind


class TraceWorkload(Strict):
    """Tasks replayed from a trace file in agentsim's canonical format (``agentsim trace import``).

    ``mode: open`` releases every call at its recorded time, whatever the cluster does (the trace's timing is
    kept). ``mode: closed`` starts each task at its recorded time but then honours the calls' dependencies and
    gaps, so a slower cluster delays later steps: the agentic feedback loop. What-ifs: ``rate_scale``
    multiplies the arrival rate of tasks (start and release times are divided by it); ``time_scale`` stretches
    every duration of the trace (start and release times and gaps: tool and think time).
    """

    kind: Literal["trace"] = "trace"
    name: str | None = None
    path: str
    mode: Literal["open", "closed"] = "closed"
    time_scale: PositiveFloat = 1.0
    rate_scale: PositiveFloat = 1.0
    slo: Slo = Slo()
    max_tasks: PositiveInt | None = Field(None, description="replay only the first tasks")

    @property
    def label(self) -> str:
        """The workload's name in tables: ``name``, else the trace file's stem."""
        return self.name or PurePath(self.path).stem


def _workload_kind(v: object) -> str:
    kind = v.get("kind", "synthetic") if isinstance(v, dict) else getattr(v, "kind", "synthetic")
    return "trace" if kind == "trace" else "synthetic"


AnyWorkload = Annotated[
    Annotated[WorkloadSpec, Tag("synthetic")] | Annotated[TraceWorkload, Tag("trace")],
    Discriminator(_workload_kind),
]


# --------------------------------------------------------------------------- cluster


class EngineSpec(Strict):
    """Serving-engine knobs, vLLM's names where they exist."""

    max_num_seqs: PositiveInt = 256
    max_batched_tokens: PositiveInt = 8192
    chunked_prefill: bool = True
    prefix_caching: bool = True
    block_size_tokens: PositiveInt = 16
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    kv_capacity_tokens: PositiveInt | None = Field(
        None, description="override the KV capacity derived from memory (tokens per replica)"
    )

    @model_validator(mode="after")
    def _budget(self) -> EngineSpec:
        if self.max_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_batched_tokens ({self.max_batched_tokens}) must be >= max_num_seqs ({self.max_num_seqs}): "
                "every running sequence takes one token of the step budget when it decodes"
            )
        return self


Precision = Literal["bf16", "fp8", "fp4"]


class Deployment(Strict):
    """Model x hardware x parallelism x precision x engine knobs."""

    model: str
    hardware: str
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    precision: Precision = "bf16"
    kv_precision: Precision | None = Field(None, description="KV-cache precision; default: as the weights")
    engine: EngineSpec = EngineSpec()
    # --- issue 4: expert and data parallelism, memory tiers (see agentsim.perf.roofline / perf.memory)
    ep: PositiveInt = Field(
        1, description="expert parallelism: each MoE layer's experts are split over ep of a stage's tp GPUs"
    )
    data_parallel_attention: bool = Field(
        False,
        description="attention replicated on each of the tp GPUs, each serving its own sequences (DP attention); "
        "MoE layers then exchange tokens all-to-all over ep = tp GPUs. KV is not replicated",
    )
    weights_memory: Literal["auto", "hbm", "ddr"] = Field(
        "auto",
        description="where the weights live on hardware with a DDR tier: hbm; ddr (read at DDR bandwidth); auto: "
        "HBM when they fit, else HBM caches what fits and the rest is read from DDR",
    )

    @model_validator(mode="after")
    def _parallelism(self) -> Deployment:
        if self.tp % self.ep:
            raise ValueError(f"ep ({self.ep}) must divide tp ({self.tp}): experts are split within a stage")
        if self.data_parallel_attention and self.ep != self.tp:
            raise ValueError(f"data_parallel_attention needs ep == tp (got ep {self.ep}, tp {self.tp})")
        return self

    @property
    def gpus(self) -> int:
        """Accelerators per replica."""
        return self.tp * self.pp


class RooflinePerf(Strict):
    """Step time from catalog specs and the model's architecture:
    ``max(compute / MFU, memory / MBU) + overhead``."""

    kind: Literal["roofline"] = "roofline"
    mfu: float = Field(0.5, gt=0, le=1, description="achieved fraction of peak dense FLOPS")
    mbu: float = Field(0.7, gt=0, le=1, description="achieved fraction of peak HBM bandwidth")
    overhead_s: NonNegativeFloat = Field(0.002, description="fixed per-step cost (scheduling, launches)")
    comm_efficiency: float = Field(
        0.8, gt=0, le=1, description="achieved fraction of the scale-up link bandwidth in collectives"
    )
    collective_latency_s: NonNegativeFloat = Field(
        5e-6, description="fixed cost of one collective (all-reduce, all-to-all, pipeline send) per step"
    )


class LinearPerf(Strict):
    """``step_s = alpha + beta * prefill_tokens + gamma * context_tokens + delta * decode_seqs``."""

    kind: Literal["linear"] = "linear"
    alpha_s: NonNegativeFloat
    beta_s_per_prefill_token: NonNegativeFloat = 0.0
    gamma_s_per_context_token: NonNegativeFloat = 0.0
    delta_s_per_seq: NonNegativeFloat = 0.0


class TablePoint(Strict):
    """One measured step: its shape and its duration."""

    prefill_tokens: NonNegativeFloat
    decode_seqs: NonNegativeFloat
    context_tokens: NonNegativeFloat
    step_s: PositiveFloat


class TablePerf(Strict):
    """Interpolation over measured steps (linear in each axis over the points' grid).

    The steps are given inline (``points``) or read from ``path``: ``format: csv`` is a generic table of step
    latency vs (prefill tokens, decode sequences, context tokens); ``format: splitwise`` is the Splitwise
    simulator's ``perf_model.csv`` (prefill and per-iteration decode times of static batches), with ``select``
    picking the rows of one model, hardware and tensor parallelism (``agentsim.perf.table`` gives the mapping).

    ``out_of_range``: ``clip`` holds the edge value, ``extrapolate`` continues the edge slope, ``error``
    stops the run. Points outside the table are counted in the results either way.
    """

    kind: Literal["table"] = "table"
    points: list[TablePoint] = Field(default_factory=list)
    path: str | None = Field(None, description="CSV file of measured steps instead of inline points")
    format: Literal["csv", "splitwise"] = "csv"
    select: dict[str, str | float] = Field(
        default_factory=dict, description="keep only CSV rows with these column values"
    )
    out_of_range: Literal["clip", "extrapolate", "error"] = "clip"

    @model_validator(mode="after")
    def _one_source(self) -> TablePerf:
        if bool(self.points) == (self.path is not None):
            raise ValueError("give either points or path (a CSV file), not both and not neither")
        return self


class CurvePoint(Strict):
    """One point of a throughput sweep: output tokens/s at a concurrency (requests in flight)."""

    concurrency: PositiveFloat
    output_tokens_per_s: PositiveFloat


class CurvePerf(Strict):
    """Output tokens/s vs concurrency, as InferenceX-style sweeps publish it, turned into step times.

    Decode step time at batch ``B`` is ``B / tokens_per_s(B)`` minus the share of engine time the sweep spent on
    prefill, interpolated linearly in ``B``, corrected for context away from the sweep's ``input_tokens +
    output_tokens / 2`` by the KV read time, and never below the physical roofline; prefill costs
    ``1 / prefill_tokens_per_s`` per token, or the ``roofline``'s marginal time when no prefill figure is given
    (``agentsim.perf.curve`` explains the mapping). ``per: gpu`` multiplies the figures by the replica's GPUs.
    """

    kind: Literal["curve"] = "curve"
    points: list[CurvePoint] = Field(default_factory=list)
    path: str | None = Field(None, description="CSV with concurrency and output tokens/s columns")
    select: dict[str, str | float] = Field(
        default_factory=dict, description="keep only CSV rows with these column values"
    )
    per: Literal["replica", "gpu"] = "replica"
    input_tokens: PositiveInt = Field(1024, description="prompt tokens per request in the sweep (ISL)")
    output_tokens: PositiveInt = Field(1024, description="output tokens per request in the sweep (OSL)")
    prefill_tokens_per_s: PositiveFloat | None = Field(
        None, description="measured prefill throughput per replica (per GPU with per: gpu); default: roofline"
    )
    subtract_prefill: bool = Field(True, description="remove the sweep's prefill time from its decode steps")
    roofline: RooflinePerf = Field(
        default_factory=RooflinePerf, description="for prefill without a figure, context correction, floor"
    )

    @model_validator(mode="after")
    def _one_source(self) -> CurvePerf:
        if bool(self.points) == (self.path is not None):
            raise ValueError("give either points or path (a CSV file), not both and not neither")
        return self


PerfSpec = Annotated[RooflinePerf | LinearPerf | TablePerf | CurvePerf, Field(discriminator="kind")]


class Autoscale(Strict):
    """Scale a pool between ``min_replicas`` and ``max_replicas``.

    Every ``interval_s`` the policy looks at the pool's active replicas: ``metric: utilization`` is their
    continuous-batching load over the last interval (the share of time spent on token work beyond the fixed
    per-step cost; 1 at saturation), ``metric: queue`` the mean number of waiting calls per replica now. Above
    ``target`` by more than ``tolerance`` (relative) it adds ``ceil(n * (value/target - 1))`` replicas, which
    start serving after ``cold_start_s``; below, it drains the same proportion: a draining replica takes no new
    calls, finishes what it holds, and is then removed. Cost counts every replica from the moment it is
    requested until it is removed.
    """

    metric: Literal["utilization", "queue"] = "utilization"
    target: PositiveFloat = 0.7
    tolerance: float = Field(0.1, ge=0, description="relative dead band around the target")
    min_replicas: PositiveInt = Field(1, description="at least one replica always takes calls")
    max_replicas: PositiveInt = 64
    interval_s: PositiveFloat = 30.0
    cold_start_s: NonNegativeFloat = 60.0

    @model_validator(mode="after")
    def _bounds(self) -> Autoscale:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        return self


class PoolSpec(Strict):
    """A set of identical replicas with one role.

    ``unified`` replicas prefill and decode the calls routed to them. ``prefill`` replicas compute a call's
    prompt and its first token, then send its KV over the cluster's ``kv_link`` to a ``decode`` replica, which
    generates the rest (disaggregated serving, as in DistServe or NVIDIA Dynamo's xPyD).
    """

    name: str
    role: Literal["unified", "prefill", "decode"] = "unified"
    deployment: Deployment
    perf: PerfSpec = RooflinePerf()
    replicas: int = Field(1, ge=0, description="replicas at the start (the autoscaler may change it)")
    autoscale: Autoscale | None = None

    @model_validator(mode="after")
    def _autoscale_bounds(self) -> PoolSpec:
        a = self.autoscale
        if a is not None and not a.min_replicas <= self.replicas <= a.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must lie within autoscale [{a.min_replicas}, {a.max_replicas}]"
            )
        return self


class RoundRobin(Strict):
    """Calls go to replicas in turn."""

    kind: Literal["round-robin"] = "round-robin"


class LeastLoad(Strict):
    """Calls go to the replica with the fewest outstanding tokens (prompt still to compute + output still to
    generate); ties to the lowest index."""

    kind: Literal["least-load"] = "least-load"


class SessionAffinity(Strict):
    """A task's calls stay on the replica its first call went to (chosen by least load)."""

    kind: Literal["session-affinity"] = "session-affinity"


class PrefixAware(Strict):
    """Calls go to the replica holding the longest cached prefix of their prompt; ties to the least load.

    Only replicas whose load is within ``balance_tokens`` of the least-loaded one are candidates (as SGLang's
    cache-aware router balances): otherwise every task that starts with a shared system prompt would follow
    the first replica that cached it, and that replica would drown while the others idle.
    """

    kind: Literal["prefix-aware"] = "prefix-aware"
    balance_tokens: int = Field(
        100_000, ge=0, description="how far above the least load a replica may be and still win on prefix"
    )


RouterSpec = Annotated[RoundRobin | LeastLoad | SessionAffinity | PrefixAware, Field(discriminator="kind")]


class KvLink(Strict):
    """The link a prefill replica sends KV over to a decode replica (RDMA NIC, NVLink between trays...).

    A transfer of ``B`` bytes takes ``B / bandwidth + latency``; each prefill replica sends one transfer at a time
    (its NIC is a FIFO server), so transfers queue when prompts are long and frequent.
    """

    bandwidth_gb_s: PositiveFloat = Field(50.0, description="per prefill replica, GB/s (400 Gb/s RDMA = 50)")
    latency_s: NonNegativeFloat = 0.0005


class ToolPool(Strict):
    """CPU workers that run agents' tool calls (the gaps marked as tool time in the profiles).

    A tool call takes one worker for its duration divided by ``speedup``; when every worker is busy tool calls
    queue (FIFO), so tool time depends on load. Price and power per core from the catalog's CPU entry.
    """

    cpu: str = "xeon6-6980p"
    workers: PositiveInt = Field(description="concurrent tool calls (e.g. cores)")
    speedup: PositiveFloat = Field(1.0, description="tool durations are divided by this (faster CPUs)")


class ClusterSpec(Strict):
    """Pools of replicas and the router in front of them.

    Calls enter at a ``unified`` or ``prefill`` replica chosen by ``router``; a prefilled call continues at a
    ``decode`` replica chosen by ``decode_router`` after its KV crossed ``kv_link``.
    """

    pools: list[PoolSpec] = Field(min_length=1)
    router: RouterSpec = LeastLoad()
    decode_router: RouterSpec = LeastLoad()
    kv_link: KvLink = KvLink()
    tools: ToolPool | None = None

    @model_validator(mode="after")
    def _unique_pools(self) -> ClusterSpec:
        names = [p.name for p in self.pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pool names must be unique; repeated: {', '.join(dupes)}")
        if sum(p.replicas for p in self.pools) == 0 and not any(p.autoscale for p in self.pools):
            raise ValueError("the cluster has no replicas")
        roles = {p.role for p in self.pools}
        if "prefill" in roles and "decode" not in roles:
            raise ValueError("a prefill pool needs a decode pool to send its calls to")
        if "decode" in roles and "prefill" not in roles:
            raise ValueError("a decode pool needs a prefill pool to receive calls from")
        if roles == {"decode"}:
            raise ValueError("calls enter at a unified or prefill pool")
        models = {p.deployment.model for p in self.pools if p.role != "unified"}
        if len(models) > 1:
            raise ValueError(
                f"prefill and decode pools must serve one model (KV moves between them); got {sorted(models)}"
            )
        return self


# --------------------------------------------------------------------------- pricing


PriceTier = Literal["rental_3y", "own_hyperscaler", "own_neocloud"]


Pue = Annotated[float, Field(ge=1.0, description="facility power usage effectiveness")]
DecodePowerFraction = Annotated[
    float,
    Field(
        gt=0,
        le=1,
        description="accelerator power in decode-only steps, as a fraction of TDP (steps that compute prompt "
        "tokens draw TDP). Splitwise measured ~380 W decode vs ~700 W prefill on H100",
    ),
]
"""Power settings shared by both pricing kinds."""


class Rental(Strict):
    """$/GPU-hour from the catalog's price table (``tier``) or given explicitly."""

    kind: Literal["rental"] = "rental"
    tier: PriceTier = "rental_3y"
    usd_per_gpu_hour: PositiveFloat | None = Field(None, description="override the catalog price")
    pue: Pue = 1.3
    decode_power_fraction: DecodePowerFraction = 0.54


class Tco(Strict):
    """Owned hardware: ``C_hr = (capex * CRF(r, n) + opex_per_year) / 8760 + kW_all_in * PUE * $/kWh``."""

    kind: Literal["tco"] = "tco"
    capex_usd_per_gpu: PositiveFloat
    years: PositiveFloat = 4.0
    interest_rate: NonNegativeFloat = 0.08
    opex_usd_per_gpu_year: NonNegativeFloat = 0.0
    kw_all_in_per_gpu: PositiveFloat | None = Field(None, description="default: the catalog's all-in kW")
    pue: Pue = 1.3
    decode_power_fraction: DecodePowerFraction = 0.54
    usd_per_kwh: NonNegativeFloat = 0.08


PricingSpec = Annotated[Rental | Tco, Field(discriminator="kind")]


# --------------------------------------------------------------------------- scenario


class Scenario(Strict):
    """One simulated run: workload x cluster x pricing over ``horizon_s`` of simulated time."""

    name: str = "scenario"
    seed: int = Field(0, ge=0)
    horizon_s: PositiveFloat = 600.0
    warmup_s: NonNegativeFloat = Field(0.0, description="excluded from summary statistics")
    sample_interval_s: PositiveFloat = Field(10.0, description="period of the replicas time series")
    workload: list[AnyWorkload] = Field(min_length=1)
    cluster: ClusterSpec
    pricing: PricingSpec = Rental()
    catalog: list[str] = Field(
        default_factory=list,
        description="user catalog YAML files (hardware, cpus, models, prices) added to the built-in catalog in "
        "order, replacing entries of the same id; paths relative to the working directory",
    )

    @model_validator(mode="after")
    def _window(self) -> Scenario:
        if self.warmup_s >= self.horizon_s:
            raise ValueError(f"warmup_s ({self.warmup_s}) must be below horizon_s ({self.horizon_s})")
        labels = [w.label for w in self.workload]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"workload names must be unique (set `name`); repeated: {', '.join(dupes)}")
        return self
