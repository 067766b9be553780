"""Azure: the Azure LLM inference traces (CSV, 2023 and 2024 releases).

Format: ``TIMESTAMP,ContextTokens,GeneratedTokens``. 2023: wall clock with 7 fractional digits, no zone; 2024
(week-long): the same columns with a zoned ISO-8601 timestamp (``2024-05-10 00:00:00.009930+00:00``); plain
numbers are read as seconds. Mapping: each row is a single-call task released at its timestamp minus the
file's first timestamp (no prefix information: the traces carry none).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agentsim.traces.importers.common import (
    BadInputError,
    BadRows,
    CsvLines,
    ImportReport,
    Sink,
    csv_batches,
    csv_header,
    first_failures,
    parse_floats,
    parse_ints,
)


class _Timestamps:
    """Parses a timestamp column into seconds relative to the file's first timestamp.

    The kind is fixed by the first parsable value: naive ISO wall clock (Azure 2023), zoned ISO (Azure 2024,
    converted to UTC), or plain numbers (seconds).
    """

    KINDS = ("naive", "zoned", "number")

    def __init__(self) -> None:
        self.kind: str | None = None
        self.t0: float | None = None
        self.t0_ns: int | None = None

    def _try(self, kind: str, arr: Any) -> np.ndarray:
        """Values as float seconds (NaN where unparsable)."""
        if kind == "number":
            vals, ok = parse_floats(arr)
            if self.t0 is None and ok.any():
                self.t0 = float(vals[np.argmax(ok)])
            return np.where(ok, vals - (self.t0 or 0.0), np.nan)
        typ = pa.timestamp("ns") if kind == "naive" else pa.timestamp("ns", tz="UTC")
        try:
            ns = pc.cast(arr, typ).cast(pa.int64()).to_numpy(zero_copy_only=False)
            ok = np.ones(len(ns), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ns = np.zeros(len(arr), dtype=np.int64)
            ok = np.zeros(len(arr), dtype=bool)
            for i, s in enumerate(arr.to_pylist()):
                with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    ns[i] = pc.cast(pa.array([s]), typ).cast(pa.int64())[0].as_py()
                    ok[i] = True
        # Nanoseconds since the epoch do not fit a float64 exactly: subtract the file's origin first.
        if self.t0_ns is None and ok.any():
            self.t0_ns = int(ns[np.argmax(ok)])
        rel = (ns - (self.t0_ns or 0)).astype(np.float64) / 1e9
        return np.where(ok, rel, np.nan)

    def parse(self, arr: Any) -> np.ndarray:
        """Seconds since the first timestamp of the file; NaN marks an unparsable value."""
        if self.kind is None:
            for s in arr.to_pylist():
                self.kind = next(
                    (k for k in self.KINDS if not np.isnan(self._try(k, pa.array([s], pa.string()))[0])), None
                )
                if self.kind is not None:
                    break
            if self.kind is None:
                return np.full(len(arr), np.nan)
        return self._try(self.kind, arr)


def import_azure(src: Path, sink: Sink, bad: BadRows, report: ImportReport, workload: str) -> None:
    """Read an Azure LLM inference CSV into ``sink``, one single-call task per good row."""
    header = csv_header(src)
    need = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    missing = [c for c in need if c not in header]
    if missing:
        raise BadInputError(str(src), 1, f"not an Azure LLM inference CSV: missing column(s) {', '.join(missing)}")
    lines = CsvLines()
    stamps = _Timestamps()
    for batch, used in csv_batches(src, need, bad, lines):
        n = batch.num_rows
        if n == 0:
            continue
        t = stamps.parse(batch.column("TIMESTAMP"))
        ctx, ok_c = parse_ints(batch.column("ContextTokens"))
        gen, ok_g = parse_ints(batch.column("GeneratedTokens"))
        checks = [
            (np.isnan(t), "TIMESTAMP is not a timestamp"),
            (~ok_c | (ctx < 1), "ContextTokens must be an integer >= 1"),
            (~ok_g | (gen < 1), "GeneratedTokens must be an integer >= 1"),
        ]
        ok = first_failures(checks, used, lambda i, reason: bad(lines.line(lines.rows + i), reason))
        lines.rows += n
        sink.add_single_calls(t[ok], ctx[ok], gen[ok], None, workload)
    report.lines = lines.line(max(lines.rows - 1, 0)) if lines.rows else 1
