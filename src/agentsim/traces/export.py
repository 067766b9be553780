"""Exporters: canonical traces into formats other tools replay, so the same workload runs side by side.

Three formats, all JSONL with one row per call:

* ``mooncake``: the plain Mooncake trace as AIPerf's ``mooncake_trace`` loader reads it (and Mooncake's own
  tools, for single-call tasks): ``input_length``, ``output_length``, ``hash_ids``. A single-call task is a
  row with its send time ``timestamp`` (ms). A multi-call task is a **session** (``session_id``: the task id,
  as a string): its first call carries ``timestamp`` (ms, the open-loop start), every later call ``delay``
  (ms, the wait before sending it once the previous turn has been answered: its ``gap_s``), so a closed-loop
  client waits for each answer, as the traced agent did. Times are whole milliseconds (AIPerf reads integers).
  A session is a list of turns, so only chains fit (call ``k`` waits for call ``k - 1`` alone); a task with
  fan-out, joins or several roots is refused with a pointer to the agentic format. ``open_loop=True`` (CLI
  ``--open-loop``) writes the older form instead: every call a session-less row whose ``timestamp`` is its
  ``release_s``, else the earliest time it could be sent if the server answered instantly (its dependencies'
  times plus its gap), rows sorted by time; replaying that overdrives the server, since the answers take time.
* ``mooncake-agentic``: NVIDIA Dynamo's current agentic format, schema ``dynamo.agentic_mooncake`` version 2
  (read by Dynamo's replay and mocker load generator, written by its ``dynamo_data_gen``). The first line is a
  header, ``{schema, version: 2, block_size, hash_id_scope: "local", source: {format, digest}}``
  (``format`` is ``agentsim.trace.v<version>``, ``digest`` the SHA-256 of the source file); then one row per
  call: ``request_id`` (the call id), ``play_id`` (the task id: an independent workflow), ``session_id`` (a
  conversation within the play: the lead chain is ``<task>``, a spawned sub-agent chain ``<task>.<call>``),
  ``model``, ``input_length``, ``output_length``, ``hash_ids``, ``not_before_ms`` (the release time of a call
  without dependencies, 0 for the others) and ``dependencies``: one ``{request_id, trigger: "completion",
  delay_ms, relation}`` per call it waits for, ``delay_ms`` its ``gap_s`` (waiting the same delay after each
  dependency's completion is waiting it after the last one), ``relation`` ``sequence`` (the previous call of
  its session), ``spawn`` (the call a sub-agent chain starts from) or ``join`` (the sub-agent results a lead
  call waits for). ``[]`` for a call without dependencies. Rows are in trace order.
* ``mooncake-agentic-v1``: the older unversioned Dynamo rows, no header: ``request_id``, ``session_id`` (the
  task id), ``input_length``, ``output_length``, ``hash_ids``; ``timestamp`` (ms, open-loop start) on each
  call that waits for nothing; ``wait_for`` (request ids) and ``tool_wait_ms`` (its ``gap_s``) on the others.

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

import hashlib
import heapq
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agentsim.files import atomic_path
from agentsim.traces.io import check_output_parent, read_trace, read_trace_meta
from agentsim.traces.schema import TRACE_VERSION, OutputExistsError, TraceError, TraceTask

AGENTIC_SCHEMA = "dynamo.agentic_mooncake"
AGENTIC_VERSION = 2

EXPORT_FORMATS = ("mooncake-agentic", "mooncake-agentic-v1", "mooncake")
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


def agentic_v1_rows(tasks: Iterator[TraceTask], hasher: BlockHasher) -> Iterator[dict[str, Any]]:
    """``mooncake-agentic-v1`` rows (Dynamo's older unversioned dialect), in trace order."""
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


agentic_rows = agentic_v1_rows  # the name before version 2 became the default


def _sessions(task: TraceTask) -> tuple[list[str], list[list[str]]]:
    """The session of each call and the relation of each of its dependencies (see the module docstring).

    A join is recognised as the fitter does: a call whose prefix parent is not among its dependencies; it
    resumes its prefix parent's session and every dependency is a ``join``. A call that waits for a fork (the
    prefix parent of a later join) starts a spawned session, as does a second dependent of a call whose session
    already went on; otherwise a call continues the session of its first dependency (``sequence``) and any
    further dependency is a ``join``.
    """
    calls = task.template.calls
    forks = {c.prefix_parent for c in calls if c.prefix_parent >= 0 and c.deps and c.prefix_parent not in c.deps}
    root = str(task.task_id)
    session: list[str] = []
    relations: list[list[str]] = []
    continued: set[int] = set()
    for k, c in enumerate(calls):
        if not c.deps:
            session.append(root if k == 0 else f"{root}.{k}")
            relations.append([])
        elif c.prefix_parent >= 0 and c.prefix_parent not in c.deps:
            session.append(session[c.prefix_parent])
            relations.append(["join"] * len(c.deps))
        else:
            first = c.prefix_parent if c.prefix_parent in c.deps else c.deps[0]
            if first in forks or first in continued:
                session.append(f"{root}.{k}")
                rel = "spawn"
            else:
                session.append(session[first])
                continued.add(first)
                rel = "sequence"
            relations.append([rel if d == first else "join" for d in c.deps])
    return session, relations


def agentic_v2_rows(tasks: Iterator[TraceTask], hasher: BlockHasher, model: str | None) -> Iterator[dict[str, Any]]:
    """``mooncake-agentic`` (``dynamo.agentic_mooncake`` version 2) rows after the header, in trace order;
    ``model`` names the model of every row (default: the task's workload label)."""
    for task in tasks:
        ids = task.call_ids
        hashes = hasher.task(task)
        session, relations = _sessions(task)
        play = str(task.task_id)
        for k, c in enumerate(task.template.calls):
            r = task.release_s[k]
            delay = _ms(c.gap_s)
            yield {
                "request_id": str(ids[k]),
                "play_id": play,
                "session_id": session[k],
                "model": model or task.workload,
                "input_length": c.prompt_tokens,
                "output_length": c.output_tokens,
                "hash_ids": hashes[k],
                "not_before_ms": 0.0 if c.deps else float(_ms(task.start_s + c.gap_s if r is None else r)),
                "dependencies": [
                    {"request_id": str(ids[d]), "trigger": "completion", "delay_ms": float(delay), "relation": rel}
                    for d, rel in zip(c.deps, relations[k], strict=True)
                ],
            }


def _whole_ms(seconds: float) -> int:
    return round(seconds * 1000.0)


def mooncake_session_rows(tasks: Iterator[TraceTask], hasher: BlockHasher) -> Iterator[dict[str, Any]]:
    """Plain ``mooncake`` rows with sessions and delays, in trace order (see the module docstring); raises
    :class:`TraceError` for a task that is not a chain."""
    for task in tasks:
        calls = task.template.calls
        for k, c in enumerate(calls[1:], 1):
            if c.deps != (k - 1,):
                what = f"waits for calls {list(c.deps)}" if c.deps else "waits for nothing (a second root)"
                raise TraceError(
                    f"task {task.task_id}: call {k} {what}; a plain Mooncake session is a list of turns, each "
                    "waiting for the previous one, so fan-out and joins cannot be written. Export the agentic "
                    "format instead (`agentsim trace export mooncake-agentic ...`: Dynamo's dependencies), or "
                    "--open-loop for timestamps that assume instant answers"
                )
        hashes = hasher.task(task)
        r0 = task.release_s[0]
        for k, c in enumerate(calls):
            row: dict[str, Any] = {}
            if len(calls) > 1:
                row["session_id"] = str(task.task_id)
            if k == 0:
                row["timestamp"] = _whole_ms(task.start_s + c.gap_s if r0 is None else r0)
            else:
                row["delay"] = _whole_ms(c.gap_s)
            row["input_length"] = c.prompt_tokens
            row["output_length"] = c.output_tokens
            row["hash_ids"] = hashes[k]
            yield row


def mooncake_rows(tasks: Iterator[TraceTask], hasher: BlockHasher) -> Iterator[dict[str, Any]]:
    """Plain open-loop ``mooncake`` rows sorted by timestamp (``--open-loop``), streaming: a call is emitted
    once no later task can start before it (tasks come in start order and no call is sent before its task
    starts)."""
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


def agentic_header(src: str | os.PathLike[str], block_size_tokens: int) -> dict[str, Any]:
    """The header line of a version-2 agentic file: schema, version, block size, id scope, source digest."""
    digest = hashlib.sha256()
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "schema": AGENTIC_SCHEMA,
        "version": AGENTIC_VERSION,
        "block_size": block_size_tokens,
        "hash_id_scope": "local",
        "source": {"format": f"agentsim.trace.v{TRACE_VERSION}", "digest": f"sha256:{digest.hexdigest()}"},
    }


