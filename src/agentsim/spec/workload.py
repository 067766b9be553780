"""Workloads: what tasks look like (agent or fixed profiles), how they arrive, and their SLOs.

A synthetic workload (:class:`WorkloadSpec`) pairs a profile (a built-in name or inline: an agent's chain of
calls with growing context, optionally fanning out to sub-agents, or one fixed-size call per task) with an
arrival process (open Poisson or gamma renewal, or a closed population of agents). A trace workload
(:class:`TraceWorkload`) replays a recorded trace instead. :data:`AnyWorkload` tells the two apart by ``kind``
(``synthetic``, the default that files need not write, or ``trace``).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import Discriminator, Field, NonNegativeFloat, PositiveFloat, PositiveInt, Tag, model_validator

from agentsim.spec.base import Strict
from agentsim.spec.distributions import Constant, Dist


class FanOut(Strict):
    """Parallel sub-agents: after ``at_step`` lead steps, ``subagents`` chains run in parallel and a join call
    waits for all of them. Each sub-agent starts from the lead's context as its cacheable prefix. The join is an
    extra call, not one of the lead's ``steps``; after it the lead makes its remaining ``steps - at_step``."""

    subagents: Dist
    """sub-agent chains started at the fan-out (a count; drawn per task)"""
    at_step: PositiveInt = 1
    """lead steps before the fan-out (1: right after the first call, as a planner hands out work)"""
    steps: Dist
    """calls in each sub-agent's chain (drawn per sub-agent)"""
    result_tokens: Dist = Field(description="tokens each sub-agent's result adds to the lead's context")
    model: str | None = Field(
        None, description="the model the sub-agents call (a pool's deployment.model); default: the lead's"
    )
    join_model: str | None = Field(
        None,
        description="the model of the join call that merges the sub-agents' results (a summarizer); default: "
        "the lead's",
    )


