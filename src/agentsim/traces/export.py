"""Exporters: canonical traces into formats other tools replay, so the same workload runs side by side.

Two formats, both JSONL with one row per call:

* ``mooncake``: the plain Mooncake trace (what Mooncake, AIPerf ``mooncake_trace`` and most simulators read):
  ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids``. It has no dependencies, so every
  call needs a send time: its ``release_s`` when the trace has one, else the earliest time it could be sent
  if the serving system answered instantly (its dependencies' send times plus its gap). Rows are sorted by
  timestamp.
* ``mooncake-agentic``: the agentic Mooncake dialect of NVIDIA Dynamo (``AgenticMooncakeRow``, read by its
  replay and aisimulate): ``request_id``, ``session_id``, ``input_length``, ``output_length``, ``hash_ids``;
  ``timestamp`` (ms, open-loop start) on each call that waits for nothing (a task's first call);
  ``wait_for`` (the request ids it depends on) and ``tool_wait_ms`` (its ``gap_s``, waited after the last
  dependency completes) on the others. Request ids are the trace's call ids, session ids its task ids
  (as strings). Rows are in trace order (tasks by start, calls in topological order).

**Hash ids with any block size.** Both formats identify prompt prefixes by block hashes: exactly
``ceil(input_length / block)`` ids per call, each standing for a block and everything before it, so equal
leading ids mean a shared prefix. They are derived from the trace, never copied, so that ids from different
sources cannot collide:

* a call with a prefix link shares the first ``floor(prefix_tokens / block)`` ids of the call it extends
  (the full blocks of the shared prefix; a partial block is new content) and gets fresh ids after them; an
  unlinked call with a workload-shared prefix (``prefix_tokens > 0``) shares that prefix's full blocks with
  every other such call of the workload;
* a call with hash ids of the trace's own block size ``B0`` is re-blocked through a trie of its original
  ids: new block ``j`` ends at token ``e = min((j + 1) * block, prompt)`` and is named by the original ids
  up to ``ceil(e / B0)`` plus ``e``. Two calls share a new block exactly when their original ids say they
  share every token of it (conservative when ``block`` does not divide ``B0``), and the result is
  prefix-consistent by construction.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agentsim.files import atomic_path
from agentsim.traces.io import check_output_parent, read_trace, read_trace_meta
from agentsim.traces.schema import OutputExistsError, TraceError, TraceTask

EXPORT_FORMATS = ("mooncake-agentic", "mooncake")
"""Formats :func:`export_trace` writes."""


class BlockHasher:
    """Assigns block hash ids (see the module docstring) to the calls of tasks, in trace order."""

    def __init__(self, block_size: int, source_block_size: int) -> None:
        if block_size < 1:
            raise TraceError(f"block size must be >= 1, got {block_size}")
        self.block = block_size
        self.source_block = source_block_size
        self._next = 0
        self._trie: dict[tuple[int, int], int] = {}  # (parent node, original id) -> node (an id of its own)
        self._blocks: dict[tuple[int, int], int] = {}  # (node, end token) -> new id
        self._shared: dict[tuple[str, int], list[int]] = {}  # (workload, prefix tokens) -> ids of its full blocks

    def _fresh(self, n: int) -> list[int]:
        out = list(range(self._next, self._next + n))
        self._next += n
        return out

    def _rehash(self, original: tuple[int, ...], prompt: int) -> list[int]:
        b, b0 = self.block, self.source_block
        trie = self._trie
        nodes: list[int] = []
        node = -1
        for h in original:
            key = (node, h)
            nxt = trie.get(key)
            if nxt is None:
                nxt = trie[key] = self._next
                self._next += 1
            nodes.append(nxt)
            node = nxt
        if b == b0:
            return nodes  # same blocks: the trie node of each original prefix is its new id
        out: list[int] = []
        blocks = self._blocks
        last = len(nodes) - 1
        for j in range(-(-prompt // b)):
            end = min((j + 1) * b, prompt)
            key = (nodes[min(-(-end // b0), last + 1) - 1], end)
            hid = blocks.get(key)
            if hid is None:
                hid = blocks[key] = self._next
                self._next += 1
            out.append(hid)
        return out

    def task(self, task: TraceTask) -> list[list[int]]:
        """Hash ids for every call of ``task``."""
        b = self.block
        out: list[list[int]] = []
        shared_tokens = task.template.shared_prefix_tokens
        for c, h in zip(task.template.calls, task.hash_ids, strict=True):
            n = -(-c.prompt_tokens // b)
            if h is not None:
                out.append(self._rehash(h, c.prompt_tokens))
                continue
            if c.prefix_parent >= 0:
                keep = min(task.template.calls[c.prefix_parent].prompt_tokens // b, n)
                out.append(out[c.prefix_parent][:keep] + self._fresh(n - keep))
                continue
            keep = min(shared_tokens // b, n)
            if keep:
                key = (task.workload, shared_tokens)
                ids = self._shared.get(key)
                if ids is None:
                    ids = self._shared[key] = self._fresh(shared_tokens // b)
                out.append(ids[:keep] + self._fresh(n - keep))
            else:
                out.append(self._fresh(n))
        return out


@dataclass
class ExportReport:
    """What an export wrote."""

    format: str
    source: str
    out: str
    rows: int = 0
    tasks: int = 0
    block_size_tokens: int = 0


def _ms(seconds: float) -> float | int:
    ms = round(seconds * 1000.0, 3)
    return int(ms) if float(ms).is_integer() else ms


def _send_times(task: TraceTask) -> list[float]:
    """Each call's release time, or its earliest send time with instant service (deps' times plus gap)."""
    times: list[float] = []
    for c, r in zip(task.template.calls, task.release_s, strict=True):
        if r is not None:
            times.append(r)
        elif c.deps:
            times.append(max(times[d] for d in c.deps) + c.gap_s)
        else:
            times.append(task.start_s + c.gap_s)
    return times


def agentic_rows(tasks: Iterator[TraceTask], hasher: BlockHasher) -> Iterator[dict[str, Any]]:
    """``mooncake-agentic`` rows, in trace order."""
    for task in tasks:
        ids = task.call_ids
        hashes = hasher.task(task)
        for k, c in enumerate(task.template.calls):
            row: dict[str, Any] = {
                "request_id": str(ids[k]),
                "session_id": str(task.task_id),
                "input_length": c.prompt_tokens,
                "output_length": c.output_tokens,
                "hash_ids": hashes[k],
            }
            if c.deps:
                row["wait_for"] = [str(ids[d]) for d in c.deps]
                row["tool_wait_ms"] = _ms(c.gap_s)
            else:
                r = task.release_s[k]
                row["timestamp"] = _ms(task.start_s + c.gap_s if r is None else r)
            yield row


def mooncake_rows(tasks: Iterator[TraceTask], hasher: BlockHasher) -> Iterator[dict[str, Any]]:
    """Plain ``mooncake`` rows sorted by timestamp, streaming: a call is emitted once no later task can
    start before it (tasks come in start order and no call is sent before its task starts)."""
    heap: list[tuple[float, int, dict[str, Any]]] = []
    seq = 0
    for task in tasks:
        while heap and heap[0][0] < task.start_s:
            yield heapq.heappop(heap)[2]
        hashes = hasher.task(task)
        for k, (c, t) in enumerate(zip(task.template.calls, _send_times(task), strict=True)):
            row = {
                "timestamp": _ms(t),
                "input_length": c.prompt_tokens,
                "output_length": c.output_tokens,
                "hash_ids": hashes[k],
            }
            heapq.heappush(heap, (t, seq, row))
            seq += 1
    while heap:
        yield heapq.heappop(heap)[2]


def export_trace(
    fmt: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    block_size_tokens: int = 512,
    overwrite: bool = False,
) -> ExportReport:
    """Export the canonical trace ``src`` as ``fmt`` (one of :data:`EXPORT_FORMATS`) to ``out``, atomically."""
    if fmt not in EXPORT_FORMATS:
        raise TraceError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    meta = read_trace_meta(src)
    hasher = BlockHasher(block_size_tokens, meta.block_size_tokens)
    report = ExportReport(fmt, str(src), str(out), block_size_tokens=block_size_tokens)

    def counted() -> Iterator[TraceTask]:
        for t in read_trace(src):
            report.tasks += 1
            yield t

    rows = agentic_rows(counted(), hasher) if fmt == "mooncake-agentic" else mooncake_rows(counted(), hasher)
    check_output_parent(out)
    with (
        atomic_path(out, overwrite=overwrite, exists_error=OutputExistsError) as tmp,
        open(tmp, "w", encoding="utf-8") as f,
    ):
        buf: list[str] = []
        for row in rows:
            buf.append(json.dumps(row, separators=(", ", ": ")))
            report.rows += 1
            if len(buf) >= 4096:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")
    return report
