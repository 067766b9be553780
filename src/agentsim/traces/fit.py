"""Fitting a profile to a trace: a generator of look-alike workloads.

A production trace cannot always be shared, and it has one size. :func:`fit_profile` estimates an agentsim
profile and an arrival process from a canonical trace, so that ``agentsim trace generate`` produces traces of
any length that look like it, statistically, without containing any of its rows.

**What is fitted.**

* *Arrivals*: a gamma renewal process (:class:`~agentsim.spec.GammaArrivals`) with the trace's task arrival
  rate ``1 / mean(inter-arrival)`` and inter-arrival coefficient of variation (as in
  :mod:`agentsim.traces.stats`). Gamma gaps reproduce both moments exactly; burstiness that lives in
  longer-range structure (diurnal cycles) is not captured.
* *Single-call traces without prefix reuse* (every task one call, no block hashes or none shared: Azure,
  BurstGPT without sessions): a :class:`~agentsim.spec.FixedProfile` whose prompt and output tokens are
  empirical distributions.
* *Single-call traces with shared block hashes* (Mooncake): their reuse comes from a shared system prefix and
  from conversations whose turns extend earlier prompts, but the log has no sessions. The sessions are
  recovered from the hash ids (:mod:`agentsim.traces.chains`: each request is linked to the earlier request
  whose prompt best matches what it reuses) and fitted as the multi-call traces below: an agent profile with a
  shared system prompt of the common leading blocks, one step per turn, ``gap: think`` (the time between a
  turn and the next, service time included), arrivals of sessions, not requests. This keeps the reuse (the
  sessions serve what the unbounded cache served, within a fraction of a percent on the Mooncake traces) and
  the closed-loop nature of conversations (a turn waits for the answer to the previous one). A fixed profile
  would drop the reuse to zero; a generator of block hashes would keep it but needs a profile form of its
  own and replays every request open-loop. Not kept: correlations between a session's first prompt and its
  length (the profile draws them independently; the Mooncake synthetic trace, whose long documents get
  more turns, regenerates with reuse ~45% instead of 65%).
* *Multi-call traces*: an :class:`~agentsim.spec.AgentProfile` whose tasks are built the way the traced ones
  were. Each task is read as the task factory builds one: a lead chain, optionally a fan-out (``K``
  sub-agent chains forked from one lead call and a join call that waits for them; the join is recognised as
  a call whose prefix parent is not among its dependencies), then the rest of the lead chain. Fitted:
  steps per task (lead calls, the join excluded), output tokens per call, the first prompt (a shared system
  prompt when every task carries the same shared prefix, plus a task prompt), the tokens each step appends
  beyond its parent's prompt and output (``tool_result_tokens``, sub-agent instructions included), the gap
  before each chain step (``tool_s``; ``gap: tool`` when most of them are marked as tool time, else
  ``think``), the fan-out (``at_step``: the most common number of lead calls up to the fork; sub-agents per
  task, 0 included; steps per sub-agent; result tokens, the join's growth over the fork's context shared
  equally among the sub-agents) and, when the trace shows compaction (an unlinked chain step), the context
  limit (the largest prompt) and the compacted size (the median compacted prompt minus the shared prefix).
  Dependencies that do not fit this shape (a call waiting for several calls without a join's prefix) are
  kept as plain chain steps.

**Empirical distributions.** Token and step counts are heavy-tailed and rarely lognormal in the tails, so
they are fitted as :class:`~agentsim.spec.Empirical` distributions: when a quantity takes at most ``points``
distinct values, its exact frequencies; otherwise the sorted sample is cut into ``points`` equal-count bins
and each bin is represented by its mean, weighted by its count. Bin means keep the mean exact and move each
quantile by less than the width of one bin (0.5% of the mass for 200 points); the draws are then rounded to
integers by the task factory.

**The profile file** (``agentsim trace fit PATH --out profile.yaml``) is a YAML mapping
``{profile: <profile>, arrivals: <arrivals>}``, each validated as the scenario's profile and arrival
specs (so either part can be pasted into a scenario's ``workload`` entry), preceded by comments naming the
source trace, the profile kind chosen and why (:attr:`FittedProfile.reason`, also printed by the CLI) and the
trace's statistics. :func:`load_profile_file` reads it back (a bare profile mapping is accepted
too, with no arrivals).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml
from pydantic import TypeAdapter, ValidationError

from agentsim.files import atomic_path
from agentsim.spec import AgentProfile, Constant, Empirical, FanOut, FixedProfile, GammaArrivals, Poisson, Profile
from agentsim.traces.chains import prefix_sessions
from agentsim.traces.io import check_output_parent
from agentsim.traces.schema import OutputExistsError, TraceError
from agentsim.traces.stats import block_size_of, load_for_stats, stats_dict, task_starts
from agentsim.traces.tables import table_to_tasks
from agentsim.workload.taskgraph import TaskTemplate
from agentsim.yamlio import TextFileError, loads, read_text

DEFAULT_POINTS = 200
"""Support points of a fitted empirical distribution."""

_PROFILE: TypeAdapter[AgentProfile | FixedProfile] = TypeAdapter(Profile)
_ARRIVALS: TypeAdapter[Poisson | GammaArrivals] = TypeAdapter(Poisson | GammaArrivals)


@dataclass(frozen=True)
class FittedProfile:
    """A profile and an arrival process fitted to a trace, with the trace's statistics for reference."""

    profile: AgentProfile | FixedProfile
    arrivals: GammaArrivals
    source: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    """Why this kind of profile was chosen (printed by the CLI, written to the file as a comment)."""

    def to_mapping(self) -> dict[str, Any]:
        """``{profile: ..., arrivals: ...}`` as plain data."""
        return {
            "profile": self.profile.model_dump(mode="json", exclude_none=True),
            "arrivals": self.arrivals.model_dump(mode="json"),
        }

    def to_yaml(self) -> str:
        """The profile file: provenance comments, then the mapping."""
        lines = [
            "# agentsim profile fitted by `agentsim trace fit`",
            f"# source: {self.source or '(table)'}",
            "# `agentsim trace generate THIS_FILE --tasks N --seed S --out OUT` makes look-alike traces.",
            f"# profile kind: {self.profile.kind}",
        ]
        lines += [f"# {line}" for line in textwrap.wrap(f"why: {self.reason}", 112, subsequent_indent="  ")]
        keys = ("calls", "tasks", "task_rate_per_s", "interarrival_cv", "prompt_tokens_mean", "prompt_tokens_p50",
                "prompt_tokens_p90", "output_tokens_mean", "output_tokens_p50", "output_tokens_p90",
                "calls_per_task_mean", "prefix_reuse")  # fmt: skip
        for k in keys:
            if k in self.stats:
                lines.append(f"# trace {k}: {self.stats[k]:.6g}")
        body = yaml.safe_dump(self.to_mapping(), sort_keys=False, default_flow_style=None, width=120)
        return "\n".join(lines) + "\n" + body

    def write(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the profile file atomically (refusing to replace an existing file unless ``overwrite``)."""
        check_output_parent(path)
        with atomic_path(path, overwrite=overwrite, exists_error=OutputExistsError) as tmp:
            tmp.write_text(self.to_yaml(), encoding="utf-8")


def empirical(x: np.ndarray, points: int = DEFAULT_POINTS, *, digits: int = 2) -> Empirical | Constant:
    """An empirical distribution of the sample ``x`` (see the module docstring): exact frequencies when it has
    at most ``points`` distinct values, else ``points`` equal-count bins represented by their means."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    if len(x) == 0:
        raise TraceError("cannot fit a distribution to no data")
    values, counts = np.unique(x, return_counts=True)
    if len(values) == 1:
        return Constant(value=float(values[0]))
    if len(values) <= points:
        return Empirical(values=[float(v) for v in values], weights=[float(c) for c in counts])
    edges = np.linspace(0, len(x), points + 1).round().astype(np.int64)
    sums = np.add.reduceat(x, edges[:-1])
    sizes = np.diff(edges)
    means = np.round(sums / sizes, digits)
    return Empirical(values=[float(v) for v in means], weights=[float(c) for c in sizes])


def _fit_arrivals(starts: np.ndarray) -> GammaArrivals:
    s = np.sort(starts)
    gaps = np.diff(s)
    if len(gaps) < 2 or gaps.mean() <= 0:
        raise TraceError("fitting arrivals needs at least three tasks with distinct start times")
    rate = 1.0 / float(gaps.mean())
    cv = float(np.std(gaps) / gaps.mean())
    return GammaArrivals(rate_per_s=rate, cv=max(cv, 1e-3))


def fit_profile(
    source: str | os.PathLike[str] | pa.Table, *, points: int = DEFAULT_POINTS, name: str = ""
) -> FittedProfile:
    """Fit a profile and gamma arrivals to a trace (a path or a canonical table); see the module docstring."""
    table = load_for_stats(source)
    if table.num_rows == 0:
        raise TraceError("cannot fit an empty trace")
    src = name or (str(source) if not isinstance(source, pa.Table) else "")
    stats = stats_dict(table)
    starts, task_of_row = task_starts(table)
    arrivals = _fit_arrivals(starts)
    prompt = table.column("prompt_tokens").to_numpy()
    output = table.column("output_tokens").to_numpy()
    per_task = np.bincount(task_of_row)
    profile: AgentProfile | FixedProfile
    if per_task.max() == 1:
        if stats["prefix_reuse"] > 0 and stats["hashed_calls"] > 0:
            return _fit_hash_sessions(table, points, src, stats)
        why = "no block hash ids" if not stats["hashed_calls"] > 0 else "no block shared between prompts"
        profile = FixedProfile(prompt_tokens=empirical(prompt, points), output_tokens=empirical(output, points))
        reason = f"every task is one call and the trace has {why} (prefix reuse 0): one fixed-size call per task"
        return FittedProfile(profile, arrivals, src, stats, reason)

    shape = _TaskShapes()
    for task in table_to_tasks(table, block_size_tokens=block_size_of(table), where=src or "trace"):
        shape.add(task.template)
    reason = (
        f"tasks have up to {int(per_task.max())} calls (mean {stats['calls_per_task_mean']:.3g}): an agent profile "
        "built the way the traced tasks are (chains, fan-out and join, compaction where the trace shows them)"
    )
    return FittedProfile(shape.profile(points), arrivals, src, stats, reason)


def _fit_hash_sessions(table: pa.Table, points: int, src: str, stats: dict[str, float]) -> FittedProfile:
    """An agent profile fitted to the sessions recovered from the block hashes of a single-call trace."""
    tasks, starts, found = prefix_sessions(table)
    if len(tasks) < 3:
        raise TraceError(
            f"the trace's {found.calls} requests form {len(tasks)} session(s) by their block hashes; fitting "
            "arrivals needs at least three"
        )
    shape = _TaskShapes()
    for t in tasks:
        shape.add(t)
    reason = (
        f"single-call requests with block hashes and prefix reuse {100 * found.reuse:.1f}%: {found.sessions} "
        f"sessions recovered from the hash ids ({found.linked_calls} requests extend an earlier prompt; shared "
        f"system prefix {found.system_blocks} block(s) of {found.block_size} tokens) serve "
        f"{100 * found.session_reuse:.1f}%; an agent profile (one step per turn, think time between turns, "
        "session arrivals) keeps that reuse, a fixed profile would drop it to 0"
    )
    return FittedProfile(shape.profile(points), _fit_arrivals(starts), src, stats, reason)


class _TaskShapes:
    """Samples of the quantities an :class:`AgentProfile` draws, read off tasks (see the module docstring).

    A task is read as the task factory builds it: a lead chain; optionally, after the lead's call ``f``
    (the *fork*), ``K`` sub-agent chains whose first calls depend on ``f`` and extend its prompt, joined by a
    call that waits for the chains' last calls and extends ``f`` (its prefix parent is not among its
    dependencies: that is how the join is recognised, also for ``K = 1``); then the rest of the lead chain.
    """

    def __init__(self) -> None:
        self.shared: list[int] = []
        self.task_prompt: list[int] = []
        self.steps: list[int] = []
        self.outputs: list[int] = []
        self.appended: list[int] = []  # tool results and sub-agent instructions: prompt - parent prompt - output
        self.waits: list[float] = []
        self.waits_tool: list[bool] = []
        self.compacted: list[int] = []
        self.max_prompt = 0
        self.subagents: list[int] = []
        self.lead_before_fork: list[tuple[int, bool]] = []  # (lead calls up to the fork, lead went on after join)
        self.sub_steps: list[int] = []
        self.results: list[float] = []

    def add(self, t: TaskTemplate) -> None:
        calls = t.calls
        n = len(calls)
        shared = t.shared_prefix_tokens
        self.shared.append(shared)
        self.task_prompt.append(max(calls[0].prompt_tokens - shared, 0))
        self.outputs.extend(c.output_tokens for c in calls)
        self.max_prompt = max(self.max_prompt, max(c.prompt_tokens for c in calls))
        join = next(
            (i for i, c in enumerate(calls) if c.prefix_parent >= 0 and c.deps and c.prefix_parent not in c.deps),
            None,
        )
        skip_wait: set[int] = set()
        if join is None:
            self.steps.append(n)
            self.subagents.append(0)
        else:
            fork = calls[join].prefix_parent
            children: list[list[int]] = [[] for _ in range(n)]
            for i, c in enumerate(calls):
                for d in c.deps:
                    children[d].append(i)
            starts = [j for j in children[fork] if j != join]
            ends = set(calls[join].deps)
            for s in starts:
                length, cur = 1, s
                while cur not in ends and len(children[cur]) == 1 and length <= n:
                    cur = children[cur][0]
                    length += 1
                self.sub_steps.append(length)
            k = max(len(starts), 1)
            context = calls[fork].prompt_tokens + calls[fork].output_tokens
            self.results.extend([max(calls[join].prompt_tokens - context, 0) / k] * k)
            self.subagents.append(len(starts))
            after = n - join - 1
            self.steps.append(fork + 1 + after)
            self.lead_before_fork.append((fork + 1, after > 0))
            skip_wait.update(starts)
            skip_wait.add(join)
        for i in range(1, n):
            c = calls[i]
            if c.prefix_parent >= 0 and c.deps == (c.prefix_parent,):  # a step (or a sub-agent's first call)
                p = calls[c.prefix_parent]
                self.appended.append(max(c.prompt_tokens - p.prompt_tokens - p.output_tokens, 0))
            if i in skip_wait or len(c.deps) != 1:  # sub-agent starts and joins are sent without a gap
                continue
            self.waits.append(c.gap_s)
            self.waits_tool.append(c.gap_is_tool)
            if c.prefix_parent < 0:
                self.compacted.append(c.prompt_tokens - shared)

    def profile(self, points: int) -> AgentProfile:
        shared = self.shared[0] if len(set(self.shared)) == 1 else 0
        appended = self.appended or [0]
        if self.compacted:
            compact_to = max(1, int(np.median(self.compacted)))
            limit = max(self.max_prompt, compact_to + shared + 1)
        else:
            limit = max(2 * self.max_prompt, 1000)
            compact_to = max(1, min(20_000, limit // 4))
        compact_to = min(compact_to, limit - 1)
        fanout = None
        if any(self.subagents):
            full = [lead for lead, went_on in self.lead_before_fork if went_on]
            at_step = Counter(full).most_common(1)[0][0] if full else max(x for x, _ in self.lead_before_fork)
            fanout = FanOut(
                subagents=empirical(np.asarray(self.subagents), points),
                at_step=max(at_step, 1),
                steps=empirical(np.asarray(self.sub_steps), points),
                result_tokens=empirical(np.asarray(self.results), points),
            )
        tool_share = float(np.mean(self.waits_tool)) if self.waits_tool else 1.0
        try:
            return AgentProfile(
                system_prompt_tokens=Constant(value=float(shared)),
                shared_system_prompt=True,
                task_prompt_tokens=empirical(np.asarray(self.task_prompt), points),
                steps=empirical(np.asarray(self.steps), points),
                output_tokens=empirical(np.asarray(self.outputs), points),
                tool_result_tokens=empirical(np.asarray(appended), points),
                tool_s=empirical(np.asarray(self.waits), points, digits=4) if self.waits else Constant(value=0.0),
                gap="tool" if tool_share >= 0.5 else "think",
                fanout=fanout,
                context_limit_tokens=limit,
                compact_to_tokens=compact_to,
            )
        except ValidationError as e:  # pragma: no cover - the construction above respects the spec's bounds
            raise TraceError(f"the fitted profile is invalid: {e}") from None


def load_profile_file(
    path: str | os.PathLike[str],
) -> tuple[AgentProfile | FixedProfile, Poisson | GammaArrivals | None]:
    """A profile file (``{profile: ..., arrivals: ...}``, or a bare profile mapping): the validated profile and
    arrivals (``None`` when the file has none). Raises :class:`TraceError` naming the bad field."""
    p = Path(path)
    try:
        raw = loads(read_text(p))
    except TextFileError as e:
        raise TraceError(str(e)) from None
    except yaml.YAMLError as e:
        raise TraceError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise TraceError(f"{p}: expected a mapping with `profile` (and `arrivals`)")
    if "profile" in raw:
        extra = set(raw) - {"profile", "arrivals"}
        if extra:
            raise TraceError(f"{p}: unknown key(s) {', '.join(sorted(extra))}; expected profile and arrivals")
        prof_raw, arr_raw = raw["profile"], raw.get("arrivals")
    else:
        prof_raw, arr_raw = raw, None
    try:
        profile = _PROFILE.validate_python(prof_raw)
    except ValidationError as e:
        raise TraceError(f"{p}: profile is invalid:\n{_errors(e, 'profile')}") from None
    arrivals = None
    if arr_raw is not None:
        try:
            arrivals = _ARRIVALS.validate_python(arr_raw)
        except ValidationError as e:
            raise TraceError(f"{p}: arrivals is invalid:\n{_errors(e, 'arrivals')}") from None
    return profile, arrivals


def _errors(e: ValidationError, root: str) -> str:
    return "\n".join(f"  {'.'.join([root, *(str(x) for x in err['loc'])])}: {err['msg']}" for err in e.errors())


def relative_errors(original: dict[str, float], generated: dict[str, float]) -> dict[str, float]:
    """``|generated / original - 1|`` for the statistics a fit promises to match (for tests and reports)."""
    keys = ("prompt_tokens_mean", "prompt_tokens_p50", "prompt_tokens_p90", "output_tokens_mean",
            "output_tokens_p50", "output_tokens_p90", "task_rate_per_s", "interarrival_cv")  # fmt: skip
    out = {}
    for k in keys:
        a, b = original.get(k, math.nan), generated.get(k, math.nan)
        out[k] = abs(b / a - 1.0) if a else math.nan
    return out
