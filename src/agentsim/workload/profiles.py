"""Agent profiles: named templates, overrides, and the factory that turns a profile into tasks.

An **agent profile** (:class:`agentsim.spec.AgentProfile`) describes one kind of agent by distributions: how
long its system prompt and task prompt are, how many steps it takes, how many tokens each step generates
and appends (tool results), how long each tool runs, whether it fans out to sub-agents, and what happens at
its context limit. A **task** is one run of that agent: a DAG of LLM calls (:class:`TaskTemplate`).

How a chain grows. Call 0 sends ``system + task`` tokens. After each call the agent runs a tool (the next
call's ``gap_s``) whose result is appended, so::

    prompt(k) = prompt(k-1) + output(k-1) + tool_result(k-1)

and the whole previous prompt is the cacheable prefix of the next call (``prefix_parent = k-1``). This is
why agent traffic is dominated by cache hits: the appended tokens per step are small next to the context.

Compaction. When ``prompt(k)`` would exceed ``context_limit_tokens``, the agent summarises its history: the
call is sent with ``system + compact_to_tokens`` tokens and ``prefix_parent = ROOT`` (only a shared system
prompt can still be reused), then growth resumes from there; the call is marked ``compacted``. Two clamps keep
every prompt within the limit: a system-prompt draw is capped at ``context_limit - compact_to`` (so a compacted
context fits) and call 0 is capped at the limit (the task prompt is truncated).

The model's context window ``W`` (``max_context_tokens`` of the serving model, given by the resolved
workload) bounds prompt + output. Under ``on_context_limit: compact`` (the default) the agent also compacts
before a call whose ``prompt(k) + output(k)`` would pass ``W``: the effective limit of call ``k`` is
``min(context_limit_tokens, W - output(k))``. When ``W < context_limit_tokens`` the compacted context keeps the
profile's ratio on the window, ``compact_to * W // context_limit`` (at most ``compact_to``), and the clamps use
``min(context_limit, W)``; call 0 is cut to ``W - output(0)`` (never below a shared system prompt). A call
that passes ``W`` even so (its output alone leaves no room) is left as drawn and the server rejects it
(:mod:`agentsim.engine.agents`). Under ``fail`` the tasks are drawn as without a window, and every call past
``W`` is rejected. With ``W`` above every prompt + output nothing changes: the random draws are the same
either way, only token counts differ. A :class:`~agentsim.spec.FixedProfile` under ``on_context_limit:
truncate`` cuts its prompt to ``W - output`` instead.

Fan-out (:class:`agentsim.spec.FanOut`). After ``min(at_step, steps)`` lead calls, ``K`` sub-agents start in
parallel (``K = 0`` skips the fan-out and its join). Sub-agent ``j`` is a chain of ``steps`` calls whose first
call depends on the lead's last call, reuses the lead's prompt as its prefix and adds the lead's output and
an instruction (a ``tool_result_tokens`` draw), sent without a gap. A **join** call then waits for the last
call of every chain; its prompt is the lead's context (last lead prompt + output) plus the sub-agents'
``result_tokens``, its prefix the last lead call. The lead then makes its remaining ``steps - at_step`` calls
after the join. Calls are listed lead-first, then chain by chain, then the join, then the rest: a topological
order.

Reasoning (``reasoning_tokens``, ``keep_reasoning``). A call of a reasoning model first generates ``r(k)``
reasoning tokens, then its visible output ``o(k)``: its ``output_tokens`` are ``r(k) + o(k)`` (decoded, held in
KV and paid for) and ``reasoning_tokens`` is ``r(k)``, which is not delivered. What the next step's context
keeps follows the APIs (docs/DESIGN.md, Reasoning): ``none`` (DeepSeek-R1, Qwen3: earlier reasoning dropped)::

    prompt(k) = prompt(k-1) + o(k-1) + tool_result(k-1)

``all`` (interleaved thinking in a tool loop: gpt-oss harmony, Anthropic, OpenAI Responses keep it within the
task): ``prompt(k) = prompt(k-1) + r(k-1) + o(k-1) + tool_result(k-1)``; ``last`` (only the previous call's
reasoning): with ``V(k)`` the visible context (everything but reasoning), ``V(k) = V(k-1) + o(k-1) +
tool_result(k-1)`` and ``prompt(k) = V(k) + r(k-1)``. Under ``last`` the reasoning kept in ``prompt(k-1)`` sits
before ``o(k-2)`` and is gone from ``prompt(k)``, so only ``V(k-2)``, the part of ``prompt(k-1)`` before it, is a
prefix of the next prompts: the call's ``stable_tokens``, which the engine caches as a node of its own. A sub-agent
or join call follows the lead's call by the same rule. The context limit and the window apply to the prompt and
to ``prompt + r + o``.

Token counts are integers: every draw is rounded half-to-even; outputs, steps and sub-agent steps are at
least 1 and any prompt is at least 1.

Built-in profiles live in ``catalog/profiles.yaml`` with their sources; :func:`resolve_profile` looks a name
up and merges a workload's ``overrides`` into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Final

import numpy as np
from pydantic import TypeAdapter, ValidationError

from agentsim.errors import did_you_mean
from agentsim.spec import AgentProfile, Constant, FixedProfile, Profile, WorkloadSpec
from agentsim.spec.base import error_loc
from agentsim.workload.distributions import BLOCK, BlockSampler, IntSampler, sample
from agentsim.workload.taskgraph import NO_WINDOW, ROOT, CallTemplate, TaskTemplate
from agentsim.yamlio import loads

# --------------------------------------------------------------------------- built-in profiles


@dataclass(frozen=True, slots=True)
class BuiltinProfile:
    """A named profile of the catalog with where its numbers come from."""

    name: str
    profile: AgentProfile
    source: str
    notes: str


@lru_cache(maxsize=1)
def _load_builtins() -> tuple[BuiltinProfile, ...]:
    """Read and validate ``catalog/profiles.yaml`` once (immutable result, safe to cache)."""
    text = resources.files("agentsim").joinpath("catalog/profiles.yaml").read_text(encoding="utf-8")
    raw = loads(text)
    if not isinstance(raw, dict):
        raise ValueError("catalog/profiles.yaml: expected a mapping of profile name -> entry")
    out: list[BuiltinProfile] = []
    for name, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) != {"source", "notes", "profile"}:
            raise ValueError(f"catalog/profiles.yaml: {name!r} needs exactly the keys source, notes, profile")
        try:
            profile = AgentProfile.model_validate(entry["profile"])
        except ValidationError as e:
            raise ValueError(f"catalog/profiles.yaml: profile {name!r} is invalid:\n{_errors(e)}") from e
        out.append(BuiltinProfile(str(name), profile, str(entry["source"]), str(entry["notes"])))
    return tuple(out)


def builtin_catalog() -> dict[str, BuiltinProfile]:
    """The built-in profiles with their sources and notes, by name (a fresh dict on each call)."""
    return {b.name: b for b in _load_builtins()}


def builtin_profiles() -> dict[str, AgentProfile]:
    """The built-in profiles by name (a fresh dict on each call; the profiles are frozen)."""
    return {b.name: b.profile for b in _load_builtins()}


# --------------------------------------------------------------------------- overrides

_PROFILE: TypeAdapter[AgentProfile | FixedProfile] = TypeAdapter(Profile)


def _errors(e: ValidationError) -> str:
    """One line per pydantic error, the field path first: ``steps.lognormal.sigma: Input should be ...``."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in error_loc(err)) or "(profile)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` merged into ``base``: mappings key by key, recursively; anything else replaced.

    A mapping whose ``kind`` differs from the base's replaces it whole, so ``steps: {kind: constant,
    value: 10}`` over a lognormal does not inherit ``median`` and ``sigma``.
    """
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        if "kind" in over and over["kind"] != base.get("kind"):
            return dict(over)
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base[k], v) if k in base else v
        return out
    return over


def _expand_dotted(overrides: Mapping[str, object]) -> dict[str, Any]:
    """``{"fanout.steps": d}`` -> ``{"fanout": {"steps": d}}``, so sweeps can name one nested field."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        out = deep_merge(out, nested)
    return out


def apply_overrides(
    profile: AgentProfile | FixedProfile, overrides: Mapping[str, object], what: str = "profile"
) -> AgentProfile | FixedProfile:
    """``profile`` with ``overrides`` deep-merged in and validated; a ``ValueError`` names each bad field."""
    if not overrides:
        return profile
    merged = deep_merge(profile.model_dump(), _expand_dotted(overrides))
    try:
        return _PROFILE.validate_python(merged)
    except ValidationError as e:
        raise ValueError(f"overrides of {what} are invalid:\n{_errors(e)}") from e


def resolve_profile(w: WorkloadSpec) -> AgentProfile | FixedProfile:
    """The profile a workload runs: a built-in looked up by name, or the inline one, with ``w.overrides``.

    Raises ``ValueError`` for an unknown name (listing the known ones) or an override that does not validate.
    """
    if isinstance(w.profile, str):
        known = builtin_profiles()
        if w.profile not in known:
            hint = did_you_mean(w.profile, known)
            names = ", ".join(sorted(known))
            raise ValueError(f"workload {w.label!r}: unknown profile {w.profile!r}{hint}; known: {names}")
        base: AgentProfile | FixedProfile = known[w.profile]
        what = f"profile {w.profile!r} (workload {w.label!r})"
    else:
        base = w.profile
        what = f"the inline {w.profile.kind} profile (workload {w.label!r})"
    return apply_overrides(base, w.overrides, what)


# --------------------------------------------------------------------------- task factory

KEEP_NONE: Final = 0
KEEP_LAST: Final = 1
KEEP_ALL: Final = 2
KEEP_REASONING: Final = {"none": KEEP_NONE, "last": KEEP_LAST, "all": KEEP_ALL}
"""``keep_reasoning`` of a profile, as the factory's code."""


def _following(
    keep: int, prompt: int, output: int, reasoning: int, visible: int, appended: int
) -> tuple[int, int, int]:
    """The context of a call that follows one of ``prompt`` tokens (``visible`` of them not reasoning) which
    generated ``output`` tokens, ``reasoning`` of them reasoning, with ``appended`` tokens added, under
    ``keep`` (a :data:`KEEP_REASONING` code): (prompt, its stable part or 0 for the whole prompt, its visible
    context). Module docstring, Reasoning."""
    shown = output - reasoning
    if keep == KEEP_NONE:
        p = prompt + shown + appended
        return p, 0, p
    if keep == KEEP_ALL:
        p = prompt + output + appended
        return p, 0, p
    v = visible + shown + appended
    return v + reasoning, (visible if reasoning else 0), v


class TaskFactory:
    """Generates the tasks of one workload from its profile, one :meth:`next` at a time.

    Every random quantity has its own :class:`~agentsim.workload.distributions.BlockSampler` drawing ``block``
    values at a time from ``rng``, so a task costs a few list slices and one Python loop over its calls. The
    stream of tasks is a pure function of the profile and the generator's state. A shared system prompt is
    drawn once, here, for the whole workload. ``max_context_tokens``: the serving model's context window, which
    the profile's ``on_context_limit`` compacts (or truncates) below (module docstring); None: no window.
    ``models``: the model index of the lead's, the sub-agents' and the join's calls (-1: the workload's model).
    """

    def __init__(
        self,
        profile: AgentProfile | FixedProfile,
        workload: str,
        rng: np.random.Generator,
        *,
        block: int = BLOCK,
        max_context_tokens: int | None = None,
        models: tuple[int, int, int] = (-1, -1, -1),
    ) -> None:
        self.profile = profile
        self.workload = workload
        self._after: list[tuple[int, ...]] = []  # _after[i] == (i,): one shared deps tuple per chain position
        self._same: TaskTemplate | None = None  # the task, when every task is the same
        window = NO_WINDOW if max_context_tokens is None else max_context_tokens
        self._lead_model, self._sub_model, self._join_model = models
        if isinstance(profile, FixedProfile):
            self._window = window if profile.on_context_limit == "truncate" else NO_WINDOW
            self._prompt = IntSampler(profile.prompt_tokens, rng, 1, block)
            self._fixed_out = IntSampler(profile.output_tokens, rng, 1, block)
            if isinstance(profile.prompt_tokens, Constant) and isinstance(profile.output_tokens, Constant):
                # Constant sizes (a serving benchmark's shape): one template for every task; templates are
                # never changed once made, and a constant draws nothing from the generator.
                self._same = self.next()
            return
        p = profile
        if p.on_context_limit != "compact":
            window = NO_WINDOW  # drawn as if unbounded: the server rejects the calls past the window
        compact_to = p.compact_to_tokens
        if window < p.context_limit_tokens:
            compact_to = max(1, compact_to * window // p.context_limit_tokens)  # the profile's ratio, on the window
        self._window = window
        self._limit = p.context_limit_tokens
        self._compact_to = compact_to
        self._system_cap = min(p.context_limit_tokens, window) - compact_to
        self._shared = p.shared_system_prompt
        self._gap_is_tool = p.gap == "tool"
        self._keep = KEEP_REASONING[p.keep_reasoning]
        self._system = IntSampler(p.system_prompt_tokens, rng, 0, block)
        self._shared_system = 0
        if self._shared:
            # One draw for the workload, not a block: the sampler's stream is never used when shared.
            s = int(np.rint(sample(p.system_prompt_tokens, rng, 1)[0]))
            self._shared_system = min(max(s, 0), self._system_cap)
        self._task = IntSampler(p.task_prompt_tokens, rng, 0, block)
        self._steps = IntSampler(p.steps, rng, 1, block)
        self._out = IntSampler(p.output_tokens, rng, 1, block)
        self._tool = IntSampler(p.tool_result_tokens, rng, 0, block)
        self._tool_s = BlockSampler(p.tool_s, rng, block)
        f = p.fanout
        self._at_step = 0 if f is None else f.at_step
        if f is not None:
            self._k = IntSampler(f.subagents, rng, 0, block)
            self._sub_steps = IntSampler(f.steps, rng, 1, block)
            self._result = IntSampler(f.result_tokens, rng, 0, block)
        # Created last: a profile without reasoning draws exactly what it drew before reasoning existed.
        self._reason: IntSampler | None = (
            IntSampler(p.reasoning_tokens, rng, 0, block) if p.reasoning_tokens is not None else None
        )

    def _dep(self, i: int) -> tuple[int, ...]:
        """``(i,)``, shared across tasks (tuples are immutable) instead of allocated per call."""
        after = self._after
        while len(after) <= i:
            after.append((len(after),))
        return after[i]

    def next(self) -> TaskTemplate:
        """One new task."""
        if self._same is not None:
            return self._same
        if isinstance(self.profile, FixedProfile):
            prompt, out = self._prompt.next(), self._fixed_out.next()
            if prompt + out > self._window:  # truncate: the prompt cut to what the window leaves
                prompt = max(1, self._window - out)
            return TaskTemplate(self.workload, (CallTemplate(prompt, out),), 0)
        system = self._shared_system if self._shared else min(self._system.next(), self._system_cap)
        compacted = system + self._compact_to
        limit = self._limit
        first = max(1, min(system + self._task.next(), limit))
        n = self._steps.next()
        r = self._reason.next() if self._reason is not None else 0
        out = self._out.next() + r
        if first + out > self._window:  # the task prompt is cut to fit, as at the limit
            first = max(self._window - out, system if self._shared else 1, 1)
        lead = self._lead_model
        calls: list[CallTemplate] = [CallTemplate(first, out, (), 0.0, ROOT, None, False, False, r, 0, lead)]
        if not self._at_step:
            self._grow(calls, n - 1, compacted, lead, first)
        else:
            lead_n = min(self._at_step, n)
            visible = self._grow(calls, lead_n - 1, compacted, lead, first)
            k = self._k.next()
            if k > 0:
                visible = self._fan_out(calls, k, compacted, visible)
            self._grow(calls, n - lead_n, compacted, lead, visible)
        return TaskTemplate(self.workload, tuple(calls), system if self._shared else 0)

    def __iter__(self) -> TaskFactory:
        return self

    def __next__(self) -> TaskTemplate:
        return self.next()

    def _grow(self, calls: list[CallTemplate], n: int, compacted: int, model: int, visible: int) -> int:
        """Append ``n`` chain steps after the last call of ``calls`` (whose visible context is ``visible``:
        its prompt without the reasoning it keeps); return the visible context of the last call."""
        if n <= 0:
            return visible
        outs = self._out.take(n)
        tools = self._tool.take(n)
        gaps = self._tool_s.take(n)
        reasons = self._reason.take(n) if self._reason is not None else None
        keep = self._keep
        limit = self._limit
        window = self._window
        tool = self._gap_is_tool
        prev = len(calls) - 1
        last = calls[prev]
        p, o, r = last.prompt_tokens, last.output_tokens, last.reasoning_tokens
        append = calls.append
        for j in range(n):
            # The next prompt: the visible output and the tool result appended, the reasoning kept or dropped.
            p, stable, visible = _following(keep, p, o, r, visible, tools[j])
            r = reasons[j] if reasons is not None else 0
            o = outs[j] + r
            if p > limit or p + o > window:
                p = compacted
                visible = p
                append(CallTemplate(p, o, self._dep(prev), gaps[j], ROOT, None, tool, True, r, 0, model))
            else:
                append(CallTemplate(p, o, self._dep(prev), gaps[j], prev, None, tool, False, r, stable, model))
            prev += 1
        return visible

    def _fan_out(self, calls: list[CallTemplate], k: int, compacted: int, visible: int) -> int:
        """Append ``k`` sub-agent chains forked from the last call, then their join; return the join's visible
        context."""
        lead = len(calls) - 1
        lead_call = calls[lead]
        keep = self._keep
        lp, lo, lr = lead_call.prompt_tokens, lead_call.output_tokens, lead_call.reasoning_tokens
        limit = self._limit
        window = self._window
        sub = self._sub_model
        instructions = self._tool.take(k)
        lengths = self._sub_steps.take(k)
        outs = self._out.take(k + 1)
        reasons = self._reason.take(k + 1) if self._reason is not None else [0] * (k + 1)
        lasts: list[int] = []
        for j in range(k):
            p, stable, v = _following(keep, lp, lo, lr, visible, instructions[j])
            o = outs[j] + reasons[j]
            if p > limit or p + o > window:
                v = compacted
                calls.append(CallTemplate(compacted, o, (lead,), 0.0, ROOT, None, False, True, reasons[j], 0, sub))
            else:
                calls.append(CallTemplate(p, o, (lead,), 0.0, lead, None, False, False, reasons[j], stable, sub))
            self._grow(calls, lengths[j] - 1, compacted, sub, v)
            lasts.append(len(calls) - 1)
        p, stable, v = _following(keep, lp, lo, lr, visible, sum(self._result.take(k)))
        o = outs[k] + reasons[k]
        join = self._join_model
        if p > limit or p + o > window:
            calls.append(CallTemplate(compacted, o, tuple(lasts), 0.0, ROOT, None, False, True, reasons[k], 0, join))
            return compacted
        calls.append(CallTemplate(p, o, tuple(lasts), 0.0, lead, None, False, False, reasons[k], stable, join))
        return v