class AgentProfile(Strict):
    """An agent template: a chain of calls whose context grows step by step.

    ``prompt(1) = system + task``; ``prompt(k) = prompt(k-1) + output(k-1) + tool_result(k-1)``; the previous
    prompt is the cacheable prefix of the next call. ``system_prompt_tokens`` is shared by every task of the
    workload when ``shared_system_prompt`` (a policy or tool-schema prompt), so it is a cross-task prefix.

    Context limits: the agent compacts when the next prompt would pass ``context_limit_tokens``; under
    ``on_context_limit: compact`` (the default) also when prompt + output would pass the serving model's window,
    to a context scaled to the window (:mod:`agentsim.workload.profiles`). Under ``fail`` such a call is sent and
    rejected, and its task fails.
    """

    kind: Literal["agent"] = "agent"
    system_prompt_tokens: Dist = Constant(value=2000)
    """tokens of the system prompt (instructions, tool schemas) that opens every task's context"""
    shared_system_prompt: bool = True
    """the system prompt is the same for every task of the workload, so it is cached across tasks (false: each
    task's is its own)"""
    task_prompt_tokens: Dist = Constant(value=500)
    """tokens of the task's own request, after the system prompt in the first call"""
    steps: Dist = Constant(value=10)
    """lead calls per task (the agent loop's steps; a fan-out's sub-agent and join calls come on top)"""
    output_tokens: Dist = Constant(value=300)
    """visible tokens each call generates (a tool call or an answer; reasoning comes on top: reasoning_tokens)"""
    tool_result_tokens: Dist = Constant(value=500)
    """tokens a step's tool result adds to the next call's context"""
    tool_s: Dist = Constant(value=2.0)
    """seconds of the gap between two steps: the tool's run time (or think time, see gap), drawn per step"""
    gap: Literal["tool", "think"] = Field(
        "tool",
        description="what the time between steps is: a tool call (runs on the cluster's tool pool when there "
        "is one) or human think time (never queues)",
    )
    fanout: FanOut | None = None
    """parallel sub-agents spawned by the lead (none: a single chain)"""
    context_limit_tokens: PositiveInt = 200_000
    """the agent's own context budget: it compacts before a prompt would pass it (200k: a frontier model's
    window; the serving model's window also applies, see on_context_limit)"""
    compact_to_tokens: PositiveInt = Field(
        20_000, description="context after compaction when the next prompt would pass the limit"
    )
    on_context_limit: Literal["compact", "fail"] = Field(
        "compact",
        description="a call whose prompt + output would pass the serving model's context window: `compact` the "
        "context before it (below the window too, not only context_limit_tokens), or send it and have the "
        "server reject it, failing the task (`fail`)",
    )
    reasoning_tokens: Dist | None = Field(
        None,
        description="reasoning (thinking) tokens each call generates before its visible output: decoded, held "
        "in KV and paid for, not delivered; null: none",
    )
    keep_reasoning: Literal["none", "last", "all"] = Field(
        "none",
        description="what the next step's context keeps of earlier reasoning: none (DeepSeek-R1, Qwen3: "
        "dropped), last (only the previous call's), all (interleaved thinking kept within the task's tool loop: "
        "gpt-oss harmony, Anthropic, OpenAI Responses)",
    )
    model: str | None = Field(
        None, description="the model the lead's calls go to (a pool's deployment.model); default: the workload's"
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
    """prompt tokens of the task's one call (the benchmark's input sequence length)"""
    output_tokens: Dist
    """tokens the call generates (the benchmark's output sequence length)"""
    on_context_limit: Literal["fail", "truncate"] = Field(
        "fail",
        description="a call whose prompt + output passes the serving model's context window: rejected by the "
        "server (`fail`), or its prompt cut to the window minus its output (`truncate`, a what-if)",
    )


Profile = Annotated[AgentProfile | FixedProfile, Field(discriminator="kind")]


class Poisson(Strict):
    """Tasks arrive as a Poisson process (exponential inter-arrival times)."""

    kind: Literal["poisson"] = "poisson"
    rate_per_s: PositiveFloat
    """mean tasks started per second"""


class GammaArrivals(Strict):
    """Renewal process with gamma inter-arrival times: mean ``1/rate_per_s``, coefficient of variation ``cv``
    (cv > 1 is burstier than Poisson, cv < 1 smoother)."""

    kind: Literal["gamma"] = "gamma"
    rate_per_s: PositiveFloat
    """mean tasks started per second (the inter-arrival mean is its inverse)"""
    cv: PositiveFloat
    """coefficient of variation of the inter-arrival times (1: Poisson; > 1 burstier; < 1 smoother)"""


class Closed(Strict):
    """A fixed population of agents: each starts its next task ``think_s`` after its last one ended."""

    kind: Literal["closed"] = "closed"
    agents: PositiveInt
    """agents in the population, each running one task at a time"""
    think_s: Dist = Constant(value=0.0)
    """seconds an agent waits between the end of a task and the start of its next (0: back to back)"""
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
    """target on the run's 99th-percentile time to first token, seconds (none: no target)"""
    tpot_p99_s: PositiveFloat | None = None
    """target on the run's 99th-percentile time per output token, seconds (none: no target)"""
    task_p95_s: PositiveFloat | None = None
    """target on the run's 95th-percentile task duration, seconds (none: no target)"""


class WorkloadSpec(Strict):
    """One stream of synthetic tasks: a profile, its arrivals and its SLOs.

    ``profile`` is a built-in name (``agentsim catalog``) or an inline profile; ``overrides`` changes fields of
    a named profile (validated like the profile itself).
    """

    kind: Literal["synthetic"] = "synthetic"
    name: str | None = None
    """the workload's label in tables (default: the profile's name or kind)"""
    profile: str | Profile = "coding-agent"
    """a built-in profile's name (`agentsim catalog`) or an inline agent or fixed profile"""
    overrides: dict[str, object] = Field(default_factory=dict)
    """fields of the named profile to change, e.g. `steps` (validated like the profile)"""
    arrivals: Arrivals = Poisson(rate_per_s=0.1)
    """how tasks arrive: open (poisson, gamma) or a closed population of agents (default: one task per 10 s)"""
    slo: Slo = Slo()
    """the workload's service-level targets (default: none)"""
    max_tasks: PositiveInt | None = Field(None, description="stop issuing new tasks after this many")
    model: str | None = Field(
        None,
        description="the model its calls go to (a pool's deployment.model), unless a profile role names its own; "
        "required when the pools serve several models",
    )

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
    """the workload's label in tables (default: the trace file's stem)"""
    path: str
    """the trace file (Parquet, agentsim's canonical format); a relative path is read from the scenario file's
    directory"""
    mode: Literal["open", "closed"] = "closed"
    """`open`: every call at its recorded time; `closed`: tasks at their recorded start, then the calls'
    dependencies and gaps, so a slower cluster delays later steps"""
    time_scale: PositiveFloat = 1.0
    """multiplies every duration of the trace: start and release times and gaps (1: as recorded)"""
    rate_scale: PositiveFloat = 1.0
    """multiplies the tasks' arrival rate: start and release times are divided by it (1: as recorded)"""
    slo: Slo = Slo()
    """the workload's service-level targets (default: none)"""
    max_tasks: PositiveInt | None = Field(None, description="replay only the first tasks")
    on_context_limit: Literal["fail", "truncate"] = Field(
        "fail",
        description="a recorded call whose prompt + output passes the serving model's context window: rejected "
        "by the server, failing its task (`fail`), or its prompt cut to the window minus its output, keeping "
        "its leading tokens (`truncate`, a what-if: a recorded trace cannot be compacted)",
    )
    model: str | None = Field(
        None,
        description="the model its calls go to (a pool's deployment.model); required when the pools serve "
        "several models",
    )

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
