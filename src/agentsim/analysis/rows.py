"""Per-row quantities of the result tables: columns as numpy, per-call latencies, masks by status and workload,
and a table's rows in the measurement window read a batch at a time (the tables may be Arrow tables or a run's
Parquet files, :mod:`agentsim.analysis.tables`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentsim.analysis.order import Ordered
from agentsim.analysis.tables import ParquetColumns, Table, batches


def col(table: Table, name: str) -> np.ndarray:
    """A column as float64 numpy, nulls as NaN."""
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)


def own_col(table: Table, name: str) -> np.ndarray:
    """:func:`col`, as an array of its own that may be changed in place (not a view of the table's memory)."""
    a = col(table, name)
    return a if a.flags.writeable and a.flags.owndata else a.copy()


def codes(table: Table, name: str) -> tuple[np.ndarray, list[str]]:
    """Text column ``name`` as codes into its distinct values (null: the code ``len(values)``)."""
    arr = table.column(name)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    names = [str(v) for v in arr.dictionary.to_pylist()]
    code = np.asarray(arr.indices.fill_null(len(names)).to_numpy(zero_copy_only=False), dtype=np.int64)
    return code, names


def ttft_of(calls: Table) -> np.ndarray:
    """Per-call time to first token (NaN where there is none)."""
    ttft = own_col(calls, "first_token_s")
    ttft -= col(calls, "issue_s")  # in place: one array of the table's length, not three
    return ttft


def tpot_of(calls: Table) -> np.ndarray:
    """Per-call time per output token after the first (NaN where undefined; see :func:`call_latencies`)."""
    tpot = own_col(calls, "done_s")
    tpot -= col(calls, "first_token_s")
    per = own_col(calls, "generated_tokens")
    per -= 1  # token counts: exact in float64, so per > 0 exactly when generated > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(tpot, per, out=tpot)
    tpot[~(per > 0)] = np.nan
    return tpot


def e2e_of(calls: Table) -> np.ndarray:
    """Per-call end-to-end seconds (NaN where unfinished)."""
    e2e = own_col(calls, "done_s")
    e2e -= col(calls, "issue_s")
    return e2e


def call_latencies(calls: Table) -> dict[str, np.ndarray]:
    """Per-call TTFT, TPOT and end-to-end seconds (NaN where undefined).

    TPOT is ``(done - first_token) / (generated - 1)``: the mean time between output tokens after the first,
    undefined for single-token outputs.
    """
    return {"ttft_s": ttft_of(calls), "tpot_s": tpot_of(calls), "call_e2e_s": e2e_of(calls)}


def is_status(table: Table, status: str) -> np.ndarray:
    """Boolean mask of ``table``'s rows whose ``status`` is ``status``."""
    return np.asarray(pc.equal(table.column("status"), status).to_numpy(zero_copy_only=False), dtype=bool)


def of_workload(table: Table, label: str) -> np.ndarray:
    """Boolean mask of ``table``'s rows whose ``workload`` is ``label``."""
    return np.asarray(pc.equal(table.column("workload"), label).to_numpy(zero_copy_only=False), dtype=bool)


def in_window(table: Table, names: list[str], at: str, t0: float) -> Iterator[pa.RecordBatch]:
    """:func:`~agentsim.analysis.tables.batches` of ``table``'s rows whose ``at`` is at least ``t0``."""
    for b in batches(table, list(dict.fromkeys([*names, at]))):
        keep = col(b, at) >= t0
        yield b if keep.all() else b.filter(pa.array(keep))


def values(table: Table, names: list[str], at: str, t0: float, of: Callable[[pa.RecordBatch], np.ndarray]) -> Ordered:
    """The non-NaN values of ``of`` over ``table``'s rows whose ``at`` is at least ``t0`` (``names``: the
    columns ``of`` reads), for order statistics in bounded memory (:class:`~agentsim.analysis.order.Ordered`)."""

    def source() -> Iterator[np.ndarray]:
        for b in in_window(table, names, at, t0):
            v = of(b)
            yield v[~np.isnan(v)]

    return Ordered(source, table.num_rows, tempdir=table.path.parent if isinstance(table, ParquetColumns) else None)
