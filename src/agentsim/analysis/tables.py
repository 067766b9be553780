"""The tables the analysis reads: an Arrow table in memory, or a run's Parquet file read when asked.

The calls of a ten-million-call run are ~2 GB as a table, so the summary reads a table a batch of rows at a time
(:func:`batches`: a Parquet file a row group at a time); the small tables (a run's replica samples) are asked only
for ``num_rows``, ``column(name)`` and ``filter(mask)``, which :class:`ParquetColumns` answers from the file,
decoding just the column asked for (a filter is a mask applied as each column is read). An Arrow table answers
the same, so the functions take either (:data:`Table`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agentsim.engine.records import CHUNK_ROWS


class ParquetColumns:
    """A Parquet file seen as a table whose columns are read when asked for (module docstring); ``mask``: only
    the rows where it holds."""

    def __init__(self, path: str | Path, mask: np.ndarray | None = None) -> None:
        self.path = Path(path)
        meta = pq.ParquetFile(str(self.path)).metadata
        self.file_rows = int(meta.num_rows)
        self.schema: pa.Schema = meta.schema.to_arrow_schema()
        if mask is not None and mask.shape != (self.file_rows,):
            raise ValueError(f"a mask of {mask.shape} for {self.file_rows} rows")
        self.mask = mask
        self.num_rows = self.file_rows if mask is None else int(np.count_nonzero(mask))

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    def column(self, name: str) -> Any:
        """Column ``name`` (a chunked array), only the masked rows."""
        if name not in self.schema.names:
            raise KeyError(f'Field "{name}" does not exist in schema')
        col = pq.ParquetFile(str(self.path)).read(columns=[name], use_threads=False).column(0)
        return col if self.mask is None else col.filter(pa.array(self.mask))

    def filter(self, mask: Any) -> ParquetColumns:
        """The rows where ``mask`` (booleans, one per row of this view) holds."""
        m = np.asarray(mask.to_numpy(zero_copy_only=False) if isinstance(mask, pa.Array | pa.ChunkedArray) else mask)
        m = m.astype(bool, copy=False)
        if m.shape != (self.num_rows,):
            raise ValueError(f"a mask of {m.shape} for {self.num_rows} rows")
        if self.mask is None:
            return ParquetColumns(self.path, m)
        whole = np.zeros(self.file_rows, dtype=bool)
        whole[self.mask] = m
        return ParquetColumns(self.path, whole)

    def read(self) -> pa.Table:
        """The whole view as an Arrow table (one chunk per column)."""
        table = pq.ParquetFile(str(self.path)).read()
        if self.mask is not None:
            table = table.filter(pa.array(self.mask))
        return table.combine_chunks()


Table: TypeAlias = "pa.Table | ParquetColumns"
"""What the metrics read: an Arrow table or a Parquet file's columns (both have ``num_rows``, ``column``,
``filter``)."""


ROWS = CHUNK_ROWS
"""Rows read at a time when a table is streamed (:func:`batches`): a run's row group, the engine's record chunk."""


def batches(table: Table, names: list[str]) -> Iterator[pa.RecordBatch]:
    """The columns ``names`` of ``table``, :data:`ROWS` rows at a time, in row order (a Parquet file is read a
    batch at a time: memory holds one batch of those columns, whatever the table's length)."""
    if isinstance(table, ParquetColumns):
        # A row group at a time, in this thread, without reading ahead and not memory-mapped (the file's pages
        # would stay resident once read): pyarrow's batch iterator buffers several row groups at once.
        f = pq.ParquetFile(str(table.path), pre_buffer=False)
        start = 0
        for i in range(f.metadata.num_row_groups):
            group = f.read_row_group(i, columns=names, use_threads=False)
            if table.mask is not None:
                rows = group.num_rows
                group = group.filter(pa.array(table.mask[start : start + rows]))
                start += rows
            yield from group.to_batches(max_chunksize=ROWS)
            del group
        return
    yield from table.select(names).to_batches(max_chunksize=ROWS)
