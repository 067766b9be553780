"""The cluster: pools of replicas of a deployment, their step-time models, and what connects them.

A :class:`PoolSpec` is a number of identical replicas of one :class:`Deployment` (model x hardware x
parallelism x precision x :class:`EngineSpec` knobs) in one role (unified, or prefill/decode for disaggregated
serving), with a perf model (:data:`PerfSpec`: roofline, linear, measured table or published throughput curve)
and optionally an :class:`Autoscale` policy. :class:`ClusterSpec` puts the pools behind a router
(:data:`RouterSpec`), with the :class:`KvLink` prefill replicas send KV over and an optional CPU
:class:`ToolPool` for agents' tool calls; its validator checks that the pools form a servable cluster.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentsim.spec.base import Strict

EnginePreset = Literal["vllm", "sglang", "trtllm"]
"""The serving engines whose scheduling and memory defaults a pool can take (:class:`EngineSpec`)."""

Admission = Literal["fcfs-preempt", "new-token-ratio", "guaranteed-no-evict", "max-utilization"]
"""How a replica admits calls and what it does when the KV cache runs out (:class:`EngineSpec`)."""


MAX_TIER_GB = 1e6
"""Most GB a KV tier (or a tool worker) may have per replica: a petabyte."""
MIN_LINK_GB_S = 1e-3
"""Slowest reload link accepted, GB/s (1 MB/s)."""
MAX_LINK_GB_S = 1e6
"""Fastest reload link accepted, GB/s (a PB/s)."""

class SpeculativeSpec(Strict):
    """Speculative decoding / multi-token prediction: each decode step drafts ``draft_tokens`` (k) tokens and the
    target model verifies them in one pass over ``k + 1`` tokens per sequence.

    A step then yields ``1 + sum_j prod_{i<=j} a_i`` tokens per sequence in expectation (``a_i`` the conditional
    acceptance at draft position ``i``) and costs the verify pass plus ``k`` draft passes. The engine represents
    it deterministically by its expected tokens per step (docs/DESIGN.md, Engine, speculative decoding)."""

    method: Literal["mtp", "eagle", "draft"] = Field(
        description="mtp: the model's multi-token-prediction head (DeepSeek); eagle: an EAGLE/EAGLE-3 head; "
        "draft: a separate draft model"
    )
    draft_tokens: PositiveInt = Field(
        le=64, description="k: tokens drafted (and verified) per decode step (at most 64: EAGLE's largest trees)"
    )
    acceptance: float | list[float] = Field(
        description="conditional acceptance rate of each draft position (a list of k), or one rate for all"
    )
    draft_cost: NonNegativeFloat | None = Field(
        None,
        description="one draft pass as a fraction of a target decode step of the same batch; default: mtp and "
        "eagle one decoder layer of the target (1 / layers); draft: the draft model's own step time",
    )
    draft_model: str | None = Field(None, description="catalog model id of the draft model (method: draft)")

    @model_validator(mode="after")
    def _rates(self) -> SpeculativeSpec:
        rates = self.acceptance if isinstance(self.acceptance, list) else [self.acceptance]
        if any(not 0.0 <= a <= 1.0 for a in rates):
            raise ValueError(f"acceptance rates must lie in [0, 1], got {rates}")
        if isinstance(self.acceptance, list) and len(self.acceptance) != self.draft_tokens:
            raise ValueError(
                f"acceptance lists one rate per draft position: {len(self.acceptance)} rates for "
                f"draft_tokens {self.draft_tokens}"
            )
        if self.method == "draft" and self.draft_model is None and self.draft_cost is None:
            raise ValueError("method draft needs draft_model (a catalog model id) or draft_cost")
        if self.draft_model is not None and self.method != "draft":
            raise ValueError(f"draft_model is for method draft; method {self.method} drafts with the model's own head")
        if self.draft_model is not None and self.draft_cost is not None:
            raise ValueError("give draft_model (its step time is the draft cost) or draft_cost, not both")
        return self

    @property
    def rates(self) -> list[float]:
        """The acceptance rate of each of the k draft positions."""
        a = self.acceptance
        return list(a) if isinstance(a, list) else [a] * self.draft_tokens

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens per sequence per decode step: ``1 + sum_j prod_{i<=j} a_i``."""
        total, run = 1.0, 1.0
        for a in self.rates:
            run *= a
            total += run
        return total


