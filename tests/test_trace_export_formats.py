"""Exports that replay correctly elsewhere: Dynamo's versioned agentic format (checked against its documented
schema, and read back into the same tasks) and plain Mooncake sessions with delays (AIPerf's closed loop)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from agentsim.traces.export import export_trace
from agentsim.traces.importers import BadInputError, import_trace
from agentsim.traces.io import read_trace, write_trace
from agentsim.traces.schema import TraceError, trace_task
from agentsim.workload.taskgraph import CallTemplate, TaskTemplate

REPO = Path(__file__).resolve().parents[1]

# dynamo.agentic_mooncake version 2 as documented (ai-dynamo/aisimulate replay loadgen types, consumed by
# dynamo lib/mocker loadgen): field -> (JSON types, required). Integers are JSON numbers without a fraction.
HEADER: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema": ((str,), True), "version": ((int,), True), "block_size": ((int,), True),
    "hash_id_scope": ((str,), True), "source": ((dict,), True),
}  # fmt: skip
ROW: dict[str, tuple[tuple[type, ...], bool]] = {
    "request_id": ((str,), True), "play_id": ((str,), True), "session_id": ((str,), True),
    "model": ((str,), True), "input_length": ((int,), False), "output_length": ((int,), False),
    "output_token_ids": ((list,), False), "hash_ids": ((list,), False), "not_before_ms": ((int, float), True),
    "priority": ((int,), False), "strict_priority": ((int,), False), "policy_class": ((str,), False),
    "dependencies": ((list,), False),
}  # fmt: skip
DEP: dict[str, tuple[tuple[type, ...], bool]] = {
    "request_id": ((str,), True), "trigger": ((str,), True), "delay_ms": ((int, float), True),
    "relation": ((str,), True),
}  # fmt: skip


def _check(obj: Any, schema: dict[str, tuple[tuple[type, ...], bool]], what: str) -> None:
    assert isinstance(obj, dict), what
    assert set(obj) <= set(schema), (what, set(obj) - set(schema))
    for name, (types, required) in schema.items():
        if name not in obj:
            assert not required, (what, name)
            continue
        v = obj[name]
        assert isinstance(v, types) and not isinstance(v, bool), (what, name, v)


def _validate_v2(lines: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header = json.loads(lines[0])
    _check(header, HEADER, "header")
    assert header["schema"] == "dynamo.agentic_mooncake" and header["version"] == 2
    assert header["hash_id_scope"] == "local" and header["block_size"] >= 1
    assert set(header["source"]) == {"format", "digest"} and all(isinstance(v, str) for v in header["source"].values())
    rows = [json.loads(line) for line in lines[1:]]
    ids: set[str] = set()
    for row in rows:
        _check(row, ROW, row.get("request_id", "row"))
        assert row["request_id"] not in ids
        assert row["input_length"] >= 1 and row["output_length"] >= 0 and row["not_before_ms"] >= 0
        assert all(isinstance(h, int) and h >= 0 for h in row["hash_ids"])
        assert len(row["hash_ids"]) == math.ceil(row["input_length"] / header["block_size"])
        for dep in row.get("dependencies", []):  # optional, omitted when empty
            _check(dep, DEP, "dependency")
            assert dep["request_id"] in ids  # an earlier row
            assert dep["trigger"] in ("completion", "dispatch") and dep["delay_ms"] >= 0
            assert dep["relation"] in ("sequence", "spawn", "join")
        ids.add(row["request_id"])
    return header, rows


@pytest.mark.parametrize("name", ["deep-research-100", "coding-agent-60", "mooncake-conversation-500"])
def test_agentic_v2_export_follows_the_documented_schema(name: str, tmp_path: Path) -> None:
    src = REPO / "traces" / f"{name}.parquet"
    out = tmp_path / "a.jsonl"
    r = export_trace("mooncake-agentic", src, out, block_size_tokens=64)
    header, rows = _validate_v2(out.read_text().splitlines())
    tasks = list(read_trace(src))
    assert header["block_size"] == 64 and r.rows == len(rows) == sum(len(t.call_ids) for t in tasks)
    by_id = {row["request_id"]: row for row in rows}
    for t in tasks:
        for k, c in enumerate(t.template.calls):
            row = by_id[str(t.call_ids[k])]
            assert row["play_id"] == str(t.task_id) and row["model"] == t.workload
            assert (row["input_length"], row["output_length"]) == (c.prompt_tokens, c.output_tokens)
            assert [d["request_id"] for d in row["dependencies"]] == [str(t.call_ids[d]) for d in c.deps]
            # Each dependency's delay is the gap: dispatch = max(end of deps) + gap, as agentsim replays it.
            assert all(d["delay_ms"] == pytest.approx(c.gap_s * 1000, abs=1e-3) for d in row["dependencies"])
            if not c.deps:
                release = t.release_s[k]
                assert release is not None and row["not_before_ms"] == pytest.approx(release * 1000, abs=1e-3)
            else:
                assert row["not_before_ms"] == 0
    relations = [d["relation"] for row in rows for d in row["dependencies"]]
    if name == "deep-research-100":
        # Every sub-agent chain is spawned from the lead once and joined once; sessions are the chains.
        assert relations.count("spawn") == relations.count("join") > 0
        for row in rows:
            for d in row["dependencies"]:
                same = by_id[d["request_id"]]["session_id"] == row["session_id"]
                assert same == (d["relation"] == "sequence"), (row["request_id"], d)
    else:
        assert set(relations) <= {"sequence"}


@pytest.mark.parametrize("name", ["deep-research-100", "coding-agent-60", "mooncake-conversation-500"])
def test_agentic_v2_export_round_trips(name: str, tmp_path: Path) -> None:
    src = REPO / "traces" / f"{name}.parquet"
    out = tmp_path / "a.jsonl"
    export_trace("mooncake-agentic", src, out, block_size_tokens=64)
    back = tmp_path / "back.parquet"
    report = import_trace("aiperf", out, back)  # the header's block size is used
    a, b = list(read_trace(src)), list(read_trace(back))
    assert report.calls == sum(len(t.call_ids) for t in a) and len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert y.start_s == pytest.approx(x.start_s, abs=1e-6)
        assert len(x.template.calls) == len(y.template.calls)
        for c, d in zip(x.template.calls, y.template.calls, strict=True):
            assert (c.prompt_tokens, c.output_tokens, c.deps) == (d.prompt_tokens, d.output_tokens, d.deps)
            assert d.gap_s == pytest.approx(c.gap_s, abs=1e-6)
        assert all(h is not None and len(h) == math.ceil(c.prompt_tokens / 64)
                   for h, c in zip(y.hash_ids, y.template.calls, strict=True))  # fmt: skip


# The self-authored v2 example of the research notes (block size 64), hash ids shortened to fit the lengths.
V2_EXAMPLE = [
    {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": 64, "hash_id_scope": "local",
     "source": {"format": "self-authored-example", "digest": "example-v1"}},
    {"request_id": "root", "play_id": "play-0", "session_id": "main", "model": "m", "input_length": 256,
     "output_length": 300, "hash_ids": [0, 1, 2, 3], "not_before_ms": 1500.0, "dependencies": []},
    {"request_id": "turn1", "play_id": "play-0", "session_id": "main", "model": "m", "input_length": 320,
     "output_length": 120, "hash_ids": [0, 1, 2, 3, 4], "not_before_ms": 0.0,
     "dependencies": [{"request_id": "root", "trigger": "completion", "delay_ms": 850.0, "relation": "sequence"}]},
    {"request_id": "sub0", "play_id": "play-0", "session_id": "sub-a", "model": "m", "input_length": 64,
     "output_length": 200, "hash_ids": [100], "not_before_ms": 0.0,
     "dependencies": [{"request_id": "root", "trigger": "completion", "delay_ms": 10.0, "relation": "spawn"}]},
    {"request_id": "join", "play_id": "play-0", "session_id": "main", "model": "m", "input_length": 384,
     "output_length": 80, "hash_ids": [0, 1, 2, 3, 4, 5], "not_before_ms": 0.0,
     "dependencies": [{"request_id": "turn1", "trigger": "completion", "delay_ms": 0.0, "relation": "sequence"},
                      {"request_id": "sub0", "trigger": "completion", "delay_ms": 0.0, "relation": "join"}]},
    {"request_id": "other", "play_id": "play-1", "session_id": "main", "model": "m", "input_length": 64,
     "output_length": 5, "hash_ids": [7], "not_before_ms": 2000.0},
]  # fmt: skip


def test_import_reads_dynamo_v2(tmp_path: Path) -> None:
    src = tmp_path / "v2.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in V2_EXAMPLE) + "\n")
    _validate_v2(src.read_text().splitlines())
    out = tmp_path / "v2.parquet"
    import_trace("aiperf", src, out)
    tasks = list(read_trace(out))
    # Two plays -> two tasks, though both have a session called "main"; play-1's row has no dependencies
    # (omitted list): a root, not the next turn of a "main" session.
    assert [len(t.template.calls) for t in tasks] == [4, 1]
    assert [t.start_s for t in tasks] == [1.5, 2.0]
    calls = tasks[0].template.calls
    assert [c.deps for c in calls] == [(), (0,), (0,), (1, 2)]
    assert [c.gap_s for c in calls] == [0.0, 0.85, 0.01, 0.0]
    assert calls[1].prefix_parent == 0 and calls[3].prefix_parent == 1  # hash ids extend the earlier prompt
    bad = tmp_path / "v3.jsonl"
    bad.write_text(json.dumps({**V2_EXAMPLE[0], "version": 3}) + "\n" + json.dumps(V2_EXAMPLE[1]) + "\n")
    with pytest.raises(BadInputError, match="version 3 is not supported"):
        import_trace("aiperf", bad, tmp_path / "bad.parquet")


# --------------------------------------------------------------------------- plain Mooncake sessions


def _chain_trace(tmp_path: Path) -> Path:
    calls = (CallTemplate(100, 10), CallTemplate(200, 10, (0,), 2.5, 0), CallTemplate(260, 7, (1,), 0.75, 1))
    tasks = [trace_task(TaskTemplate("w", calls), 0, 1.0, 0), trace_task(TaskTemplate("w", calls), 1, 2.0, 3),
             trace_task(TaskTemplate("w", (CallTemplate(50, 5),)), 2, 2.5, 6)]  # fmt: skip
    src = tmp_path / "t.parquet"
    write_trace(src, tasks)
    return src


def test_plain_export_writes_sessions_a_closed_loop_client_replays(tmp_path: Path) -> None:
    src = _chain_trace(tmp_path)
    out = tmp_path / "m.jsonl"
    export_trace("mooncake", src, out, block_size_tokens=64)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # AIPerf's MooncakeTrace fields only: session_id a string, timestamp and delay integers (ms).
    for r in rows:
        assert set(r) <= {"session_id", "timestamp", "delay", "input_length", "output_length", "hash_ids"}
        assert ("timestamp" in r) != ("delay" in r)
        assert all(isinstance(r[k], int) for k in ("timestamp", "delay") if k in r)
        assert isinstance(r.get("session_id", ""), str)
    assert [r.get("session_id") for r in rows] == ["0", "0", "0", "1", "1", "1", None]
    assert [r.get("timestamp") for r in rows] == [1000, None, None, 2000, None, None, 2500]
    assert [r.get("delay") for r in rows] == [None, 2500, 750, None, 2500, 750, None]
    # Replay as a closed-loop client does (first turn at its timestamp, each next turn `delay` after the
    # previous answer) against a server answering in 0.4 s: the send times agentsim's replay gives the trace.
    service = 0.4
    sends: dict[str | None, list[float]] = {}
    for r in rows:
        s = sends.setdefault(r.get("session_id"), [])
        s.append(r["timestamp"] / 1000 if "timestamp" in r else s[-1] + service + r["delay"] / 1000)
    for t in read_trace(src):
        expect: list[float] = []
        for c in t.template.calls:
            expect.append(t.start_s if not c.deps else max(expect[d] + service for d in c.deps) + c.gap_s)
        key = str(t.task_id) if len(t.call_ids) > 1 else None
        assert sends[key][-len(expect):] == pytest.approx(expect)


def test_plain_export_refuses_what_sessions_cannot_hold(tmp_path: Path) -> None:
    src = REPO / "traces" / "deep-research-100.parquet"
    out = tmp_path / "m.jsonl"
    with pytest.raises(TraceError, match="mooncake-agentic"):
        export_trace("mooncake", src, out)
    assert not out.exists()
    export_trace("mooncake", src, out, open_loop=True)  # the older timestamps-only form still writes it
    assert sum(1 for _ in out.open()) == pq.read_metadata(src).num_rows  # a line per call of the trace
    with pytest.raises(TraceError, match="open-loop"):
        export_trace("mooncake-agentic", src, tmp_path / "x.jsonl", open_loop=True)
