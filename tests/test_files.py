"""Atomic outputs (``agentsim.files``): refusal without ``overwrite``, the exchange of a directory, failures
leave nothing behind, umask permissions, and the cleaning of temporary siblings whose writer is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentsim import files


def test_existing_target_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(files.OutputExistsError, match="already exists"):
        files.write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    files.write_text(target, "new", overwrite=True)
    assert target.read_text() == "new"


def test_a_failed_write_leaves_neither_target_nor_temporary(tmp_path: Path) -> None:
    target = tmp_path / "d"
    with pytest.raises(RuntimeError), files.atomic_path(target, directory=True) as tmp:
        (tmp / "half.parquet").write_bytes(b"x")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_directory_overwrite_swaps_whole_directories(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with files.atomic_path(target, directory=True) as tmp:
        (tmp / "a").write_text("1")
    inode_before = target.stat().st_ino
    with files.atomic_path(target, directory=True, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
        assert (target / "a").read_text() == "1"  # the old directory stays whole until the swap
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert target.stat().st_ino != inode_before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the old one is gone, no temporary left


def test_kind_mismatch_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(files.OutputExistsError, match="is a file"), files.atomic_path(
        tmp_path / "f", directory=True, overwrite=True
    ):
        pass


def test_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        files.write_text(tmp_path / "f", "x")
        with files.atomic_path(tmp_path / "d", directory=True):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750


def test_temporaries_of_dead_writers_are_cleaned_by_the_next_write(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale_dir = tmp_path / f".run.{pid}.abc123.tmp"
    stale_dir.mkdir()
    (stale_dir / "calls.parquet").write_bytes(b"x")
    stale_file = tmp_path / f".t.parquet.{pid}.k9_x.tmp"
    stale_file.write_bytes(b"x")
    mine = tmp_path / f".other.{os.getpid()}.zz.tmp"  # a live writer's (this process): kept
    mine.write_bytes(b"x")
    unrelated = tmp_path / ".notes.tmp"  # not one of ours
    unrelated.write_bytes(b"x")
    files.write_text(tmp_path / "new.txt", "x")
    assert not stale_dir.exists() and not stale_file.exists()
    assert mine.exists() and unrelated.exists()
    assert files.clean_stale_temps(tmp_path) == []  # nothing stale left for a second pass