class EngineSpec(Strict):
    """Serving-engine knobs, vLLM's names where they exist.

    ``preset`` names the engine whose defaults fill every field left unset (null): ``vllm`` (vLLM v0.12.0, V1
    engine), ``sglang`` (SGLang v0.5.5), ``trtllm`` (TensorRT-LLM 1.x, PyTorch backend). A field given here wins
    over the preset. The values each preset sets, with their sources, are in docs/DESIGN.md (Engine presets).
    """

    preset: EnginePreset = Field(
        "vllm", description="engine whose defaults fill unset fields: vllm (v0.12.0 V1), sglang (v0.5.5), "
        "trtllm (TensorRT-LLM 1.x PyTorch backend)"
    )
    admission: Admission | None = Field(
        None,
        description="fcfs-preempt (vLLM: admit FCFS while budget and KV allow, preempt the newest call by "
        "recompute); new-token-ratio (SGLang: reserve KV for future decode tokens, prefill batches before "
        "decode, retract the call with the fewest generated tokens); guaranteed-no-evict (TensorRT-LLM default: "
        "admit only what fits to completion, never evict); max-utilization (TensorRT-LLM: admit on the next "
        "step's need, pause the last-started call); default: the preset's",
    )
    max_num_seqs: PositiveInt | None = Field(
        None,
        description="running calls at most; default: the preset's. With data_parallel_attention, per rank under "
        "vllm and trtllm (their ranks schedule alone), in total under sglang (which divides it)",
    )
    max_batched_tokens: PositiveInt | None = Field(
        None,
        description="token budget of one step (chunked-prefill size); default: the preset's. Per rank or in "
        "total as max_num_seqs",
    )
    chunked_prefill: bool | None = Field(None, description="split long prompts across steps; default: the preset's")
    prefix_caching: bool | None = Field(None, description="default: the preset's (on for all three)")
    block_size_tokens: PositiveInt | None = Field(
        None, description="KV page size (prefix-cache granularity); default: the preset's (16, 1, 32)"
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="memory fraction for the KV rule: vLLM gpu_memory_utilization (of total), SGLang "
        "mem_fraction_static (of what the CUDA context and torch.distributed leave), TensorRT-LLM "
        "free_gpu_memory_fraction (of what the weights and activations leave); default: the preset's",
    )
    kv_memory: Literal["of-total", "of-free"] | None = Field(
        None,
        description="KV per GPU = fraction * device memory - weights - reserve (of-total) or fraction * (device "
        "memory - weights - reserve) (of-free), the device memory what the driver shows the engine; default: the "
        "preset's",
    )
    activation_reserve_gb: NonNegativeFloat | None = Field(
        None,
        description="GB per GPU kept for activations and buffers in the KV rule; default: the preset's (vllm: its "
        "profiling run's, from the model, max_num_seqs and max_batched_tokens; trtllm 2; sglang its fraction of the "
        "CUDA context and torch.distributed's buffers, 0.55 GB + 2.1 GB with several GPUs)",
    )
    step_overhead_s: NonNegativeFloat | None = Field(
        None,
        description="per-step scheduling and launch cost, used as the roofline's overhead_s when that is unset; "
        "default: the preset's",
    )
    step_overhead_s_per_seq: NonNegativeFloat | None = Field(
        None,
        le=1.0,  # a second of CPU per sequence per step: no engine; a unit slip (us for s)
        description="engine cost per decoding sequence per step (CPU work: scheduling, sampling, detokenizing, "
        "streaming), seconds; used as the roofline's overhead_s_per_seq when that is unset; default: the preset's",
    )
    kernel_latency_s: NonNegativeFloat | None = Field(
        None,
        le=1e-3,
        description="least time one kernel of a forward pass takes, used as the roofline's kernel_latency_s when "
        "that is unset; default: the preset's",
    )
    cuda_graphs: bool | None = Field(
        None,
        description="decode steps replay CUDA/HIP graphs (every preset: yes); false runs the engine eagerly "
        "(vLLM --enforce-eager, SGLang --disable-cuda-graph): the host launches every kernel from Python, so a "
        "step's kernel floor takes the eager per-kernel time instead of the preset's kernel_latency_s (unless "
        "kernel_latency_s is set here or on the roofline). It reaches a roofline pool, a speculative draft model's "
        "roofline, and the roofline that shapes a curve beyond its measured points (so say false when the curve "
        "was measured eagerly); a measured table or a linear model carries its own launch costs",
    )
    fp8_dequant: Literal["fused", "unfused"] | None = Field(
        None,
        description="how the engine applies per-channel fp8 weight scales (fp8_scales: channel): fused into the GEMM "
        "(every preset), or unfused: a GEMM to fp32, two scaling multiplies and a cast, three kernels more per fp8 "
        "linear layer and an fp32 round trip of its output (vLLM before 0.8 on ROCm, whose torch._scaled_mm took "
        "per-tensor scales only: w8a8_utils' fallback for the channelwise case)",
    )
    frontend_s: NonNegativeFloat | None = Field(
        None,
        le=60.0,  # a minute per request: no server; a unit slip (ms for s)
        description="seconds each call spends in the server's front end before the engine queues it (HTTP, chat "
        "template, tokenization; and the first token's detokenizing and streaming back), added to its TTFT and "
        "end-to-end time; default: the preset's (0: no public per-engine figure; calibrate fits it)",
    )
    kv_capacity_tokens: PositiveInt | None = Field(
        None, description="override the KV capacity derived from memory (tokens per replica)"
    )
    speculative: SpeculativeSpec | None = Field(None, description="speculative decoding / multi-token prediction")


