"""Results on disk: one directory per run, written atomically, never overwritten unless asked.

A run directory holds ``calls.parquet``, ``tasks.parquet``, ``replicas.parquet``, ``pools.parquet``,
``summary.json`` and ``manifest.json``. Everything is first written into a hidden temporary sibling directory
and then renamed into place (:mod:`agentsim.files`), so a reader (or a crash) never sees half a run. An existing
directory is refused unless ``overwrite=True``; then the new one takes its place in one atomic exchange.

A simulated run's calls, tasks and replicas are already Parquet files when it ends (its spill files,
:mod:`agentsim.spill`): they are moved into the run directory, not copied, when they are on the same file
system (a hard link into the temporary directory, the source removed once the run is in place, so a failure
midway loses nothing), and copied otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentsim.files import OutputExistsError, atomic_path
from agentsim.spill import write_parquet

TABLES = ("calls", "tasks", "replicas", "pools")


class RunExistsError(OutputExistsError):
    """The output directory exists and overwriting was not asked for."""


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_run(
    out: Path,
    tables: dict[str, pa.Table],
    summary: dict[str, Any],
    manifest: dict[str, Any],
    *,
    overwrite: bool = False,
    files: Mapping[str, Path] | None = None,
) -> Path:
    """Write one run's tables and JSON files into ``out`` atomically (:func:`agentsim.files.atomic_path`);
    return ``out``. ``files`` maps table names to Parquet files already written: linked into the run (copied
    across file systems); their sources are the caller's to remove."""
    out = Path(out)
    given = dict(files or {})
    with atomic_path(out, overwrite=overwrite, directory=True, exists_error=RunExistsError) as tmp:
        for name, table in tables.items():
            write_parquet(table, tmp / f"{name}.parquet")
        for name, src in given.items():
            _link_or_copy(Path(src), tmp / f"{name}.parquet")
        (tmp / "summary.json").write_text(_json(summary))
        (tmp / "manifest.json").write_text(_json(manifest))
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same file system: no copy
    except OSError:
        shutil.copyfile(src, dst)


def new_run_dir(root: Path = Path("runs"), name: str = "run") -> Path:
    """A fresh, not yet existing directory under ``root`` named by the current time and ``name``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{name}"
    path = base
    i = 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


def read_run(path: Path) -> dict[str, Any]:
    """Read a run directory back: the tables (Arrow) and the two JSON documents."""
    path = Path(path)
    out: dict[str, Any] = {}
    for name in TABLES:
        f = path / f"{name}.parquet"
        if f.exists():
            out[name] = pq.read_table(f)
    out["summary"] = json.loads((path / "summary.json").read_text())
    out["manifest"] = json.loads((path / "manifest.json").read_text())
    return out
