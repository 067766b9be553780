"""``agentsim trace import|stats|generate|fit|export``: outputs, refusals and exit codes.

Bad input exits 2 with the reason (file and line for a bad source line) and no traceback; outputs are never
replaced without ``--overwrite``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from agentsim.cli import app
from agentsim.traces.io import read_trace, read_trace_meta

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, ["trace", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout, r.stderr


def _mooncake(tmp_path: Path, lines: list[str]) -> Path:
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join(lines) + "\n")
    return src


GOOD = '{"timestamp": %d, "input_length": 700, "output_length": 5, "hash_ids": [1, %d]}'


def test_import_stats_fit_generate_export(tmp_path: Path) -> None:
    src = _mooncake(tmp_path, [GOOD % (i * 250, i % 3 + 2) for i in range(40)])
    out = tmp_path / "m.parquet"
    code, stdout, _ = _run("import", "mooncake", str(src), "--out", str(out))
    assert code == 0 and "imported 40 calls in 40 tasks" in stdout
    assert pq.read_table(out).num_rows == 40

    code, stdout, _ = _run("stats", str(out), "--json")
    stats = json.loads(stdout)
    assert code == 0 and stats["calls"] == 40 and stats["task_rate_per_s"] == 4.0
    assert stats["gap_s_mean"] is None  # NaN -> null
    # 40 prompts of 700 tokens: the first block (512 tokens) is new once, then seen; second blocks repeat 3 ids.
    assert stats["prefix_reuse"] == (39 * 512 + 37 * 188) / (40 * 700)
    code, stdout, _ = _run("stats", str(out))
    assert code == 0 and "prefix_reuse" in stdout and "%" in stdout

    prof = tmp_path / "p.yaml"
    code, stdout, _ = _run("fit", str(out), "--out", str(prof))
    # Every prompt starts with block 1 (a shared 512-token system prompt), no prompt extends another: an agent
    # profile of one-call sessions with that system prompt, and the reason printed and written.
    assert code == 0 and "fitted an agent profile" in stdout and "why agent" in stdout
    assert "# profile kind: agent" in prof.read_text()
    doc = yaml.safe_load(prof.read_text())
    assert doc["profile"]["system_prompt_tokens"] == {"kind": "constant", "value": 512.0}
    assert set(doc) == {"profile", "arrivals"} and doc["arrivals"]["kind"] == "gamma"
    assert prof.read_text().startswith("# agentsim profile fitted")

    gen = tmp_path / "g.parquet"
    code, stdout, _ = _run("generate", str(prof), "--tasks", "25", "--seed", "3", "--out", str(gen))
    # The 40 requests repeat 3 prompts: 3 sessions of ~13 turns, so 25 sessions make ~330 calls.
    calls = pq.read_table(gen).num_rows
    assert code == 0 and f"generated 25 tasks ({calls} calls) of p" in stdout and calls > 25
    assert read_trace_meta(gen).source == f"generated:{prof}:seed=3"

    for fmt in ("mooncake", "mooncake-agentic"):
        jl = tmp_path / f"{fmt}.jsonl"
        code, stdout, _ = _run("export", fmt, str(gen), "--out", str(jl), "--block-size", "64")
        rows = [json.loads(x) for x in jl.read_text().splitlines()]
        if fmt == "mooncake-agentic":  # version 2: a header line first
            assert rows.pop(0)["schema"] == "dynamo.agentic_mooncake"
        assert code == 0 and len(rows) == calls and all(len(r["hash_ids"]) == -(-r["input_length"] // 64) for r in rows)


def test_generate_builtin_needs_a_rate(tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    code, _, stderr = _run("generate", "chat", "--tasks", "5", "--out", str(out))
    assert code == 2 and "give --rate" in stderr and not out.exists()
    code, _, _ = _run("generate", "chat", "--tasks", "5", "--rate", "2", "--cv", "1.5", "--out", str(out))
    assert code == 0 and len(list(read_trace(out))) == 5
    code, _, stderr = _run("generate", "nope", "--tasks", "5", "--rate", "1", "--out", str(tmp_path / "n.parquet"))
    assert code == 2 and "neither a built-in profile" in stderr
    code, _, stderr = _run("generate", "chat", "--rate", "-1", "--out", str(tmp_path / "n.parquet"))
    assert code == 2 and "bad arrivals" in stderr


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    assert _run("generate", "chat", "--tasks", "3", "--rate", "1", "--out", str(out))[0] == 0
    before = out.read_bytes()
    code, _, stderr = _run("generate", "chat", "--tasks", "4", "--rate", "1", "--out", str(out))
    assert code == 2 and "already exists" in stderr and "--overwrite" in stderr
    assert out.read_bytes() == before
    code, _, _ = _run("generate", "chat", "--tasks", "4", "--rate", "1", "--out", str(out), "--overwrite")
    assert code == 0 and len(list(read_trace(out))) == 4
    for args in (
        ("fit", str(out), "--out", str(out)),
        ("export", "mooncake", str(out), "--out", str(out)),
        ("import", "mooncake", str(out), "--out", str(out)),
    ):
        code, _, stderr = _run(*args)
        assert code == 2 and "already exists" in stderr, args


def test_output_parent_a_file_is_refused_a_missing_one_created(tmp_path: Path) -> None:
    trace = tmp_path / "c.parquet"
    assert _run("generate", "chat", "--tasks", "3", "--rate", "1", "--out", str(trace))[0] == 0
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    cases = (
        ("generate", "chat", "--tasks", "3", "--rate", "1", "--out"),
        ("fit", str(trace), "--out"),
        ("export", "mooncake", str(trace), "--out"),
        ("import", "mooncake", str(_mooncake(tmp_path, [GOOD % (0, 2)])), "--out"),
    )
    for i, args in enumerate(cases):
        code, stdout, stderr = _run(*args, str(blocker / "sub" / "o"))
        assert code == 2 and f"{blocker} is not a directory" in stderr and "Traceback" not in stdout + stderr, args
        made = tmp_path / f"new{i}" / "deeper" / "o"
        assert _run(*args, str(made))[0] == 0 and made.is_file(), args


def test_bad_input_exits_2_with_file_and_line(tmp_path: Path) -> None:
    src = _mooncake(tmp_path, [GOOD % (0, 2), '{"timestamp": 1, "input_length": "x"}', GOOD % (2, 3)])
    out = tmp_path / "m.parquet"
    code, stdout, stderr = _run("import", "mooncake", str(src), "--out", str(out))
    assert code == 2 and f"{src}:2:" in stderr and "Traceback" not in stdout + stderr and not out.exists()
    code, stdout, _ = _run("import", "mooncake", str(src), "--out", str(out), "--skip-bad")
    assert code == 0 and "skipped 1 bad line(s): 2" in stdout
    code, stdout, _ = _run("import", "mooncake", str(src), "--out", str(tmp_path / "j.parquet"), "--skip-bad", "--json")
    assert code == 0 and json.loads(stdout)["bad_lines"] == [2]
    code, _, stderr = _run("import", "csv", str(src), "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "unknown format" in stderr
    code, _, stderr = _run("stats", str(src))
    assert code == 2 and "not a Parquet file" in stderr
    code, _, stderr = _run("fit", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "f.yaml"))
    assert code == 2 and "no such file" in stderr
    code, _, stderr = _run("export", "plain", str(out), "--out", str(tmp_path / "e.jsonl"))
    assert code == 2 and "unknown export format" in stderr
    bad_profile = tmp_path / "bad.yaml"
    bad_profile.write_text("profile: [1, 2]\n")
    code, _, stderr = _run("generate", str(bad_profile), "--rate", "1", "--out", str(tmp_path / "b.parquet"))
    assert code == 2 and "profile is invalid" in stderr


def test_sample_trace_stats() -> None:
    code, stdout, _ = _run("stats", str(REPO / "traces" / "coding-agent-60.parquet"), "--json")
    d = json.loads(stdout)
    assert code == 0 and d["tasks"] == 60 and d["prefix_reuse"] > 0.9