Precision = Literal["bf16", "fp8", "fp4"]


class Deployment(Strict):
    """Model x hardware x parallelism x precision x engine knobs."""

    model: str
    """catalog model id (`agentsim catalog`), e.g. llama-3.3-70b, deepseek-r1"""
    hardware: str
    """catalog hardware id, e.g. h100, h200, b200, mi300x"""
    tp: PositiveInt = 1
    """tensor-parallel GPUs per replica (must divide the attention heads)"""
    pp: PositiveInt = 1
    """pipeline-parallel stages per replica; a replica has tp x pp GPUs"""
    precision: Precision = "bf16"
    """weight precision (fp8 and fp4 halve and quarter the weights' memory and raise tensor throughput)"""
    kv_precision: Precision | None = Field(
        None,
        description="KV-cache precision; default: the engine preset's (vllm, sglang: bf16, the model's activation "
        "dtype, even for fp8 weights; trtllm: the checkpoint's, fp8 for NVIDIA ModelOpt fp8/nvfp4 checkpoints, "
        "else bf16)",
    )
    fp8_scales: Literal["tensor", "channel", "block"] | None = Field(
        None,
        description="how fp8 weights are scaled: tensor (one scale per tensor, static activation scales), channel "
        "(per output channel, the activations per token at run time: a quantization kernel before each fp8 linear "
        "layer) or block (one scale per 128 x 128 block and per 1 x 128 activation group: a quantization kernel "
        "too, and slower GEMMs); default: the catalog model's published FP8 checkpoint (DeepSeek-V3/R1 and Qwen3: "
        "block; Meta's Llama-3.1-405B FBGEMM: channel; others: tensor). Only with precision fp8",
    )
    engine: EngineSpec = EngineSpec()
    """the serving engine: preset (vllm, sglang, trtllm), batch limits, KV cache, speculative decoding"""
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

    @field_validator("fp8_scales")
    @classmethod
    def _fp8_scales_need_fp8(cls, value: str | None, info: ValidationInfo) -> str | None:
        precision = info.data.get("precision")
        if value is not None and precision != "fp8":
            raise ValueError(f"fp8_scales describes fp8 weights; this deployment's precision is {precision}")
        return value

    @property
    def gpus(self) -> int:
        """Accelerators per replica."""
        return self.tp * self.pp

    @property
    def expert_shards(self) -> int:
        """GPUs each routed expert is split over: ``tp / ep`` (expert parallelism keeps whole experts on a GPU)."""
        return self.tp // self.ep  # ep divides tp (validated)

    @property
    def attention_ranks(self) -> int:
        """Ranks that each run attention for their own sequences: ``tp`` with data-parallel attention, else 1 (each
        holds its share of the KV cache and schedules its share of the token budget)."""
        return self.tp if self.data_parallel_attention else 1


