"""AIPerf: the multi-turn and agentic Mooncake dialect of NVIDIA AIPerf and Dynamo (JSONL).

Format: one request per line, ``input_length`` (or ``input_tokens``), ``output_length``
(``output_tokens``), optional ``hash_ids``, ``session_id`` (or ``conversation_id``, ``trajectory_id``),
``request_id`` (default: the line number), ``timestamp`` (ms; or ``created_time``), ``delay`` (ms; or
``delay_ms``) and ``tool_wait_ms`` (waits after the dependencies), ``wait_for`` (request ids; or one
``parent_id``/``parent_request_id``), ``prefix_reset`` and ``turn_index`` (checked to increase within a
session). A header line with ``block_size`` and no ``input_length`` gives the block size (the import's, unless
one is passed: then they must agree).

**Dynamo's versioned format** (``dynamo.agentic_mooncake`` version 2: a header ``{schema, version, block_size,
hash_id_scope, source}`` on the first line) is read too: ``play_id`` groups rows into one task like ``wait_for``
links do, and session ids are names within a play; ``dependencies`` (``[{request_id, trigger, delay_ms,
relation}]``, possibly empty or absent) replace ``wait_for``, so a row without any is a root, not the next turn
of its session; the gap is the largest ``delay_ms`` (exact when they are equal, as agentsim writes them);
``not_before_ms`` is the send time of a root (ignored on dependents, which agentsim releases when their
dependencies allow). A ``dispatch`` trigger (start a fixed delay after the dependency was *sent*) has no
canonical counterpart and is read as a completion trigger. Another version or id scope is refused.

Mapping: a request without ``wait_for``/``parent_id`` waits for the previous request of its session (AIPerf's
multi-turn rule). A task is a connected group: a session plus every session linked to it by ``wait_for``
(Dynamo's sub-agent trajectories), in file order. ``gap_s = (delay + tool_wait_ms) / 1000``, or without
either, the time since the latest dependency's timestamp. The prefix parent is a dependency whose prompt this
one extends (with hash ids: whose full blocks it starts with), preferring the same session; ``prefix_reset``
cuts it. Groups are only known at the end of the input, so rows go through the
:class:`~agentsim.traces.importers.common.Spool` (Python memory: one entry per session and per request id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentsim.traces.importers.common import (
    BadRows,
    ImportReport,
    Sink,
    Spool,
    float_field,
    hash_list,
    int_field,
    line_blocks,
)
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate


def _first(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        if n in obj and obj[n] is not None:
            return obj[n]
    return None


def _id(v: Any, what: str) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ValueError(f"{what} must be a string or an integer, got {v!r}")
    return str(v)


AGENTIC_SCHEMA = "dynamo.agentic_mooncake"
AGENTIC_VERSIONS = (2,)


def header_block_size(src: Path) -> int | None:
    """The ``block_size`` of a header on the first line of ``src`` (``None`` without one)."""
    for _, lines in line_blocks(src, max_lines=1):
        try:
            obj = json.loads(lines[0])
        except ValueError:
            return None
        if isinstance(obj, dict) and "input_length" not in obj and "input_tokens" not in obj:
            b = obj.get("block_size")
            return b if isinstance(b, int) and not isinstance(b, bool) and b >= 1 else None
        return None
    return None


def _check_header(obj: dict[str, Any]) -> bool:
    """Validate a header line; ``True`` for Dynamo's versioned agentic format."""
    if "schema" not in obj:
        return False
    if obj["schema"] != AGENTIC_SCHEMA:
        raise ValueError(f"header schema {obj['schema']!r} is not {AGENTIC_SCHEMA!r}")
    if obj.get("version") not in AGENTIC_VERSIONS:
        raise ValueError(f"{AGENTIC_SCHEMA} version {obj.get('version')!r} is not supported (only 2)")
    if obj.get("hash_id_scope", "local") != "local":
        raise ValueError(f"hash_id_scope {obj['hash_id_scope']!r} is not supported (only \"local\")")
    return True


