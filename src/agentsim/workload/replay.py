"""Replaying a trace: recorded tasks turned into the task stream the agents run.

A trace (canonical Parquet, :mod:`agentsim.traces.schema`) holds tasks with their start times and, per call,
its dependencies, gap, optional release time, tokens and prefix identity (block hashes or a link to the call
whose prompt it extends). Replay keeps the recorded *what* and chooses the *when*:

* ``closed``: a task starts at its recorded time; each call is sent when its dependencies are done plus its
  recorded gap, so a slower cluster delays later steps (the agentic feedback loop);
* ``open``: every call is sent at its recorded release time, whatever happened to the calls before it. A call
  with no recorded release time (synthetic traces record it only for a task's first calls) is released when it
  would have been sent had every call before it been served instantly: the latest release of its dependencies
  plus its gap.

``rate_scale`` divides start and release times (more tasks per second), ``time_scale`` multiplies every
duration (start and release times, gaps).

Context window. A recorded call whose prompt + output passes the serving model's window ``W`` is replayed as
recorded and rejected by the server (``on_context_limit: fail``, the default: a trace cannot be compacted after
the fact). ``truncate``, a what-if, cuts its prompt to its leading ``W - output`` tokens (its block hashes to
the blocks that remain; a prefix link to a longer prompt is dropped); a call whose output, or shared prefix,
leaves no room is left as recorded, and rejected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace

from agentsim import spec
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate


def replay_template(
    template: TaskTemplate,
    hash_ids: list[tuple[int, ...] | None],
    release_s: list[float | None],
    start_s: float,
    w: spec.TraceWorkload,
    max_context_tokens: int | None = None,
) -> TaskTemplate:
    """The template a replayed task runs: hashes attached, times scaled, dependencies dropped in open mode, and
    prompts past the context window ``max_context_tokens`` truncated if ``w.on_context_limit`` says so."""
    calls: list[CallTemplate] = []
    released: list[float] = []
    truncate = max_context_tokens is not None and w.on_context_limit == "truncate"
    for i, c in enumerate(template.calls):
        if truncate and max_context_tokens is not None and c.prompt_tokens + c.output_tokens > max_context_tokens:
            c, hash_ids[i] = _truncated(c, hash_ids[i], max_context_tokens - c.output_tokens, calls, template)
        r = release_s[i]
        if r is None:
            r = max((released[d] for d in c.deps), default=start_s) + c.gap_s
        released.append(r)
        if w.mode == "open":
            gap = max(0.0, (r - start_s)) * w.time_scale / w.rate_scale
            calls.append(replace(c, deps=(), gap_s=gap, hash_ids=hash_ids[i]))
        else:
            calls.append(replace(c, gap_s=c.gap_s * w.time_scale, hash_ids=hash_ids[i]))
    return replace(template, workload=w.label, calls=tuple(calls))


def _truncated(
    c: CallTemplate, ids: tuple[int, ...] | None, keep: int, earlier: list[CallTemplate], template: TaskTemplate
) -> tuple[CallTemplate, tuple[int, ...] | None]:
    """``c`` with its prompt cut to its first ``keep`` tokens (unchanged if that leaves no room)."""
    if keep < max(1, template.shared_prefix_tokens):
        return c, ids
    parent = c.prefix_parent
    if parent != ROOT and earlier[parent].prompt_tokens > keep:
        parent = ROOT  # the recorded parent's prompt no longer fits inside this one
    if ids is not None:
        ids = ids[: -(-keep // template.block_tokens)]
    return replace(c, prompt_tokens=keep, prefix_parent=parent), ids


def replay_stream(
    tasks: Iterable[tuple[float, TaskTemplate]], w: spec.TraceWorkload
) -> tuple[Iterator[float], Iterator[TaskTemplate]]:
    """Split ``(start_s, template)`` pairs (sorted by start) into scaled start times and templates, consumed in
    step by the agents: the k-th start time belongs to the k-th template.

    Lazily: the trace is read as the start times are drawn, and a template is held only from its start time's
    draw to its task's start (one or two at a time), so replaying a trace takes memory for the tasks in flight,
    not for the whole trace."""
    pending: deque[TaskTemplate] = deque()
    scale = w.time_scale / w.rate_scale

    def starts() -> Iterator[float]:
        for n, (start, template) in enumerate(tasks):
            if w.max_tasks is not None and n >= w.max_tasks:
                return
            pending.append(template)
            yield start * scale

    def templates() -> Iterator[TaskTemplate]:
        while True:
            yield pending.popleft()

    return starts(), templates()
