"""Importers: the real public traces give the published figures; every format maps as documented; a bad line
is named by file and line, or skipped and counted with ``skip_bad``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from agentsim.traces.importers import BadInputError, import_trace
from agentsim.traces.io import read_trace, read_trace_meta
from agentsim.traces.schema import OutputExistsError, TraceError
from shared_data import TRACES

DATA = TRACES
MOONCAKE_CONV = DATA / "mooncake" / "conversation_trace.jsonl"
AZURE_CONV = DATA / "azure" / "AzureLLMInferenceTrace_conv.csv"
needs_data = pytest.mark.skipif(not MOONCAKE_CONV.exists(), reason="public traces not available")


@pytest.fixture(scope="module")
def kimi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kimi") / "kimi.parquet"
    import_trace("mooncake", MOONCAKE_CONV, out)
    return out


@needs_data
def test_mooncake_conversation_trace(kimi: Path) -> None:
    t = pq.read_table(kimi)
    assert t.num_rows == 12_031
    assert t.column("prompt_tokens").to_numpy().mean() == pytest.approx(12_035, abs=0.5)
    assert t.column("output_tokens").to_numpy().mean() == pytest.approx(343, abs=0.5)
    # Each line is a single-call task released at timestamp / 1000, with its hash ids unchanged.
    first = json.loads(MOONCAKE_CONV.open().readline())
    task = next(read_trace(kimi))
    assert task.hash_ids[0] == tuple(first["hash_ids"])
    assert task.template.calls[0].hash_ids == tuple(first["hash_ids"])
    assert task.template.block_tokens == 512
    last = json.loads(MOONCAKE_CONV.read_text().splitlines()[-1])
    assert t.column("release_s")[-1].as_py() == last["timestamp"] / 1000
    assert read_trace_meta(kimi).source == "mooncake:conversation_trace.jsonl"


@needs_data
def test_azure_conversation_trace(tmp_path: Path) -> None:
    out = tmp_path / "azure.parquet"
    r = import_trace("azure", AZURE_CONV, out)
    assert (r.calls, r.tasks, r.skipped_bad) == (19_366, 19_366, 0)
    t = pq.read_table(out)
    assert t.column("prompt_tokens").to_numpy().mean() == pytest.approx(1_155, abs=0.5)
    assert t.column("output_tokens").to_numpy().mean() == pytest.approx(211, abs=0.5)
    rel = t.column("release_s").to_numpy()
    assert rel[0] == 0.0
    # 18:15:46.6805900 -> 18:15:50.9951690: exact to the microsecond (no float64 epoch rounding).
    assert rel[1] == pytest.approx(4.314579, abs=1e-6)
    assert (len(rel) - 1) / rel[-1] == pytest.approx(5.5, abs=0.05)


def test_azure_2024_zoned_timestamps_and_numbers(tmp_path: Path) -> None:
    src = tmp_path / "week.csv"
    src.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,100,10\n"
        "2024-05-10 00:00:01.509930+00:00,200,20\n"
        "2024-05-10 02:00:00.009930+02:00,300,30\n"
    )
    r = import_trace("azure", src, tmp_path / "w.parquet")
    # The last row is the first instant in another zone: converted to UTC, then sorted (stably) to the front.
    w = pq.read_table(tmp_path / "w.parquet")
    assert r.sorted_in_memory
    assert w.column("release_s").to_pylist() == [0.0, 0.0, 1.5]
    assert w.column("prompt_tokens").to_pylist() == [100, 300, 200]
    assert w.column("call_id").to_pylist() == [0, 1, 2] and w.column("task_id").to_pylist() == [0, 1, 2]
    nums = tmp_path / "nums.csv"
    nums.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n10.5,1,1\n12,2,2\n")
    import_trace("azure", nums, tmp_path / "n.parquet")
    assert pq.read_table(tmp_path / "n.parquet").column("release_s").to_pylist() == [0.0, 1.5]


def test_mooncake_bad_lines_named_or_skipped(tmp_path: Path) -> None:
    src = tmp_path / "m.jsonl"
    good = {"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}
    lines = [
        json.dumps(good),
        "",
        json.dumps({**good, "timestamp": 10}),
        "{not json",
        json.dumps({**good, "hash_ids": [1]}),
        json.dumps({**good, "output_length": 0}),
        json.dumps({"timestamp": 20, "input_length": 10}),
        json.dumps({**good, "timestamp": 30}),
    ]
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError) as e:
        import_trace("mooncake", src, tmp_path / "o.parquet")
    assert (e.value.path, e.value.line) == (str(src), 4)
    assert str(e.value).startswith(f"{src}:4: ")
    assert not (tmp_path / "o.parquet").exists()
    r = import_trace("mooncake", src, tmp_path / "o.parquet", skip_bad=True)
    assert (r.calls, r.skipped_bad, r.bad_lines) == (3, 4, [4, 5, 6, 7])
    assert pq.read_table(tmp_path / "o.parquet").column("release_s").to_pylist() == [0.0, 0.01, 0.03]


def test_mooncake_semantic_errors_in_a_clean_block(tmp_path: Path) -> None:
    """The fast (pyarrow) path checks values too, with the right line numbers around blank lines."""
    src = tmp_path / "m.jsonl"
    src.write_text(
        '{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n\n\n'
        '{"timestamp": 1, "input_length": 1000, "output_length": 1, "hash_ids": [1]}\n'
    )
    with pytest.raises(BadInputError, match=r"m\.jsonl:4: 1 hash_ids, expected 2"):
        import_trace("mooncake", src, tmp_path / "o.parquet")


def test_streaming_batches_do_not_change_the_output(tmp_path: Path) -> None:
    src = tmp_path / "m.jsonl.gz"
    rng = np.random.default_rng(0)
    with gzip.open(src, "wt") as f:
        for i in range(1000):
            n = int(rng.integers(1, 3000))
            row = {"timestamp": i * 7, "input_length": n, "output_length": 3, "hash_ids": list(range(-(-n // 512)))}
            f.write(json.dumps(row) + "\n")
    import_trace("mooncake", src, tmp_path / "a.parquet")
    import_trace("mooncake", src, tmp_path / "b.parquet", batch_rows=7)
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b) and a.num_rows == 1000


def test_unsorted_input_is_sorted_and_renumbered(tmp_path: Path) -> None:
    src = tmp_path / "s.jsonl"
    rows = [
        {"session_id": "late", "start_s": 9.0, "requests": [{"input_tokens": 10, "output_tokens": 1, "tool_s": 1},
                                                           {"input_tokens": 20, "output_tokens": 1}]},
        {"session_id": "early", "start_s": 1.0, "requests": [{"input_tokens": 5, "output_tokens": 1}]},
    ]  # fmt: skip
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    r = import_trace("agent-sessions", src, tmp_path / "o.parquet")
    assert r.sorted_in_memory
    tasks = list(read_trace(tmp_path / "o.parquet"))
    assert [t.start_s for t in tasks] == [1.0, 9.0]
    assert [t.call_ids for t in tasks] == [(0,), (1, 2)]
    assert tasks[1].template.calls[1].deps == (0,) and tasks[1].template.calls[1].prefix_parent == 0
    assert pq.read_table(tmp_path / "o.parquet").column("deps").to_pylist() == [[], [], [1]]


BURST = (
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "5,ChatGPT,472,18,490,Conversation log\n"
    "45,ChatGPT,1087,230,1317,Conversation log\n"
    "50,GPT-4,417,0,417,API log\n"
    "118,GPT-4,417,276,693,Conversation log\n"
)


def test_burstgpt_rows(tmp_path: Path) -> None:
    src = tmp_path / "b.csv"
    src.write_text(BURST)
    r = import_trace("burstgpt", src, tmp_path / "o.parquet")
    assert (r.calls, r.dropped_failed) == (3, 1)
    t = pq.read_table(tmp_path / "o.parquet")
    assert t.column("workload").to_pylist() == ["chatgpt-conversation-log"] * 2 + ["gpt-4-conversation-log"]
    assert t.column("release_s").to_pylist() == [5.0, 45.0, 118.0]


def test_burstgpt_sessions_become_chained_tasks(tmp_path: Path) -> None:
    src = tmp_path / "b.csv"
    src.write_text(
        "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,a,2.0,ChatGPT,472,18,490,Conversation log\n"
        "6,b,1.0,ChatGPT,100,20,120,Conversation log\n"
        "45,a,3.0,ChatGPT,1087,230,1317,Conversation log\n"
        "\n"
        "50,,1,GPT-4,417,7,424,API log\n"
        "118,b,1.5,GPT-4,50,276,326,Conversation log\n"
        "120,a,x,ChatGPT,10,5,15,Conversation log\n"
    )
    with pytest.raises(BadInputError, match=r"b\.csv:8: Elapsed time"):
        import_trace("burstgpt", src, tmp_path / "o.parquet")
    r = import_trace("burstgpt", src, tmp_path / "o.parquet", skip_bad=True)
    assert (r.tasks, r.calls, r.bad_lines) == (3, 5, [8])
    a, b, api = read_trace(tmp_path / "o.parquet")
    assert (a.start_s, b.start_s, api.start_s) == (5.0, 6.0, 50.0)
    # gap = next timestamp - (previous timestamp + its elapsed time); the prefix link only when context grew.
    assert a.template.calls[1].gap_s == 38.0 and a.template.calls[1].prefix_parent == 0
    assert b.template.calls[1].gap_s == 111.0 and b.template.calls[1].prefix_parent == -1
    assert a.release_s == (5.0, 45.0) and len(api.call_ids) == 1
    with pytest.raises(BadInputError, match="missing column"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        import_trace("burstgpt", tmp_path / "x.csv", tmp_path / "x.parquet")


def test_csv_wrong_field_count_is_named(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1,1\n  \n12,2\n2023-11-16 18:15:47,x,1\n"
    )
    with pytest.raises(BadInputError, match=r"a\.csv:4: expected 3 columns, found 2"):
        import_trace("azure", src, tmp_path / "o.parquet")
    r = import_trace("azure", src, tmp_path / "o.parquet", skip_bad=True)
    assert (r.calls, r.bad_lines) == (1, [4, 5])


def test_agent_sessions(tmp_path: Path) -> None:
    src = tmp_path / "s.jsonl"
    src.write_text(
        json.dumps({"session_id": "s1", "start_s": 1.0, "workload": "coding", "shared_prefix_tokens": 100,
                    "requests": [{"input_tokens": 1000, "output_tokens": 50, "tool_s": 2.0},
                                 {"input_tokens": 1200, "output_tokens": 60, "tool_ms": 500},
                                 {"input_tokens": 300, "output_tokens": 10}]}) + "\n"
        + json.dumps({"session_id": "s2", "timestamp": 2500, "requests": [{"prompt_tokens": 10, "output_tokens": 5}]})
        + "\n" + json.dumps({"start_s": 3, "requests": []}) + "\n"
    )  # fmt: skip
    with pytest.raises(BadInputError, match=r"s\.jsonl:3: requests must be a non-empty list"):
        import_trace("agent-sessions", src, tmp_path / "o.parquet")
    import_trace("agent-sessions", src, tmp_path / "o.parquet", skip_bad=True)
    s1, s2 = read_trace(tmp_path / "o.parquet")
    c = s1.template.calls
    assert s1.workload == "coding" and s2.workload == "agent-sessions" and s2.start_s == 2.5
    assert [x.gap_s for x in c] == [0.0, 2.0, 0.5] and [x.gap_is_tool for x in c] == [False, True, True]
    assert [x.prefix_parent for x in c] == [-1, 0, -1] and s1.template.shared_prefix_tokens == 100
    assert s1.release_s == (1.0, None, None)


def test_aiperf_dynamo_agentic_rows(tmp_path: Path) -> None:
    """Dynamo's agentic Mooncake: a sub-agent trajectory joins its parent's task through `wait_for`."""
    rows = [
        {"block_size": 512},
        {"request_id": "r1", "session_id": "root", "input_length": 1024, "output_length": 10, "hash_ids": [1, 2],
         "timestamp": 1000},
        {"request_id": "c1", "session_id": "child", "input_length": 600, "output_length": 5, "hash_ids": [1, 3],
         "timestamp": 1200, "wait_for": ["r1"], "delay": 50},
        {"request_id": "r2", "session_id": "root", "input_length": 1500, "output_length": 10, "hash_ids": [1, 2, 4],
         "timestamp": 1500, "wait_for": ["r1", "c1"], "tool_wait_ms": 100, "delay": 20},
        {"session_id": "conv", "input_length": 100, "output_length": 10, "timestamp": 200, "turn_index": 0},
        {"session_id": "conv", "input_length": 180, "output_length": 10, "delay": 3000, "turn_index": 1},
        {"session_id": "x", "input_length": 100, "output_length": 10, "timestamp": 100, "wait_for": ["nope"]},
    ]  # fmt: skip
    src = tmp_path / "a.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(BadInputError, match=r"a\.jsonl:7: wait_for names request nope"):
        import_trace("aiperf", src, tmp_path / "o.parquet")
    r = import_trace("aiperf", src, tmp_path / "o.parquet", skip_bad=True)
    assert (r.tasks, r.calls, r.skipped_bad) == (2, 5, 1)
    conv, agent = read_trace(tmp_path / "o.parquet")
    # AIPerf multi-turn: a turn without wait_for follows the previous turn of its session after `delay`.
    assert conv.start_s == 0.2 and conv.template.calls[1].deps == (0,) and conv.template.calls[1].gap_s == 3.0
    assert conv.release_s == (0.2, None) and conv.template.calls[1].prefix_parent == 0
    c = agent.template.calls
    assert [x.deps for x in c] == [(), (0,), (0, 1)]
    assert [x.gap_s for x in c] == [0.0, 0.05, 0.12] and [x.gap_is_tool for x in c] == [False, False, True]
    # Prefix: the child shares one block with r1 but is shorter, so no link; r2 extends r1 (same session).
    assert [x.prefix_parent for x in c] == [-1, -1, 0]
    assert agent.release_s == (1.0, 1.2, 1.5) and agent.hash_ids[2] == (1, 2, 4)


def test_aiperf_turn_order_and_block_header(tmp_path: Path) -> None:
    src = tmp_path / "a.jsonl"
    src.write_text(
        '{"session_id": "s", "input_length": 10, "output_length": 1, "turn_index": 1}\n'
        '{"session_id": "s", "input_length": 20, "output_length": 1, "turn_index": 0}\n'
    )
    with pytest.raises(BadInputError, match=r"a\.jsonl:2: turn_index 0 of session s after turn 1"):
        import_trace("aiperf", src, tmp_path / "o.parquet")
    src.write_text('{"block_size": 16}\n{"input_length": 10, "output_length": 1}\n')
    with pytest.raises(BadInputError, match="differs from the import's block size"):
        import_trace("aiperf", src, tmp_path / "o.parquet", block_size_tokens=512)
    import_trace("aiperf", src, tmp_path / "o.parquet")  # without one given, the header's block size is used
    assert read_trace_meta(tmp_path / "o.parquet").block_size_tokens == 16


def test_unknown_format_missing_file_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="unknown trace format"):
        import_trace("nope", tmp_path, tmp_path / "o.parquet")
    with pytest.raises(TraceError, match="no such file"):
        import_trace("mooncake", tmp_path / "missing.jsonl", tmp_path / "o.parquet")
    src = tmp_path / "m.jsonl"
    src.write_text('{"timestamp": 0, "input_length": 1, "output_length": 1}\n')
    import_trace("mooncake", src, tmp_path / "o.parquet")
    with pytest.raises(OutputExistsError):
        import_trace("mooncake", src, tmp_path / "o.parquet")
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    with pytest.raises(TraceError, match="no importable rows"):
        import_trace("mooncake", empty, tmp_path / "e.parquet")
    assert not (tmp_path / "e.parquet").exists()