class RooflinePerf(Strict):
    """Step time from catalog specs and the model's architecture:
    ``max(compute / MFU, memory / MBU) + overhead`` per operator class (``agentsim.perf.roofline``).

    ``mfu`` and ``mbu`` left null take the hardware catalog's measured efficiencies for the deployment's
    precision (``agentsim.perf.efficiency``); a number here overrides them for every precision."""

    kind: Literal["roofline"] = "roofline"
    mfu: float | None = Field(
        None, gt=0, le=1, description="achieved fraction of peak dense FLOPS; null: from the hardware catalog"
    )
    mbu: float | None = Field(
        None, gt=0, le=1, description="achieved fraction of peak HBM bandwidth; null: from the hardware catalog"
    )
    moe_imbalance: float | None = Field(
        None,
        ge=1,
        description="expert-parallel load of the busiest GPU over the mean (>= 1; 1: balanced); null: a function "
        "of tokens per step and ep (agentsim.perf.moe)",
    )
    overhead_s: NonNegativeFloat | None = Field(
        None, description="fixed per-step cost (scheduling, launches); default: the engine's step_overhead_s"
    )
    overhead_s_per_seq: NonNegativeFloat | None = Field(
        None,
        le=1.0,  # as the engine's step_overhead_s_per_seq
        description="per-step cost of each decoding sequence (engine CPU work), seconds; default: the engine's "
        "step_overhead_s_per_seq",
    )
    comm_efficiency: float = Field(
        0.8, gt=0, le=1, description="achieved fraction of the scale-up link bandwidth in collectives"
    )
    collective_latency_s: NonNegativeFloat = Field(
        5e-6, description="fixed cost of one collective (all-reduce, all-to-all, pipeline send) per step"
    )
    kernel_latency_s: NonNegativeFloat | None = Field(
        None,
        le=1e-3,  # a millisecond per kernel: no GPU; a unit slip (us for s)
        description="least time one kernel of a forward pass takes (launch, setup, teardown under CUDA graphs): a "
        "step's GPU time is at least the model's kernels one after another (agentsim.perf.roofline); 0: no floor; "
        "default: the engine's kernel_latency_s",
    )


class LinearPerf(Strict):
    """``step_s = alpha + beta * prefill_tokens + gamma * context_tokens + delta * decode_seqs``."""

    kind: Literal["linear"] = "linear"
    alpha_s: NonNegativeFloat
    """fixed cost of a step (kernel launches, scheduling), seconds"""
    beta_s_per_prefill_token: NonNegativeFloat = 0.0
    """seconds per prompt token computed in the step"""
    gamma_s_per_context_token: NonNegativeFloat = 0.0
    """seconds per context token read by the step's decodes (KV-cache reads)"""
    delta_s_per_seq: NonNegativeFloat = 0.0
    """seconds per decoding sequence in the step"""


class TablePoint(Strict):
    """One measured step: its shape and its duration."""

    prefill_tokens: NonNegativeFloat
    """prompt tokens computed in the step"""
    decode_seqs: NonNegativeFloat
    """sequences decoding one token each in the step"""
    context_tokens: NonNegativeFloat
    """context tokens of the decoding sequences (KV read)"""
    step_s: PositiveFloat
    """measured step duration, seconds"""


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
    """measured steps given inline (or `path`)"""
    path: str | None = Field(None, description="CSV file of measured steps instead of inline points")
    format: Literal["csv", "splitwise"] = "csv"
    """`csv`: prefill_tokens, decode_seqs, context_tokens, step_s columns; `splitwise`: Splitwise's perf_model.csv"""
    select: dict[str, str | float] = Field(
        default_factory=dict, description="keep only CSV rows with these column values"
    )
    out_of_range: Literal["clip", "extrapolate", "error"] = "clip"
    """a step outside the table: hold the edge value, continue the edge slope, or stop the run"""

    @model_validator(mode="after")
    def _one_source(self) -> TablePerf:
        if bool(self.points) == (self.path is not None):
            raise ValueError("give either points or path (a CSV file), not both and not neither")
        return self


