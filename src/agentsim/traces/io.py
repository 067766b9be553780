"""Trace files: canonical traces written and read as Parquet, streaming.

:class:`TraceWriter` appends record batches through ``pyarrow.parquet.ParquetWriter`` into a temporary sibling
of the target (:func:`agentsim.files.atomic_path`), so a reader never sees half a trace and a failed write
leaves nothing; :func:`read_trace` walks ``iter_batches`` and checks the schema's rules as it goes
(:class:`~agentsim.traces.tables.TaskAssembler`). Memory is bounded by the batch size, not the file. The
table readers (:func:`read_table`, :func:`iter_trace_batches`) serve analysis that wants columns, not tasks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agentsim.files import OutputPathError, atomic_path, check_output
from agentsim.traces.schema import (
    BATCH_ROWS,
    COLUMN_NAMES,
    DEFAULT_BLOCK_SIZE,
    META_SOURCE,
    META_VERSION,
    OPTIONAL_COLUMNS,
    TRACE_VERSION,
    OutputExistsError,
    TraceError,
    TraceMeta,
    TraceTask,
    check_columns,
    schema_block_size,
    trace_schema,
)
from agentsim.traces.tables import TableBuilder, TaskAssembler
from agentsim.workload.taskgraph import TaskTemplate


def check_output_parent(path: str | os.PathLike[str]) -> None:
    """Raise :class:`TraceError` when an output cannot go to ``path`` because a parent of it is a file.

    :func:`~agentsim.files.atomic_path` creates missing parent directories; a file where a directory should be
    would otherwise surface as an ``OSError`` with a traceback rather than a message naming the path.
    """
    try:
        check_output(path, overwrite=True)
    except OutputPathError as e:
        raise TraceError(str(e)) from None


class TraceWriter:
    """Writes a canonical trace file record batch by record batch, atomically.

    Use as a context manager; the file appears at ``path`` when the block exits without an exception::

        with TraceWriter("t.parquet", source="mooncake:conversation_trace.jsonl", block_size_tokens=512) as w:
            w.write_tasks(tasks)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        block_size_tokens: int = DEFAULT_BLOCK_SIZE,
        overwrite: bool = False,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        if block_size_tokens < 1:
            raise TraceError(f"block_size_tokens must be >= 1, got {block_size_tokens}")
        self.path = Path(path)
        self.schema = trace_schema(source=source, block_size_tokens=block_size_tokens)
        self.block_size_tokens = int(block_size_tokens)
        self.rows = 0
        self._builder = TableBuilder(batch_rows)
        self._ctx = atomic_path(self.path, overwrite=overwrite, exists_error=OutputExistsError)
        self._tmp: Path | None = None
        self._writer: Any = None

    def __enter__(self) -> TraceWriter:
        check_output_parent(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="zstd")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._flush()
            if self._writer is not None:
                self._writer.close()
        finally:
            self._ctx.__exit__(exc_type, exc, tb)

    def write_table(self, table: pa.Table | pa.RecordBatch) -> None:
        """Append canonical rows (columns by name; cast to the canonical types)."""
        self._flush()
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        check_columns(table.schema, str(self.path))
        for name in OPTIONAL_COLUMNS:
            if name not in table.schema.names:
                table = table.append_column(name, pa.array(np.zeros(table.num_rows, dtype=np.bool_)))
        table = table.select(list(COLUMN_NAMES)).cast(self.schema)
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def write_task(self, task: TraceTask) -> None:
        """Append one task."""
        self._builder.add_task(task)
        if self._builder.full():
            self._flush()

    def write_tasks(self, tasks: Iterable[TraceTask]) -> None:
        """Append tasks."""
        for t in tasks:
            self.write_task(t)

    def add_template(self, template: TaskTemplate, task_id: int, start_s: float, first_call_id: int) -> int:
        """Append a synthetic task (see :meth:`TableBuilder.add_template`); returns the next free call id."""
        nxt = self._builder.add_template(template, task_id, start_s, first_call_id)
        if self._builder.full():
            self._flush()
        return nxt

    def _flush(self) -> None:
        if len(self._builder):
            table = self._builder.take().replace_schema_metadata(self.schema.metadata)
            self._writer.write_table(table)
            self.rows += table.num_rows