def _dependencies(obj: dict[str, Any]) -> tuple[list[str], float | None]:
    """``(request ids, largest delay_ms)`` of a version-2 row's ``dependencies``."""
    deps = obj.get("dependencies") or []
    if not isinstance(deps, list):
        raise ValueError("dependencies must be a list")
    ids: list[str] = []
    delay: float | None = None
    for d in deps:
        if not isinstance(d, dict) or "request_id" not in d:
            raise ValueError("each dependency must be an object with a request_id")
        if d.get("trigger", "completion") not in ("completion", "dispatch"):
            raise ValueError(f"dependency trigger must be completion or dispatch, got {d.get('trigger')!r}")
        ids.append(_id(d["request_id"], "dependency request_id"))
        ms = float_field(d, ("delay_ms",))
        delay = max(delay or 0.0, ms or 0.0)
    return ids, delay


def import_aiperf(src: Path, sink: Sink, bad: BadRows, report: ImportReport, workload: str, tmp: Path) -> None:
    """Read an AIPerf/Dynamo JSONL file into ``sink``: rows spooled in ``tmp``, one task per connected group."""
    spool = Spool(tmp)
    sessions: dict[str, int] = {}
    last_turn: dict[str, int] = {}
    request_group: dict[str, int] = {}
    plays: dict[str, int] = {}
    versioned = False
    block = sink.block_size
    seq = 0
    seen_rows = False
    try:
        for nums, lines in line_blocks(src):
            report.lines = nums[-1]
            for num, line in zip(nums, lines, strict=True):
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("expected a JSON object")
                    if not seen_rows and ("block_size" in obj or "schema" in obj) and "input_length" not in obj:
                        versioned = _check_header(obj)
                        b = obj.get("block_size")
                        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                            raise ValueError(f"header block_size must be an integer >= 1, got {b!r}")
                        if b != block:
                            raise ValueError(
                                f"header block_size {b} differs from the import's block size {block} (pass it)"
                            )
                        continue
                    prompt = int_field(obj, ("input_length", "input_tokens"), "input_length", 1)
                    output = int_field(obj, ("output_length", "output_tokens"), "output_length", 1)
                    hashes = hash_list(obj, prompt, block)
                    rid_raw = _first(obj, ("request_id", "id"))
                    rid = f"line:{num}" if rid_raw is None else _id(rid_raw, "request_id")
                    sid_raw = _first(obj, ("session_id", "conversation_id", "trajectory_id"))
                    sid = None if sid_raw is None else _id(sid_raw, "session_id")
                    ts = float_field(obj, ("timestamp", "created_time"))
                    delay = float_field(obj, ("delay", "delay_ms"))
                    tool = float_field(obj, ("tool_wait_ms",))
                    wait = _first(obj, ("wait_for",))
                    play_raw = _first(obj, ("play_id",))
                    play = None if play_raw is None else _id(play_raw, "play_id")
                    if play is not None and sid is not None:
                        sid = f"{play}\x1f{sid}"  # a session is named within its play
                    if versioned or "dependencies" in obj:
                        wait, delay = _dependencies(obj)
                        if not wait:
                            ts = float_field(obj, ("not_before_ms",))
                    elif wait is None:
                        parent = _first(obj, ("parent_id", "parent_request_id"))
                        wait = None if parent is None else [parent]
                    if wait is not None:
                        if not isinstance(wait, list):
                            raise ValueError("wait_for must be a list of request ids")
                        wait = [_id(w, "wait_for entry") for w in wait]
                    reset = bool(obj.get("prefix_reset", False))
                    turn = obj.get("turn_index", obj.get("turn"))
                    if turn is not None and sid is not None:
                        if isinstance(turn, bool) or not isinstance(turn, int):
                            raise ValueError(f"turn_index must be an integer, got {turn!r}")
                        if sid in last_turn and turn <= last_turn[sid]:
                            raise ValueError(
                                f"turn_index {turn} of session {sid} after turn {last_turn[sid]}: a session's "
                                "rows must be in turn order"
                            )
                    if rid in request_group:
                        raise ValueError(f"duplicate request_id {rid}")
                    for w in wait or ():
                        if w not in request_group:
                            raise ValueError(f"wait_for names request {w}, which is not on an earlier line")
                except ValueError as e:
                    bad(num, str(e))
                    continue
                seen_rows = True
                if sid is None:
                    g = spool.group()
                else:
                    g = sessions.get(sid, -1)
                    if g < 0:
                        g = sessions[sid] = spool.group()
                    if turn is not None:
                        last_turn[sid] = turn
                for w in wait or ():
                    spool.union(g, request_group[w])
                if play is not None:
                    if play in plays:
                        spool.union(g, plays[play])
                    else:
                        plays[play] = g
                request_group[rid] = g
                wait_ms = None if delay is None and tool is None else (delay or 0.0) + (tool or 0.0)
                payload = [
                    num,
                    rid,
                    sid,
                    prompt,
                    output,
                    None if hashes is None else list(hashes),
                    ts,
                    wait_ms,
                    wait,
                    reset,
                    tool is not None and tool > 0,
                ]
                spool.add(g, None if ts is None else ts, seq, payload)
                seq += 1
        for rows in spool.tasks(by_time=False):
            _aiperf_task(rows, sink, bad, workload, block)
    finally:
        spool.close()