def export_trace(
    fmt: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    block_size_tokens: int = 512,
    overwrite: bool = False,
    open_loop: bool = False,
    model: str | None = None,
) -> ExportReport:
    """Export the canonical trace ``src`` as ``fmt`` (one of :data:`EXPORT_FORMATS`) to ``out``, atomically.

    ``open_loop`` (``mooncake`` only): timestamps on every row instead of sessions and delays. ``model``
    (``mooncake-agentic`` only): the model named on every row (default: each task's workload label). A trace
    the format cannot hold raises :class:`TraceError` and writes nothing."""
    if fmt not in EXPORT_FORMATS:
        raise TraceError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    if open_loop and fmt != "mooncake":
        raise TraceError(f"open-loop timestamps are an option of the mooncake format, not of {fmt}")
    meta = read_trace_meta(src)
    hasher = BlockHasher(block_size_tokens, meta.block_size_tokens)
    report = ExportReport(fmt, str(src), str(out), block_size_tokens=block_size_tokens)

    def counted() -> Iterator[TraceTask]:
        for t in read_trace(src):
            report.tasks += 1
            yield t

    rows: Iterator[dict[str, Any]]
    header: dict[str, Any] | None = None
    if fmt == "mooncake-agentic":
        header = agentic_header(src, block_size_tokens)
        rows = agentic_v2_rows(counted(), hasher, model)
    elif fmt == "mooncake-agentic-v1":
        rows = agentic_v1_rows(counted(), hasher)
    else:
        rows = mooncake_rows(counted(), hasher) if open_loop else mooncake_session_rows(counted(), hasher)
    check_output_parent(out)
    with (
        atomic_path(out, overwrite=overwrite, exists_error=OutputExistsError) as tmp,
        open(tmp, "w", encoding="utf-8") as f,
    ):
        buf: list[str] = [] if header is None else [json.dumps(header, separators=(", ", ": "))]
        for row in rows:
            buf.append(json.dumps(row, separators=(", ", ": ")))
            report.rows += 1
            if len(buf) >= 4096:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")
    return report