class CurvePoint(Strict):
    """One point of a throughput sweep: output tokens/s at a concurrency (requests in flight)."""

    concurrency: PositiveFloat
    """requests in flight"""
    output_tokens_per_s: PositiveFloat
    """measured output throughput at that concurrency (of a replica or a GPU: `per`)"""


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
    """the sweep's points given inline (or `path`)"""
    path: str | None = Field(None, description="CSV with concurrency and output tokens/s columns")
    select: dict[str, str | float] = Field(
        default_factory=dict, description="keep only CSV rows with these column values"
    )
    per: Literal["replica", "gpu"] = "replica"
    """whether the throughputs are per replica or per GPU (then multiplied by the replica's GPUs)"""
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
    """what is held at the target: the continuous-batching load, or waiting calls per replica"""
    target: PositiveFloat = 0.7
    """the metric's target value"""
    tolerance: float = Field(0.1, ge=0, description="relative dead band around the target")
    min_replicas: PositiveInt = Field(1, description="at least one replica always takes calls")
    max_replicas: PositiveInt = 64
    """never more replicas than this"""
    interval_s: PositiveFloat = 30.0
    """seconds between two scaling decisions"""
    cold_start_s: NonNegativeFloat = 60.0
    """seconds from a replica's request (billed) to its first call (weights loading, warm-up)"""

    @model_validator(mode="after")
    def _bounds(self) -> Autoscale:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        return self


class KvOffload(Strict):
    """Lower KV tiers below each replica's HBM: host DRAM, then local NVMe (vLLM's offloading connector, LMCache,
    Dynamo's KV block manager; docs/DESIGN.md, KV offload).

    ``on_evict``: a prefix evicted from HBM is demoted (DRAM, then NVMe, then dropped, oldest first) and a later
    call finding it there reloads it at that tier's bandwidth instead of recomputing it. ``on_tool_wait`` also moves
    an agent's context out of HBM while its tool runs; its next call reloads it. Capacities and bandwidths default
    to the hardware catalog's host figures (``agentsim catalog``), per replica (per GPU x GPUs).

    ``host: tools`` puts the DRAM tier on the cluster's tool nodes instead (the hybrid blueprint: the CPUs that run
    the tools hold the KV in their memory): its capacity is a share of what the tools leave of the nodes' memory,
    its bandwidth the cluster's ``kv_link`` (the network), and its price and power are the tool nodes'
    (``ToolPool``; docs/DESIGN.md, KV offload)."""

    policy: Literal["none", "on_evict", "on_tool_wait"] = "on_evict"
    """`on_evict`: what HBM evicts is demoted, not dropped; `on_tool_wait`: also an agent's context while its tool
    runs; `none`: no lower tiers (as if kv_offload were unset)"""
    # Bounds keep the tiers' token counts and reload times finite (GB x 1e9 / bytes per token): a petabyte of host
    # memory per replica or a link below 1 MB/s is a typo, not a machine.
    dram_gb: NonNegativeFloat | None = Field(
        None,
        le=MAX_TIER_GB,
        description="host DRAM for KV per replica, GB; default: half the catalog's host memory per GPU x GPUs",
    )
    nvme_gb: NonNegativeFloat = Field(
        0.0, le=MAX_TIER_GB, description="local NVMe for KV per replica, GB (0: no NVMe tier)"
    )
    dram_gb_s: PositiveFloat | None = Field(
        None,
        ge=MIN_LINK_GB_S,
        le=MAX_LINK_GB_S,
        description="host -> HBM reload bandwidth per replica, GB/s; default: the catalog's link per GPU x GPUs",
    )
    nvme_gb_s: PositiveFloat | None = Field(
        None,
        ge=MIN_LINK_GB_S,
        le=MAX_LINK_GB_S,
        description="NVMe -> HBM reload bandwidth per replica, GB/s; default: the catalog's per GPU x GPUs",
    )
    host: Literal["local", "tools"] = "local"
    """where the DRAM tier lives: `local`, the replica's own host (catalog host figures, priced per GB with the
    pool); `tools`, the cluster's tool nodes, shared with the tools (needs `cluster.tools`; dram_gb defaults to an
    even share of their free memory, dram_gb_s to kv_link's bandwidth)"""


