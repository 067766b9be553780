"""Run directories on disk: written atomically (nothing half-written, no temporary left behind, also when a
write fails midway), never overwritten unless asked, and read back unchanged."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentsim import store

RUN_FILES = {"calls.parquet", "tasks.parquet", "replicas.parquet", "pools.parquet", "summary.json", "manifest.json"}


def tables(tag: int = 0) -> dict[str, pa.Table]:
    """Small tables with the kinds of values runs hold: ints, floats, strings and nulls."""
    return {
        "calls": pa.table(
            {
                "call_id": pa.array([1, 2, 3], pa.int64()),
                "done_s": pa.array([1.5, None, 2.25 + tag], pa.float64()),
                "pool": pa.array(["a", None, "b"], pa.string()),
            }
        ),
        "tasks": pa.table({"task_id": pa.array([7], pa.int64()), "usd": pa.array([0.125], pa.float64())}),
        "replicas": pa.table({"t_s": pa.array([0.0, 10.0]), "replica": pa.array([0, 0], pa.int32())}),
        "pools": pa.table({"pool": ["a"], "gpus": pa.array([8], pa.int64())}),
    }


SUMMARY: dict[str, Any] = {"calls_completed": 2, "ttft_s": {"n": 2, "mean": 0.5, "p50": None}, "usd_total": 1.0}
MANIFEST: dict[str, Any] = {"agentsim_version": "0.1.0", "seed": 3, "scenario": {"name": "x"}, "wall_s": 0.1}


def leftovers(parent: Path, keep: set[str]) -> list[str]:
    """Entries of ``parent`` other than ``keep`` (temporary or moved-aside directories)."""
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


def test_write_creates_the_run_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert store.write_run(out, tables(), SUMMARY, MANIFEST) == out
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert leftovers(tmp_path, {"run"}) == []


def test_write_creates_missing_parents(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "run"
    store.write_run(out, tables(), SUMMARY, MANIFEST)
    assert (out / "summary.json").is_file()
    assert leftovers(out.parent, {"run"}) == []


def test_read_run_round_trips(tmp_path: Path) -> None:
    out = store.write_run(tmp_path / "run", tables(), SUMMARY, MANIFEST)
    back = store.read_run(out)
    for name, table in tables().items():
        assert back[name].equals(table), name
        assert back[name].schema.equals(table.schema), name
    assert back["calls"].column("done_s").null_count == 1  # nulls stay null, never 0
    assert back["summary"] == SUMMARY
    assert back["manifest"] == MANIFEST


def test_read_run_accepts_a_str_and_skips_absent_tables(tmp_path: Path) -> None:
    out = store.write_run(tmp_path / "run", {"calls": tables()["calls"]}, SUMMARY, MANIFEST)
    back = store.read_run(str(out))  # type: ignore[arg-type]
    assert set(back) == {"calls", "summary", "manifest"}


def test_refuses_an_existing_dir_and_leaves_it_alone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(store.RunExistsError, match="already exists"):
        store.write_run(out, tables(), SUMMARY, MANIFEST)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert leftovers(tmp_path, {"run"}) == []
    assert issubclass(store.RunExistsError, FileExistsError)


def test_overwrite_replaces_the_whole_dir(tmp_path: Path) -> None:
    out = tmp_path / "run"
    store.write_run(out, tables(0), SUMMARY, MANIFEST)
    (out / "stale.txt").write_text("from an older run")
    store.write_run(out, tables(1), {**SUMMARY, "calls_completed": 9}, MANIFEST, overwrite=True)
    assert {p.name for p in out.iterdir()} == RUN_FILES  # the old directory's extra file is gone
    back = store.read_run(out)
    assert back["calls"].equals(tables(1)["calls"])
    assert back["summary"]["calls_completed"] == 9
    assert leftovers(tmp_path, {"run"}) == []  # no temporary and no moved-aside old directory


class Boom(RuntimeError):
    pass


def fail_on_second_table(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``pyarrow.parquet.write_table`` write the first table and raise on the second."""
    real = pq.write_table
    written: list[str] = []

    def write_table(table: pa.Table, where: Any, *args: Any, **kwargs: Any) -> None:
        if written:
            raise Boom("disk full")
        written.append(str(where))
        real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    return written


def test_failure_midway_leaves_no_target_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = fail_on_second_table(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(Boom):
        store.write_run(out, tables(), SUMMARY, MANIFEST)
    assert len(written) == 1  # the first table really was written, into the temporary directory
    assert Path(written[0]).parent != out
    assert not out.exists()
    assert leftovers(tmp_path, set()) == []
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_failure_midway_during_overwrite_keeps_the_old_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    store.write_run(out, tables(0), SUMMARY, MANIFEST)
    fail_on_second_table(monkeypatch)
    with pytest.raises(Boom):
        store.write_run(out, tables(1), SUMMARY, MANIFEST, overwrite=True)
    monkeypatch.undo()
    assert store.read_run(out)["calls"].equals(tables(0)["calls"])
    assert leftovers(tmp_path, {"run"}) == []


def test_unserializable_summary_leaves_nothing(tmp_path: Path) -> None:
    # NaN is not JSON (allow_nan=False): the failure comes after every table is written.
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        store.write_run(out, tables(), {"x": float("nan")}, MANIFEST)
    assert not out.exists()
    assert leftovers(tmp_path, set()) == []


def test_json_files_are_plain_json(tmp_path: Path) -> None:
    out = store.write_run(tmp_path / "run", tables(), SUMMARY, MANIFEST)
    text = (out / "summary.json").read_text()
    assert text.endswith("\n")
    assert json.loads(text) == SUMMARY


def test_run_dir_permissions_follow_the_umask(tmp_path: Path) -> None:
    # The temporary directory (mkdtemp: 0700) is renamed into place; a results directory must be as readable
    # as any directory the user creates.
    out = store.write_run(tmp_path / "run", tables(), SUMMARY, MANIFEST)
    reference = tmp_path / "reference"
    reference.mkdir()
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_new_run_dir_is_fresh_and_unique(tmp_path: Path) -> None:
    first = store.new_run_dir(tmp_path / "runs", "demo")
    assert first.parent == tmp_path / "runs"
    assert first.name.endswith("-demo")
    assert not first.exists()
    first.mkdir(parents=True)
    second = store.new_run_dir(tmp_path / "runs", "demo")
    assert second != first and not second.exists()
    assert os.path.commonpath([first, second]) == str(tmp_path / "runs")