def write_trace(
    path: str | os.PathLike[str],
    tasks: Iterable[TraceTask] | pa.Table,
    *,
    source: str = "",
    block_size_tokens: int = DEFAULT_BLOCK_SIZE,
    overwrite: bool = False,
) -> int:
    """Write tasks (or a canonical table) to ``path`` atomically; returns the number of rows."""
    with TraceWriter(path, source=source, block_size_tokens=block_size_tokens, overwrite=overwrite) as w:
        if isinstance(tasks, pa.Table):
            w.write_table(tasks)
        else:
            w.write_tasks(tasks)
    return w.rows


def _open(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: no such file")
    try:
        f = pq.ParquetFile(str(p))
    except Exception:  # pyarrow raises several types for a non-Parquet file
        raise TraceError(f"{p}: not a Parquet file{_looks_like(p)}") from None
    schema = f.schema_arrow
    check_columns(schema, str(p))
    return f


def _looks_like(p: Path) -> str:
    """A hint for a file that is not Parquet: what it seems to be and how to make it a trace."""
    try:
        with p.open("rb") as f:
            head = f.read(512)
    except OSError:
        return ""
    hint = f"; convert it with `agentsim trace import FORMAT {p} -o trace.parquet`"
    if head[:2] == b"\x1f\x8b":
        return f" (it is gzip-compressed{hint})"
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return f" (it looks like JSON or JSON lines{hint})"
    if b"," in head.split(b"\n", 1)[0] and b"\x00" not in head:
        return f" (it looks like CSV{hint})"
    return ""


def read_trace_meta(path: str | os.PathLike[str]) -> TraceMeta:
    """The metadata of a trace file: version, block size, source, rows."""
    f = _open(path)
    meta = f.schema_arrow.metadata or {}
    version = meta.get(META_VERSION.encode(), b"").decode()
    if version and version != TRACE_VERSION:
        raise TraceError(f"{path}: trace version {version}, this agentsim reads version {TRACE_VERSION}")
    return TraceMeta(
        version or TRACE_VERSION,
        schema_block_size(f.schema_arrow),
        meta.get(META_SOURCE.encode(), b"").decode(),
        int(f.metadata.num_rows),
    )


def iter_trace_batches(
    path: str | os.PathLike[str], *, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The raw canonical record batches of a trace file (optionally only some columns)."""
    f = _open(path)
    yield from f.iter_batches(batch_size=batch_rows, columns=columns)


def read_trace(path: str | os.PathLike[str], *, batch_rows: int = BATCH_ROWS) -> Iterator[TraceTask]:
    """The tasks of a trace file in file order, which is start order, streaming.

    This is the replay entry point: each :class:`TraceTask` carries ``start_s``, the workload label, the
    DAG (``template``) and per call its ``call_ids``, ``release_s`` and ``hash_ids``; the block size of the
    hash ids is :func:`read_trace_meta` ``(path).block_size_tokens``. Every rule of the schema is checked as
    the file is read; a violation raises :class:`TraceError` naming the file and row.
    """
    meta = read_trace_meta(path)
    asm = TaskAssembler(meta.block_size_tokens, str(path))
    for batch in iter_trace_batches(path, batch_rows=batch_rows):
        yield from asm.feed(batch)
    yield from asm.end()


def read_table_columns(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a trace file."""
    names: list[str] = list(_open(path).schema_arrow.names)
    return names


def read_table(path: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """A whole trace file as one Arrow table (metadata kept). For small traces and analysis."""
    f = _open(path)
    return f.read(columns=columns)
