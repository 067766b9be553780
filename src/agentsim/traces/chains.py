"""Prefix chains: the conversations hidden in a single-call trace with block hashes.

Mooncake-style logs have no sessions: every row is one request with ``hash_ids``, one id per block of its
prompt, each id standing for the block and everything before it. Their prefix reuse still comes from
structure a profile can express: a **shared system prefix** (leading blocks every request starts with) and
**per-conversation chains** (a later turn's prompt is the previous turn's prompt, its answer and a new
message, so it starts with every full block of an earlier request). :func:`prefix_sessions` recovers that
structure.

**The rule.** Requests are visited in release order (ties in file order). ``S`` is the number of leading
ids all hashed requests share (the system prefix, ``S * block`` tokens). A request with ``f = prompt //
block`` full blocks is *extendable* when ``f > S``: its full blocks are more than the system prefix (a
partial last block is not reusable, the next turn fills it with other tokens). The **parent** of a request
is the latest earlier extendable request whose full blocks are all a prefix of this one's ids, with the most
such blocks (the whole earlier prompt, as far as blocks can tell, is the cacheable prefix of this one). Each
request has at most one parent, so parents form a forest; each tree is a session (a task), its requests in
release order, each depending on its parent after a gap of ``release - parent release`` (the parent's
service time plus the user's think time: a log of send times cannot split them), with the parent's whole
prompt as its prefix link.

A tree is usually a chain (one turn after another); a branch (two later requests extending the same one: a
regenerated answer, an edited message) is kept as it is. Because a request is only linked to a request
whose *full blocks it extends entirely*, a request that shares only part of a longer earlier prompt (a
branch off a turn the trace does not hold on its own) is linked to the last earlier request it does extend,
or to none: that part of its reuse is not explained by a chain (:class:`ChainSummary` counts it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentsim.traces.stats import block_size_of, task_starts
from agentsim.workload.taskgraph import CallTemplate, TaskTemplate


@dataclass(frozen=True)
class ChainSummary:
    """What :func:`prefix_sessions` found: the system prefix, the sessions and how much reuse they explain."""

    block_size: int
    system_blocks: int
    calls: int
    sessions: int
    linked_calls: int
    branched_calls: int  # linked to a parent that already had an earlier child
    prompt_tokens: int
    hit_tokens: int  # served by an unbounded cache (as :func:`~agentsim.traces.stats.prefix_reuse` counts)
    linked_hit_tokens: int  # served in the sessions: each linked request's parent prompt, else the system prefix

    @property
    def reuse(self) -> float:
        """Prefix reuse of the trace (hit tokens over prompt tokens)."""
        return self.hit_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def session_reuse(self) -> float:
        """Prefix reuse the sessions reproduce (linked hit tokens over prompt tokens)."""
        return self.linked_hit_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def _common_prefix(hashes: list[list[int]]) -> int:
    if not hashes:
        return 0
    first = hashes[0]
    n = min(len(h) for h in hashes)
    for h in hashes[1:]:
        k = 0
        while k < n and h[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


def prefix_sessions(table: pa.Table, workload: str = "") -> tuple[list[TaskTemplate], np.ndarray, ChainSummary]:
    """Sessions of a single-call hashed table (see the module docstring): ``(tasks, start time of each task,
    summary)``. Tasks are in start order; rows without hash ids are sessions of their own."""
    block = block_size_of(table)
    n = table.num_rows
    starts, task_of_row = task_starts(table)
    release = table.column("release_s").to_numpy(zero_copy_only=False).astype(np.float64)
    eff = np.where(np.isnan(release), starts[task_of_row], release)
    order = np.argsort(eff, kind="stable")
    prompt = table.column("prompt_tokens").to_numpy()
    output = table.column("output_tokens").to_numpy()
    hashes: list[list[int] | None] = table.column("hash_ids").to_pylist()
    label = workload or (str(pc.min(table.column("workload")).as_py()) if n else "")
    hashed = [h for h in hashes if h is not None]
    system = _common_prefix(hashed)
    # Ids stand for their whole prefix, so "the full blocks of j are a prefix of i's ids" is "i's id at position
    # f_j - 1 is j's last full id" (with the position checked too, against ids reused at another depth).
    latest: dict[tuple[int, int], int] = {}  # (position, id) -> latest request with that id there
    latest_full: dict[tuple[int, int], int] = {}  # (full blocks, last full id) -> latest extendable request
    parent = np.full(n, -1, dtype=np.int64)
    children = np.zeros(n, dtype=np.int64)
    branched = 0
    real_hits = 0
    link_hits = 0
    for r in order:
        h = hashes[r]
        if h is None:
            continue
        p = int(prompt[r])
        shared = 0  # blocks this request shares with an earlier one (ids name prefixes: a match at k implies < k)
        for k in range(len(h), 0, -1):
            if (k - 1, h[k - 1]) in latest:
                shared = k
                break
        real = sum(min(block, p - b * block) for b in range(shared))
        real_hits += real
        # Candidates: the latest request whose whole prompt this one extends (as far as blocks tell), the
        # latest one it shares the most blocks with, or none; the link serving closest to `real` wins.
        best, best_hit = -1, min(system * block, p) if shared >= system else 0
        for k in range(shared, system, -1):
            j = latest_full.get((k, h[k - 1]))
            if j is not None:
                if abs(int(prompt[j]) - real) < abs(best_hit - real):
                    best, best_hit = j, int(prompt[j])
                break
        if shared > system:
            j = latest[(shared - 1, h[shared - 1])]
            if j != best and abs(int(prompt[j]) - real) < abs(best_hit - real):
                best, best_hit = j, int(prompt[j])
        if best >= 0:
            parent[r] = best
            branched += int(children[best] > 0)
            children[best] += 1
        link_hits += best_hit
        for k, x in enumerate(h):
            latest[(k, x)] = int(r)
        f = p // block
        if f > system:
            latest_full[(f, h[f - 1])] = int(r)
    # Sessions: the trees of the forest, each rooted at a request without parent, in start order.
    root = np.arange(n)
    for r in order:
        if parent[r] >= 0:
            root[r] = root[parent[r]]
    members: dict[int, list[int]] = {}
    for r in order:
        members.setdefault(int(root[r]), []).append(int(r))
    tasks: list[TaskTemplate] = []
    task_start: list[float] = []
    shared = system * block
    for rows in members.values():  # roots are inserted in release order
        pos = {r: i for i, r in enumerate(rows)}
        calls = []
        for r in rows:
            pr = int(parent[r])
            if pr < 0:
                calls.append(CallTemplate(int(prompt[r]), int(output[r])))
            else:
                i = pos[pr]
                calls.append(CallTemplate(int(prompt[r]), int(output[r]), (i,), float(eff[r] - eff[pr]), i))
        tasks.append(TaskTemplate(label, tuple(calls), shared if hashes[rows[0]] is not None else 0))
        task_start.append(float(eff[rows[0]]))
    summary = ChainSummary(
        block_size=block,
        system_blocks=system,
        calls=n,
        sessions=len(tasks),
        linked_calls=int((parent >= 0).sum()),
        branched_calls=branched,
        prompt_tokens=int(prompt.sum()),
        hit_tokens=real_hits,
        linked_hit_tokens=link_hits,
    )
    return tasks, np.asarray(task_start), summary

