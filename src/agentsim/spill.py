"""Spill files: a run's tables go to disk as they are recorded, so memory holds what is live, not what is done.

A day of a large fleet records tens of millions of calls; kept in memory until the end of the run, they were most
of its memory (about a kilobyte per call, counting the end-of-run conversions). Instead every table is a Parquet
file that grows by one *row group* each time the recorder's buffer fills (:data:`agentsim.engine.records.Sink`):

* :class:`ParquetSink` writes the record batches it is given, each optionally transformed first (the call table
  gets its dollars and joules there, from the resolved prices), on a writer thread: Parquet encoding and
  compression release the GIL, so they overlap the simulation on another core. The queue holds at most
  :data:`QUEUE` batches: a simulation that outruns the disk waits rather than piling batches up. Dictionary
  encoding is asked for the text columns only (numbers gain nothing from it and cost time).
* :class:`SpillDir` is the private temporary directory of one run's files, beside the run directory it will
  become when the place is known (so that saving is a rename, not a copy; :func:`agentsim.store.write_run`),
  else in the system's temporary directory. It is named like every temporary output of agentsim
  (``.<name>.<pid>.<random>.tmp``, :mod:`agentsim.files`), so the directory of a killed process is removed by
  the next write in that place; a live one is removed when the result that owns it is garbage collected, or at
  exit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentsim.files import clean_stale_temps

QUEUE = 2
"""Record batches waiting for the writer thread, at most (each up to ``CHUNK_ROWS`` rows)."""

COMPRESSION = "zstd"

Transform = Callable[[pa.RecordBatch], pa.Table]


def _text(schema: pa.Schema) -> list[str] | bool:
    return [f.name for f in schema if pa.types.is_string(f.type)] or False


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer as agentsim writes its tables: zstd, dictionaries for the text columns only."""
    return pq.ParquetWriter(str(path), schema, compression=COMPRESSION, use_dictionary=_text(schema))


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write a whole table as :func:`parquet_writer` would."""
    pq.write_table(table, str(path), compression=COMPRESSION, use_dictionary=_text(table.schema))


class ParquetSink:
    """Writes record batches to the Parquet file ``path`` of ``schema``, one row group each, on a writer thread
    (module docstring); ``transform`` turns each batch into the rows written. Call it with each batch, then
    :meth:`close` (which waits for the writes and raises the writer's error, if any); :meth:`abort` stops it
    without finishing the file. ``threaded=False`` writes in the caller's thread."""

    def __init__(
        self, path: Path, schema: pa.Schema, transform: Transform | None = None, *, threaded: bool = True
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.transform = transform
        self.rows = 0
        self._writer = parquet_writer(self.path, schema)
        self._error: BaseException | None = None
        self._queue: queue.Queue[pa.RecordBatch | None] | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=QUEUE)
            self._thread = threading.Thread(target=self._drain, name=f"agentsim-spill-{self.path.name}", daemon=True)
            self._thread.start()

    def __call__(self, batch: pa.RecordBatch) -> None:
        if self._error is not None:
            raise self._error
        self.rows += batch.num_rows
        if self._queue is None:
            self._write(batch)
        else:
            self._queue.put(batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        table = self.transform(batch) if self.transform is not None else pa.Table.from_batches([batch])
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is None:
                try:
                    self._write(batch)
                except BaseException as e:  # handed to the simulation's thread at its next batch or at close
                    self._error = e

    def _stop(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Finish the file: wait for the queued batches, write the footer; raise the writer's error if any."""
        self._stop()
        self._writer.close()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop writing (after an error elsewhere); the file is left incomplete, for its directory's removal."""
        self._error = self._error or RuntimeError("aborted")
        self._stop()
        with contextlib.suppress(Exception):  # a half-written file: it is removed with its directory
            self._writer.close()


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class SpillDir:
    """The temporary directory of one run's spill files (module docstring): in ``parent`` (created if needed;
    default the system's temporary directory), removed by :meth:`remove`, when this object is garbage collected,
    or at exit."""

    def __init__(self, parent: Path | None = None, name: str = "run") -> None:
        default = Path(tempfile.gettempdir()) / "agentsim"
        try:
            self.path = self._make(Path(parent) if parent is not None else default, name)
        except OSError:
            if parent is None:
                raise
            self.path = self._make(default, name)  # the place given cannot be written: saving will say so
        self._finalizer = weakref.finalize(self, _remove, str(self.path))

    @staticmethod
    def _make(where: Path, name: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(where)  # the spill directories of killed runs
        return Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=where))

    def file(self, name: str) -> Path:
        """The path of table ``name``'s file in the directory."""
        return self.path / f"{name}.parquet"

    def remove(self) -> None:
        """Delete the directory and what is left in it."""
        self._finalizer()

    @property
    def removed(self) -> bool:
        return not self._finalizer.alive


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file (or some of its columns) as one Arrow table with one contiguous chunk per column, as the
    recorder's in-memory tables were (memory-mapped reading)."""
    table: Any = pq.ParquetFile(str(path), memory_map=True).read(columns=columns)
    return table.combine_chunks()