class PoolSpec(Strict):
    """A set of identical replicas with one role.

    ``unified`` replicas prefill and decode the calls routed to them. ``prefill`` replicas compute a call's
    prompt and its first token, then send its KV over the cluster's ``kv_link`` to a ``decode`` replica, which
    generates the rest (disaggregated serving, as in DistServe or NVIDIA Dynamo's xPyD).
    """

    name: str
    """the pool's name in tables and reports"""
    role: Literal["unified", "prefill", "decode"] = "unified"
    """`unified` serves whole calls; `prefill` and `decode` pools split them (disaggregated serving)"""
    deployment: Deployment
    """what each replica runs: model x hardware x parallelism x precision x engine"""
    perf: PerfSpec = RooflinePerf()
    """the step-time model: roofline (from specs), linear, table (measured steps) or curve (a sweep)"""
    replicas: int = Field(1, ge=0, description="replicas at the start (the autoscaler may change it)")
    autoscale: Autoscale | None = None
    """scale the pool with its load (none: fixed replicas)"""
    kv_offload: KvOffload | None = Field(None, description="lower KV tiers (host DRAM, NVMe); null: none")

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
    """fixed latency of one KV transfer, seconds"""


class ToolPool(Strict):
    """CPU workers that run agents' tool calls (the gaps marked as tool time in the profiles).

    A tool call takes one worker for its duration divided by ``speedup``; when every worker is busy tool calls
    queue (FIFO), so tool time depends on load. Price and power per core from the catalog's CPU entry.

    When pools keep their KV DRAM tier here (``kv_offload.host: tools``), the tool pool is whole CPU nodes: enough
    sockets for the workers' cores and for the tools' memory (``gb_per_worker`` each) plus the KV asked for, priced
    per socket (the catalog's per-core price is a server's, its memory included) and drawing the idle power of the
    cores no worker uses and the KV memory's power: one cost and one power figure for tools and KV tier.
    """

    cpu: str = "xeon6-6980p"
    """catalog CPU id (its price and power are charged for the tool pool)"""
    workers: PositiveInt = Field(description="concurrent tool calls (e.g. cores)")
    speedup: PositiveFloat = Field(1.0, description="tool durations are divided by this (faster CPUs)")
    gb_per_worker: NonNegativeFloat = Field(4.0, le=MAX_TIER_GB)
    """memory a tool worker keeps for its tool (sandbox, build, tests), GB; read only when KV tiers share the nodes
    (4 GB: a coding agent's container, an ESTIMATE)"""
    sockets: PositiveInt | None = Field(None, le=1_000_000)
    """CPU sockets of the tool nodes when KV tiers share them; default: the fewest that hold the workers' cores and
    the memory asked for (the tools' plus every explicit kv_offload.dram_gb x replicas)"""


class ClusterSpec(Strict):
    """Pools of replicas and the router in front of them.

    Calls enter at a ``unified`` or ``prefill`` replica chosen by ``router``; a prefilled call continues at a
    ``decode`` replica chosen by ``decode_router`` after its KV crossed ``kv_link``.
    """

    pools: list[PoolSpec] = Field(min_length=1)
    """the pools of replicas (unified, or prefill + decode)"""
    router: RouterSpec = LeastLoad()
    """how calls pick a replica of the (prefill or unified) pool"""
    decode_router: RouterSpec = LeastLoad()
    """how a prefilled call picks a decode replica (disaggregated serving)"""
    kv_link: KvLink = KvLink()
    """the network carrying KV caches from prefill to decode replicas"""
    tools: ToolPool | None = None
    """CPU workers running the agents' tool calls (none: tool calls never queue)"""

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
        hosted = [p.name for p in self.pools if p.kv_offload is not None and p.kv_offload.host == "tools"]
        if hosted and self.tools is None:
            raise ValueError(f"kv_offload.host: tools (pools {', '.join(hosted)}) needs cluster.tools, the nodes")
        return self