def _aiperf_task(rows: list[Any], sink: Sink, bad: BadRows, workload: str, block: int) -> None:
    """One connected group of aiperf rows (file order) -> one task; rows with broken links are skipped."""
    calls: list[CallTemplate] = []
    releases: list[float | None] = []
    hashes: list[tuple[int, ...] | None] = []
    index: dict[str, int] = {}
    session_of: list[str | None] = []
    last_in_session: dict[str | None, int] = {}
    stamps: list[float | None] = []
    start = 0.0
    for num, rid, sid, prompt, output, h, ts, wait_ms, wait, reset, is_tool in rows:
        if wait is None:
            deps = [last_in_session[sid]] if sid is not None and sid in last_in_session else []
        else:
            missing = [w for w in wait if w not in index]
            if missing:
                bad(num, f"wait_for names request {missing[0]}, which was skipped")
                continue
            deps = sorted({index[w] for w in wait})
        if not calls and deps:
            deps = []
        k = len(calls)
        if wait_ms is not None:
            gap = wait_ms / 1000.0
        elif ts is not None and deps and all(stamps[d] is not None for d in deps):
            gap = max(0.0, (ts - max(s for s in (stamps[d] for d in deps) if s is not None)) / 1000.0)
        else:
            gap = 0.0
        parent = ROOT
        if deps and not reset:
            same = [d for d in deps if session_of[d] == sid]
            cands = sorted(same, reverse=True) + [d for d in deps if d not in same]
            if h is not None:
                cands.sort(key=lambda d: -_common(hashes[d], h))
            for d in cands:
                pd = calls[d].prompt_tokens
                if pd > prompt:
                    continue
                hd = hashes[d]
                if h is not None and hd is not None and tuple(h[: pd // block]) != hd[: pd // block]:
                    continue
                parent = d
                break
        release = None if ts is None else ts / 1000.0
        if k == 0:
            gap = 0.0
            start = release = 0.0 if ts is None else ts / 1000.0
        elif not deps:
            # Another root of the task: its gap is its offset from the task start.
            gap = max(0.0, release - start) if release is not None else gap
            release = start + gap
        calls.append(CallTemplate(prompt, output, tuple(deps), gap, parent, gap_is_tool=bool(is_tool and deps)))
        releases.append(release)
        hashes.append(None if h is None else tuple(h))
        index[rid] = k
        session_of.append(sid)
        last_in_session[sid] = k
        stamps.append(ts)
    if not calls:
        return
    sink.add_task(TaskTemplate(workload, tuple(calls)), releases, hashes)


def _common(a: tuple[int, ...] | None, b: list[int]) -> int:
    if a is None:
        return 0
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
