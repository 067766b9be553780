"""Importers: production and benchmark trace formats into the canonical trace schema.

Each importer reads one source format and writes a canonical trace (:mod:`agentsim.traces.schema`) through
the same writer that synthetic generation uses. What each format says, and how it is mapped:

============== ========================================================================================
format         mapping
============== ========================================================================================
mooncake       JSONL, one request per line: ``timestamp`` (ms), ``input_length``, ``output_length``,
               ``hash_ids`` (one id per 512-token block; equal leading ids = shared prefix). Each line is a
               single-call task released at ``timestamp / 1000`` s. Kimi's conversation, tool&agent and
               synthetic traces (Mooncake FAST'25 release) all use it.
azure          CSV ``TIMESTAMP,ContextTokens,GeneratedTokens`` (Azure LLM inference traces). 2023: wall
               clock with 7 fractional digits, no zone; 2024 (week-long): the same columns with a zoned
               ISO-8601 timestamp (``2024-05-10 00:00:00.009930+00:00``). Plain numbers are read as seconds.
               Each row is a single-call task released at its timestamp minus the file's first timestamp.
burstgpt       CSV ``Timestamp`` (s), ``Model``, ``Request tokens``, ``Response tokens``, ``Total tokens``,
               ``Log Type``; newer releases add a session id (``Session ID``/``SessionID``) and ``Elapsed
               time`` (s, the request's duration). Without a session id each row is a single-call task.
               With one, a session's rows (by timestamp) form one task, each call depending on the
               previous one with ``gap_s = t_k - (t_(k-1) + elapsed_(k-1))`` (or ``t_k - t_(k-1)``, an upper
               bound, without ``Elapsed time``), clipped at 0; a call links its predecessor as prefix when
               its request is at least as long (the conversation context grew). Rows with 0 response
               tokens are failed requests: dropped and counted. Workload: ``<model>-<log type>`` slugged
               (``chatgpt-conversation-log``).
agent-sessions JSONL, one session per line (agentsim's own format for agent logs)::

                   {"session_id": "s1", "start_s": 12.5, "workload": "coding",
                    "shared_prefix_tokens": 0,
                    "requests": [{"input_tokens": 9000, "output_tokens": 300, "tool_s": 2.0}, ...]}

               ``start_s`` (s) or ``timestamp`` (ms) is required; ``workload`` and
               ``shared_prefix_tokens`` (a prompt prefix shared by all sessions of the workload) are
               optional. ``requests`` run in order; ``tool_s`` (or ``tool_ms``) is the tool time *after*
               that request, before the next one (so it is the next call's ``gap_s``); ``prompt_tokens``
               is accepted for ``input_tokens``. A request whose input is at least the previous request's
               input links it as prefix (the context grew); a shorter one (compaction) shares only the
               shared prefix.
aiperf         JSONL, one request per line, the multi-turn / agentic Mooncake dialect of NVIDIA AIPerf and
               Dynamo: ``input_length`` (or ``input_tokens``), ``output_length`` (``output_tokens``),
               optional ``hash_ids``, ``session_id`` (or ``conversation_id``, ``trajectory_id``),
               ``request_id`` (default: the line number), ``timestamp`` (ms; or ``created_time``),
               ``delay`` (ms; or ``delay_ms``) and ``tool_wait_ms`` (waits after the dependencies),
               ``wait_for`` (request ids; or one ``parent_id``/``parent_request_id``), ``prefix_reset``
               and ``turn_index`` (checked to increase within a session). A request without
               ``wait_for``/``parent_id`` waits for the previous request of its session (AIPerf's
               multi-turn rule). A task is a connected group: a session plus every session linked to it by
               ``wait_for`` (Dynamo's sub-agent trajectories), in file order. ``gap_s = (delay +
               tool_wait_ms) / 1000``, or without either, the time since the latest dependency's
               timestamp. The prefix parent is a dependency whose prompt this one extends (with hash ids:
               whose full blocks it starts with), preferring the same session; ``prefix_reset`` cuts it. A
               header line with ``block_size`` and no ``input_length`` sets the block size.
============== ========================================================================================

**Streaming and memory.** JSONL is read in blocks of lines (parsed by ``pyarrow.json`` when the block is
clean), CSV with ``pyarrow.csv.open_csv``; rows go out in record batches. Formats whose rows are whole tasks
(mooncake, azure, burstgpt without sessions, agent-sessions) use memory bounded by the batch size. Formats
that spread a task over rows (burstgpt with sessions, aiperf) cannot know a task is complete before the
end of the input, so their parsed rows are spooled to a temporary SQLite file and read back grouped and in
start order; Python memory is one entry per session (for aiperf also one per request id, to resolve
``wait_for`` links).
An input whose tasks are not in start order is sorted at the end, in memory (the public traces are sorted).

**Bad input.** A malformed line (not JSON, a missing or non-numeric field, a non-positive token count, a
wrong number of hash ids) raises :class:`BadInputError` naming the file and the 1-based line. With
``skip_bad=True`` it is skipped and counted (:class:`ImportReport`).
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import io
import json
import math
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from agentsim.traces.schema import (
    BATCH_ROWS,
    COLUMN_NAMES,
    DEFAULT_BLOCK_SIZE,
    TableBuilder,
    TraceError,
    TraceTask,
    atomic_output,
    single_call_table,
    trace_schema,
)
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate

FORMATS = ("mooncake", "azure", "burstgpt", "agent-sessions", "aiperf")
"""Source formats :func:`import_trace` understands."""

LINES_PER_BLOCK = 16_384
"""JSONL lines parsed per block."""

CSV_BLOCK_BYTES = 4 << 20
"""CSV bytes parsed per block."""

MAX_LISTED_BAD = 20
"""Bad lines whose numbers an :class:`ImportReport` keeps."""


class BadInputError(TraceError):
    """A line of a source file that cannot be imported: ``path``, 1-based ``line`` and the reason."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass
class ImportReport:
    """What an import did."""

    format: str
    source: str
    out: str
    lines: int = 0
    calls: int = 0
    tasks: int = 0
    skipped_bad: int = 0
    bad_lines: list[int] = field(default_factory=list)
    dropped_failed: int = 0
    sorted_in_memory: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dict(self.__dict__)


class _Bad:
    """Bad-line policy: raise, or skip and count."""

    def __init__(self, path: str, skip: bool, report: ImportReport) -> None:
        self.path = path
        self.skip = skip
        self.report = report

    def __call__(self, line: int, reason: str) -> None:
        if not self.skip:
            raise BadInputError(self.path, line, reason)
        self.report.skipped_bad += 1
        if len(self.report.bad_lines) < MAX_LISTED_BAD:
            self.report.bad_lines.append(line)


# --------------------------------------------------------------------------- the sink


class _Sink:
    """Numbers tasks and calls in arrival order and writes canonical batches to a Parquet file.

    If a task arrives that starts before the previous one, writing goes on, and :meth:`finish` re-reads the
    file, sorts it by task start and renumbers ids (in memory: a fallback for unsorted inputs).
    """

    def __init__(self, path: Path, source: str, block_size: int, batch_rows: int) -> None:
        self.path = path
        self.schema = trace_schema(source=source, block_size_tokens=block_size)
        self.block_size = block_size
        self.writer: Any = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self.builder = TableBuilder(batch_rows)
        self.next_task = 0
        self.next_call = 0
        self.last_start = -math.inf
        self.sorted = True

    def _see(self, first: float, last: float, monotone: bool) -> None:
        if not monotone or first < self.last_start:
            self.sorted = False
        self.last_start = max(self.last_start, last)

    def add_single_calls(
        self, release: np.ndarray, prompt: np.ndarray, output: np.ndarray, hash_ids: Any, workload: Any
    ) -> None:
        """Single-call tasks, one per element (vectorized). ``hash_ids``: a list array or ``None``;
        ``workload``: one label or an array of labels."""
        n = len(release)
        if n == 0:
            return
        self._flush()
        self._see(float(release[0]), float(np.max(release)), bool(np.all(np.diff(release) >= 0)))
        ids = np.arange(self.next_call, self.next_call + n, dtype=np.int64)
        tids = np.arange(self.next_task, self.next_task + n, dtype=np.int64)
        self.next_call += n
        self.next_task += n
        table = single_call_table(tids, ids, release, prompt, output, workload, hash_ids).replace_schema_metadata(
            self.schema.metadata
        )
        self.writer.write_table(table)

    def add_task(
        self,
        template: TaskTemplate,
        releases: list[float | None],
        hashes: list[tuple[int, ...] | None] | None = None,
    ) -> None:
        """One task (already validated by the importer)."""
        n = len(template.calls)
        r0 = releases[0]
        assert r0 is not None
        start = r0 - template.calls[0].gap_s
        self._see(start, start, True)
        ids = tuple(range(self.next_call, self.next_call + n))
        task = TraceTask(self.next_task, start, template, ids, tuple(releases), tuple(hashes or (None,) * n))
        self.next_call += n
        self.next_task += 1
        self.builder.add_task(task)
        if self.builder.full():
            self._flush()

    def _flush(self) -> None:
        if len(self.builder):
            self.writer.write_table(self.builder.take().cast(self.schema))

    def finish(self) -> tuple[int, int]:
        """Close the file (sorting it if needed); returns ``(tasks, calls)``."""
        self._flush()
        self.writer.close()
        if not self.sorted:
            _sort_in_place(self.path, self.schema)
        return self.next_task, self.next_call


def _sort_in_place(path: Path, schema: pa.Schema) -> None:
    """Re-order a canonical file by task start (stable), renumbering task and call ids (dependencies and
    prefix links follow). Call ids written by :class:`_Sink` are ``0..n-1`` in file order."""
    t = pq.read_table(str(path))
    n = t.num_rows
    task = t.column("task_id").to_numpy()
    index = t.column("call_index").to_numpy()
    first = np.flatnonzero(index == 0)
    starts = t.column("release_s").to_numpy(zero_copy_only=False)[first] - t.column("gap_s").to_numpy()[first]
    task_start = np.empty(int(task.max()) + 1)
    task_start[task[first]] = starts
    order = np.lexsort((np.arange(n), task_start[task]))
    t = t.take(pa.array(order))
    new_call = np.empty(n, dtype=np.int64)
    new_call[order] = np.arange(n)  # old id (= old row) -> new id (= new row)
    new_task_of = np.empty(len(task_start), dtype=np.int64)
    sorted_tasks = t.column("task_id").to_numpy()
    firsts = np.flatnonzero(t.column("call_index").to_numpy() == 0)
    new_task_of[sorted_tasks[firsts]] = np.arange(len(firsts))

    def remap_list(col: Any) -> Any:
        arr = col.combine_chunks()
        vals = new_call[arr.values.to_numpy()] if len(arr.values) else np.zeros(0, dtype=np.int64)
        return pa.ListArray.from_arrays(arr.offsets, pa.array(vals, pa.int64()), mask=arr.is_null())

    prefix = t.column("prefix_call_id").combine_chunks()
    pvals = prefix.fill_null(0).to_numpy()
    cols = {
        "task_id": pa.array(new_task_of[sorted_tasks]),
        "call_id": pa.array(np.arange(n, dtype=np.int64)),
        "deps": remap_list(t.column("deps")),
        "prefix_call_id": pa.array(new_call[pvals], mask=prefix.is_null().to_numpy(zero_copy_only=False)),
    }
    out = pa.Table.from_arrays(
        [cols.get(name, t.column(name)) for name in COLUMN_NAMES], names=list(COLUMN_NAMES)
    ).cast(schema)
    pq.write_table(out, str(path), compression="zstd", row_group_size=BATCH_ROWS)


# --------------------------------------------------------------------------- reading helpers


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _line_blocks(path: Path, max_lines: int = LINES_PER_BLOCK) -> Iterator[tuple[list[int], list[bytes]]]:
    """Non-blank lines of a text file in blocks: ``(1-based line numbers, lines without newline)``."""
    lineno = 0
    nums: list[int] = []
    lines: list[bytes] = []
    with _open_binary(path) as f:
        for raw in f:
            lineno += 1
            s = raw.strip()
            if not s:
                continue
            nums.append(lineno)
            lines.append(s)
            if len(lines) >= max_lines:
                yield nums, lines
                nums, lines = [], []
    if lines:
        yield nums, lines


def _int_field(obj: dict[str, Any], names: tuple[str, ...], what: str, minimum: int) -> int:
    for name in names:
        if name in obj:
            v = obj[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v != int(v):
                raise ValueError(f"{name} must be an integer, got {v!r}")
            if v < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
            return int(v)
    raise ValueError(f"missing {what} ({' or '.join(names)})")


def _float_field(obj: dict[str, Any], names: tuple[str, ...], minimum: float | None = 0.0) -> float | None:
    for name in names:
        if name in obj and obj[name] is not None:
            v = obj[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name} must be a number, got {v!r}")
            if minimum is not None and v < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
            return float(v)
    return None


def _hash_list(obj: dict[str, Any], prompt: int, block: int) -> tuple[int, ...] | None:
    h = obj.get("hash_ids")
    if h is None:
        return None
    if not isinstance(h, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in h):
        raise ValueError("hash_ids must be a list of integers")
    want = -(-prompt // block)
    if len(h) != want:
        raise ValueError(f"{len(h)} hash_ids for {prompt} input tokens; expected ceil({prompt}/{block}) = {want}")
    return tuple(h)


# --------------------------------------------------------------------------- mooncake


_MOONCAKE_SCHEMA = pa.schema(
    [
        ("timestamp", pa.float64()),
        ("input_length", pa.int64()),
        ("output_length", pa.int64()),
        ("hash_ids", pa.list_(pa.int64())),
    ]
)


def _mooncake_block_python(
    nums: list[int], lines: list[bytes], bad: _Bad, block: int
) -> tuple[list[int], dict[str, list[Any]]]:
    """Slow path for a block pyarrow could not parse: line by line, naming the bad ones."""
    keep: list[int] = []
    cols: dict[str, list[Any]] = {"timestamp": [], "input_length": [], "output_length": [], "hash_ids": []}
    for num, line in zip(nums, lines, strict=True):
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            ts = _float_field(obj, ("timestamp",))
            if ts is None:
                raise ValueError("missing timestamp")
            inp = _int_field(obj, ("input_length",), "input_length", 1)
            out = _int_field(obj, ("output_length",), "output_length", 1)
            hashes = _hash_list(obj, inp, block)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            bad(num, str(e))
            continue
        keep.append(num)
        cols["timestamp"].append(ts)
        cols["input_length"].append(inp)
        cols["output_length"].append(out)
        cols["hash_ids"].append(None if hashes is None else list(hashes))
    return keep, cols


def _import_mooncake(src: Path, sink: _Sink, bad: _Bad, report: ImportReport, workload: str) -> None:
    block = sink.block_size
    opts = pajson.ParseOptions(explicit_schema=_MOONCAKE_SCHEMA, unexpected_field_behavior="ignore")
    for nums, lines in _line_blocks(src):
        report.lines = nums[-1]
        try:
            t = pajson.read_json(io.BytesIO(b"\n".join(lines)), parse_options=opts)
            if t.num_rows != len(lines):
                raise pa.ArrowInvalid("row count mismatch")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            keep, cols = _mooncake_block_python(nums, lines, bad, block)
            t = pa.table(cols, schema=_MOONCAKE_SCHEMA)
            nums = keep
        if t.num_rows == 0:
            continue
        t = t.combine_chunks()
        ts = t.column("timestamp").to_numpy(zero_copy_only=False)
        inp = t.column("input_length").to_numpy(zero_copy_only=False)
        out = t.column("output_length").to_numpy(zero_copy_only=False)
        h = t.column("hash_ids").chunk(0) if t.column("hash_ids").num_chunks else pa.nulls(0, pa.list_(pa.int64()))
        hlen = pc.list_value_length(h).to_numpy(zero_copy_only=False)
        checks = [
            (t.column("timestamp").is_null().to_numpy(zero_copy_only=False), "missing timestamp"),
            (t.column("input_length").is_null().to_numpy(zero_copy_only=False), "missing input_length"),
            (t.column("output_length").is_null().to_numpy(zero_copy_only=False), "missing output_length"),
        ]
        with np.errstate(invalid="ignore"):
            checks += [
                (~np.isfinite(ts) | (ts < 0), "timestamp must be a finite number >= 0"),
                (inp < 1, "input_length must be >= 1"),
                (out < 1, "output_length must be >= 1"),
            ]
            want = -(-np.nan_to_num(inp, nan=0).astype(np.int64) // block)
            checks.append(
                (
                    ~np.isnan(hlen.astype(np.float64)) & (hlen != want),
                    f"number of hash_ids != ceil(input_length/{block})",
                )
            )
        ok = np.ones(len(ts), dtype=bool)
        for mask, reason in checks:
            m = np.asarray(mask, dtype=bool) & ok
            for i in np.flatnonzero(m):
                bad(nums[i], reason if "hash" not in reason else f"{int(hlen[i])} hash_ids, expected {int(want[i])}")
            ok &= ~m
        if not ok.all():
            idx = pa.array(np.flatnonzero(ok))
            t = t.take(idx)
            ts, inp, out = ts[ok], inp[ok], out[ok]
            h = h.take(idx)
        sink.add_single_calls(ts / 1000.0, inp.astype(np.int64), out.astype(np.int64), h, workload)


# --------------------------------------------------------------------------- CSV helpers


class _CsvLines:
    """Maps row positions of a streamed CSV to file lines, given the lines pyarrow skipped (blank, malformed)."""

    def __init__(self) -> None:
        self.skipped: list[int] = []
        self.rows = 0  # good rows seen before the current batch

    def line(self, row: int) -> int:
        """1-based file line of the ``row``-th good data row (0-based, over the file)."""
        k = 0
        while True:
            line = 2 + row + k
            k2 = bisect.bisect_right(self.skipped, line)
            if k2 == k:
                return line
            k = k2


def _csv_batches(src: Path, columns: list[str], bad: _Bad, lines: _CsvLines) -> Iterator[tuple[Any, np.ndarray]]:
    """Record batches of ``columns`` (as strings) with a mask of the rows to use (blank lines excluded).

    A row with the wrong number of fields goes through ``bad``; pyarrow cannot raise from its row handler,
    so the handler returns "error" and the recorded :class:`BadInputError` is raised here instead.
    """
    pending: list[BadInputError] = []

    def handler(row: Any) -> str:
        line = int(row.number)
        lines.skipped.append(line)
        if not row.text.strip():
            return "skip"
        reason = f"expected {row.expected_columns} columns, found {row.actual_columns}"
        if not bad.skip:
            pending.append(BadInputError(bad.path, line, reason))
            return "error"
        bad(line, reason)
        return "skip"

    read = pacsv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(invalid_row_handler=handler, ignore_empty_lines=False)
    conv = pacsv.ConvertOptions(
        include_columns=columns, column_types={c: pa.string() for c in columns}, strings_can_be_null=False
    )
    try:
        reader = pacsv.open_csv(str(src), read_options=read, parse_options=parse, convert_options=conv)
        for batch in reader:
            blank = np.ones(batch.num_rows, dtype=bool)
            for c in columns:
                blank &= pc.equal(batch.column(c), "").to_numpy(zero_copy_only=False)
            yield batch, ~blank
    except (pa.ArrowInvalid, pa.ArrowKeyError) as e:
        if pending:
            raise pending[0] from None
        raise BadInputError(str(src), 1 + lines.rows + len(lines.skipped), f"cannot parse the CSV: {e}") from None


def _csv_header(src: Path) -> list[str]:
    with _open_binary(src) as f:
        first = f.readline().decode("utf-8-sig", errors="replace").strip()
    return [c.strip().strip('"') for c in first.split(",")]


_INT_RE = r"^\s*[+-]?\d+(\.0*)?\s*$"
_NUM_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


def _first_failures(
    checks: list[tuple[np.ndarray, str]], used: np.ndarray, report: Callable[[int, str], None]
) -> np.ndarray:
    """The rows of a batch that pass every check, in order; each failing row is reported once, with the reason
    of the first check it fails."""
    ok = used.copy()
    for mask, reason in checks:
        m = mask & ok
        for i in np.flatnonzero(m):
            report(int(i), reason)
        ok &= ~m
    return ok


def _parse_ints(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """A string column as int64 and a validity mask (vectorized)."""
    ok = pc.match_substring_regex(arr, _INT_RE).to_numpy(zero_copy_only=False)
    vals = pc.cast(pc.if_else(pa.array(ok), arr, pa.scalar("0")), pa.float64()).to_numpy(zero_copy_only=False)
    return vals.astype(np.int64), ok


def _parse_floats(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    ok = pc.match_substring_regex(arr, _NUM_RE).to_numpy(zero_copy_only=False)
    vals = pc.cast(pc.if_else(pa.array(ok), arr, pa.scalar("0")), pa.float64()).to_numpy(zero_copy_only=False)
    return vals, ok


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
            vals, ok = _parse_floats(arr)
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


# --------------------------------------------------------------------------- azure


def _import_azure(src: Path, sink: _Sink, bad: _Bad, report: ImportReport, workload: str) -> None:
    header = _csv_header(src)
    need = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    missing = [c for c in need if c not in header]
    if missing:
        raise BadInputError(str(src), 1, f"not an Azure LLM inference CSV: missing column(s) {', '.join(missing)}")
    lines = _CsvLines()
    stamps = _Timestamps()
    for batch, used in _csv_batches(src, need, bad, lines):
        n = batch.num_rows
        if n == 0:
            continue
        t = stamps.parse(batch.column("TIMESTAMP"))
        ctx, ok_c = _parse_ints(batch.column("ContextTokens"))
        gen, ok_g = _parse_ints(batch.column("GeneratedTokens"))
        checks = [
            (np.isnan(t), "TIMESTAMP is not a timestamp"),
            (~ok_c | (ctx < 1), "ContextTokens must be an integer >= 1"),
            (~ok_g | (gen < 1), "GeneratedTokens must be an integer >= 1"),
        ]
        ok = _first_failures(checks, used, lambda i, reason: bad(lines.line(lines.rows + i), reason))
        lines.rows += n
        sink.add_single_calls(t[ok], ctx[ok], gen[ok], None, workload)
    report.lines = lines.line(max(lines.rows - 1, 0)) if lines.rows else 1


# --------------------------------------------------------------------------- spool for multi-row tasks


class _Spool:
    """Rows of multi-row tasks, on disk, read back grouped by task and in task-start order.

    ``add(group, t, seq, payload)``: ``group`` a small int (one per source session), ``t`` the row's time
    (or NaN), ``seq`` its input order, ``payload`` any JSON value. ``union(a, b)`` merges two groups into
    one task. :meth:`tasks` yields each task's payloads ordered by ``(t, seq)`` (or ``seq`` alone), tasks
    ordered by their earliest ``t``.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "spool.sqlite"
        self.db = sqlite3.connect(str(self.path))
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-16000")
        self.db.execute("CREATE TABLE rows (grp INTEGER, t REAL, seq INTEGER, data TEXT)")
        self.buf: list[tuple[int, float | None, int, str]] = []
        self.parent: list[int] = []

    def group(self) -> int:
        """A new group id."""
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        p = self.parent
        root = g
        while p[root] != root:
            root = p[root]
        while p[g] != root:
            p[g], g = root, p[g]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def add(self, grp: int, t: float | None, seq: int, payload: Any) -> None:
        self.buf.append((grp, None if t is None or math.isnan(t) else t, seq, json.dumps(payload)))
        if len(self.buf) >= 50_000:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", self.buf)
            self.buf = []

    def tasks(self, *, by_time: bool) -> Iterator[list[Any]]:
        self._flush()
        db = self.db
        db.execute("CREATE TABLE task (grp INTEGER PRIMARY KEY, task INTEGER)")
        db.executemany("INSERT INTO task VALUES (?, ?)", ((g, self.find(g)) for g in range(len(self.parent))))
        db.execute(
            "CREATE TABLE start AS SELECT k.task AS task, MIN(r.t) AS t0, MIN(r.seq) AS s0 "
            "FROM rows r JOIN task k ON r.grp = k.grp GROUP BY k.task"
        )
        db.execute("CREATE INDEX start_task ON start (task)")
        inner = "r.t, r.seq" if by_time else "r.seq"
        cur = db.execute(
            "SELECT k.task, r.data FROM rows r JOIN task k ON r.grp = k.grp JOIN start s ON s.task = k.task "
            f"ORDER BY COALESCE(s.t0, 0.0), s.s0, {inner}"
        )
        current: int | None = None
        rows: list[Any] = []
        for task, data in cur:
            if task != current:
                if rows:
                    yield rows
                rows = []
                current = task
            rows.append(json.loads(data))
        if rows:
            yield rows

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------- burstgpt


_SESSION_COLUMNS = ("Session ID", "SessionID", "Session Id", "session_id", "Session")
_ELAPSED_COLUMNS = ("Elapsed time", "Elapsed Time", "ElapsedTime", "elapsed_time")


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "burstgpt"


def _import_burstgpt(src: Path, sink: _Sink, bad: _Bad, report: ImportReport, workload: str | None, tmp: Path) -> None:
    header = _csv_header(src)
    need = ["Timestamp", "Request tokens", "Response tokens"]
    missing = [c for c in need if c not in header]
    if missing:
        raise BadInputError(str(src), 1, f"not a BurstGPT CSV: missing column(s) {', '.join(missing)}")
    session_col = next((c for c in _SESSION_COLUMNS if c in header), None)
    elapsed_col = next((c for c in _ELAPSED_COLUMNS if c in header), None)
    optional = [c for c in ("Model", "Log Type") if c in header]
    cols = need + optional + [c for c in (session_col, elapsed_col) if c]
    lines = _CsvLines()
    spool = _Spool(tmp) if session_col else None
    sessions: dict[str, int] = {}
    seq = 0
    for batch, used in _csv_batches(src, cols, bad, lines):
        n = batch.num_rows
        if n == 0:
            continue
        t, ok_t = _parse_floats(batch.column("Timestamp"))
        req, ok_r = _parse_ints(batch.column("Request tokens"))
        resp, ok_s = _parse_ints(batch.column("Response tokens"))
        el = np.zeros(n)
        ok_e = np.ones(n, dtype=bool)
        if elapsed_col:
            el_raw = batch.column(elapsed_col)
            el, ok_e = _parse_floats(el_raw)
            empty = pc.equal(pc.utf8_trim_whitespace(el_raw), "").to_numpy(zero_copy_only=False)
            ok_e |= empty
            el = np.where(empty, 0.0, el)
        model = batch.column("Model").to_pylist() if "Model" in optional else [""] * n
        log = batch.column("Log Type").to_pylist() if "Log Type" in optional else [""] * n
        labels = [workload or _slug(f"{m} {lt}") for m, lt in zip(model, log, strict=True)]
        failed = ok_s & (resp == 0)
        checks = [
            (~ok_t | (t < 0), "Timestamp must be a number >= 0"),
            (~ok_r | (req < 1), "Request tokens must be an integer >= 1"),
            (~ok_s | (resp < 0), "Response tokens must be an integer >= 0"),
            (~ok_e | (el < 0), "Elapsed time must be a number >= 0"),
        ]
        ok = _first_failures(checks, used, lambda i, reason: bad(lines.line(lines.rows + i), reason))
        report.dropped_failed += int((failed & ok).sum())
        ok &= ~failed
        sess = batch.column(session_col).to_pylist() if session_col else None
        if spool is None or sess is None:
            idx = np.flatnonzero(ok)
            sink.add_single_calls(t[idx], req[idx], resp[idx], None, [labels[i] for i in idx])
        else:
            for i in np.flatnonzero(ok):
                key = str(sess[i]).strip()
                line = lines.line(lines.rows + int(i))
                if not key:
                    g = spool.group()
                else:
                    g = sessions.get(key, -1)
                    if g < 0:
                        g = sessions[key] = spool.group()
                spool.add(g, float(t[i]), seq, [float(t[i]), int(req[i]), int(resp[i]), float(el[i]), labels[i], line])
                seq += 1
        lines.rows += n
    report.lines = lines.line(max(lines.rows - 1, 0)) if lines.rows else 1
    if spool is None:
        return
    try:
        for rows in spool.tasks(by_time=True):
            calls: list[CallTemplate] = []
            releases: list[float | None] = []
            prev_t = prev_el = 0.0
            for k, (tk, prompt, output, elapsed, _label, _line) in enumerate(rows):
                if k == 0:
                    calls.append(CallTemplate(prompt, output))
                else:
                    gap = max(0.0, tk - (prev_t + prev_el))
                    parent = k - 1 if prompt >= calls[k - 1].prompt_tokens else ROOT
                    calls.append(CallTemplate(prompt, output, (k - 1,), gap, parent))
                releases.append(tk)
                prev_t, prev_el = tk, elapsed
            sink.add_task(TaskTemplate(rows[0][4], tuple(calls)), releases)
    finally:
        spool.close()


# --------------------------------------------------------------------------- agent sessions


def _import_agent_sessions(src: Path, sink: _Sink, bad: _Bad, report: ImportReport, workload: str) -> None:
    for nums, lines in _line_blocks(src):
        report.lines = nums[-1]
        for num, line in zip(nums, lines, strict=True):
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("expected a JSON object (one session per line)")
                start = _float_field(obj, ("start_s",))
                if start is None:
                    ms = _float_field(obj, ("timestamp",))
                    if ms is None:
                        raise ValueError("missing start_s (s) or timestamp (ms)")
                    start = ms / 1000.0
                label = obj.get("workload", workload)
                if not isinstance(label, str) or not label:
                    raise ValueError("workload must be a non-empty string")
                shared = _int_field(obj, ("shared_prefix_tokens",), "", 0) if "shared_prefix_tokens" in obj else 0
                reqs = obj.get("requests")
                if not isinstance(reqs, list) or not reqs:
                    raise ValueError("requests must be a non-empty list")
                calls: list[CallTemplate] = []
                gap = 0.0
                for k, r in enumerate(reqs):
                    if not isinstance(r, dict):
                        raise ValueError(f"requests[{k}] must be an object")
                    try:
                        prompt = _int_field(r, ("input_tokens", "prompt_tokens"), "input_tokens", 1)
                        output = _int_field(r, ("output_tokens",), "output_tokens", 1)
                        tool = _float_field(r, ("tool_s",))
                        if tool is None:
                            tool_ms = _float_field(r, ("tool_ms",))
                            tool = 0.0 if tool_ms is None else tool_ms / 1000.0
                    except ValueError as e:
                        raise ValueError(f"requests[{k}]: {e}") from None
                    if prompt < shared:
                        raise ValueError(f"requests[{k}]: input_tokens {prompt} < shared_prefix_tokens {shared}")
                    if k == 0:
                        calls.append(CallTemplate(prompt, output))
                    else:
                        parent = k - 1 if prompt >= calls[k - 1].prompt_tokens else ROOT
                        calls.append(CallTemplate(prompt, output, (k - 1,), gap, parent, gap_is_tool=True))
                    gap = tool
                template = TaskTemplate(label, tuple(calls), shared)
                template.validate()
            except ValueError as e:
                bad(num, str(e))
                continue
            sink.add_task(template, [start] + [None] * (len(calls) - 1))


# --------------------------------------------------------------------------- aiperf / dynamo agentic


def _first(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        if n in obj and obj[n] is not None:
            return obj[n]
    return None


def _id(v: Any, what: str) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ValueError(f"{what} must be a string or an integer, got {v!r}")
    return str(v)


def _import_aiperf(src: Path, sink: _Sink, bad: _Bad, report: ImportReport, workload: str, tmp: Path) -> None:
    spool = _Spool(tmp)
    sessions: dict[str, int] = {}
    last_turn: dict[str, int] = {}
    request_group: dict[str, int] = {}
    block = sink.block_size
    seq = 0
    seen_rows = False
    try:
        for nums, lines in _line_blocks(src):
            report.lines = nums[-1]
            for num, line in zip(nums, lines, strict=True):
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("expected a JSON object")
                    if not seen_rows and "block_size" in obj and "input_length" not in obj:
                        b = obj["block_size"]
                        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                            raise ValueError(f"header block_size must be an integer >= 1, got {b!r}")
                        if b != block:
                            raise ValueError(
                                f"header block_size {b} differs from the import's block size {block} (pass it)"
                            )
                        continue
                    prompt = _int_field(obj, ("input_length", "input_tokens"), "input_length", 1)
                    output = _int_field(obj, ("output_length", "output_tokens"), "output_length", 1)
                    hashes = _hash_list(obj, prompt, block)
                    rid_raw = _first(obj, ("request_id", "id"))
                    rid = f"line:{num}" if rid_raw is None else _id(rid_raw, "request_id")
                    sid_raw = _first(obj, ("session_id", "conversation_id", "trajectory_id"))
                    sid = None if sid_raw is None else _id(sid_raw, "session_id")
                    ts = _float_field(obj, ("timestamp", "created_time"))
                    delay = _float_field(obj, ("delay", "delay_ms"))
                    tool = _float_field(obj, ("tool_wait_ms",))
                    wait = _first(obj, ("wait_for",))
                    if wait is None:
                        parent = _first(obj, ("parent_id", "parent_request_id"))
                        wait = None if parent is None else [parent]
                    if wait is not None:
                        if not isinstance(wait, list):
                            raise ValueError("wait_for must be a list of request ids")
                        wait = [_id(w, "wait_for entry") for w in wait]
                    reset = bool(obj.get("prefix_reset", False))
                    turn = obj.get("turn_index", obj.get("turn"))
                    if turn is not None and sid is not None:
                        if isinstance(turn, bool) or not isinstance(turn, int):
                            raise ValueError(f"turn_index must be an integer, got {turn!r}")
                        if sid in last_turn and turn <= last_turn[sid]:
                            raise ValueError(
                                f"turn_index {turn} of session {sid} after turn {last_turn[sid]}: a session's "
                                "rows must be in turn order"
                            )
                    if rid in request_group:
                        raise ValueError(f"duplicate request_id {rid}")
                    for w in wait or ():
                        if w not in request_group:
                            raise ValueError(f"wait_for names request {w}, which is not on an earlier line")
                except ValueError as e:
                    bad(num, str(e))
                    continue
                seen_rows = True
                if sid is None:
                    g = spool.group()
                else:
                    g = sessions.get(sid, -1)
                    if g < 0:
                        g = sessions[sid] = spool.group()
                    if turn is not None:
                        last_turn[sid] = turn
                for w in wait or ():
                    spool.union(g, request_group[w])
                request_group[rid] = g
                wait_ms = None if delay is None and tool is None else (delay or 0.0) + (tool or 0.0)
                payload = [
                    num,
                    rid,
                    sid,
                    prompt,
                    output,
                    None if hashes is None else list(hashes),
                    ts,
                    wait_ms,
                    wait,
                    reset,
                    tool is not None and tool > 0,
                ]
                spool.add(g, None if ts is None else ts, seq, payload)
                seq += 1
        for rows in spool.tasks(by_time=False):
            _aiperf_task(rows, sink, bad, workload, block)
    finally:
        spool.close()


def _aiperf_task(rows: list[Any], sink: _Sink, bad: _Bad, workload: str, block: int) -> None:
    """One connected group of aiperf rows (file order) -> one task; rows with broken links are skipped."""
    calls: list[CallTemplate] = []
    releases: list[float | None] = []
    hashes: list[tuple[int, ...] | None] = []
    index: dict[str, int] = {}
    session_of: list[str | None] = []
    last_in_session: dict[str | None, int] = {}
    stamps: list[float | None] = []
    start = 0.0
    for num, rid, sid, prompt, output, h, ts, wait_ms, wait, reset, is_tool in rows:
        if wait is None:
            deps = [last_in_session[sid]] if sid is not None and sid in last_in_session else []
        else:
            missing = [w for w in wait if w not in index]
            if missing:
                bad(num, f"wait_for names request {missing[0]}, which was skipped")
                continue
            deps = sorted({index[w] for w in wait})
        if not calls and deps:
            deps = []
        k = len(calls)
        if wait_ms is not None:
            gap = wait_ms / 1000.0
        elif ts is not None and deps and all(stamps[d] is not None for d in deps):
            gap = max(0.0, (ts - max(s for s in (stamps[d] for d in deps) if s is not None)) / 1000.0)
        else:
            gap = 0.0
        parent = ROOT
        if deps and not reset:
            same = [d for d in deps if session_of[d] == sid]
            cands = sorted(same, reverse=True) + [d for d in deps if d not in same]
            if h is not None:
                cands.sort(key=lambda d: -_common(hashes[d], h))
            for d in cands:
                pd = calls[d].prompt_tokens
                if pd > prompt:
                    continue
                hd = hashes[d]
                if h is not None and hd is not None and tuple(h[: pd // block]) != hd[: pd // block]:
                    continue
                parent = d
                break
        release = None if ts is None else ts / 1000.0
        if k == 0:
            gap = 0.0
            start = release = 0.0 if ts is None else ts / 1000.0
        elif not deps:
            # Another root of the task: its gap is its offset from the task start.
            gap = max(0.0, release - start) if release is not None else gap
            release = start + gap
        calls.append(CallTemplate(prompt, output, tuple(deps), gap, parent, gap_is_tool=bool(is_tool and deps)))
        releases.append(release)
        hashes.append(None if h is None else tuple(h))
        index[rid] = k
        session_of.append(sid)
        last_in_session[sid] = k
        stamps.append(ts)
    if not calls:
        return
    sink.add_task(TaskTemplate(workload, tuple(calls)), releases, hashes)


def _common(a: tuple[int, ...] | None, b: list[int]) -> int:
    if a is None:
        return 0
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# --------------------------------------------------------------------------- entry point


def import_trace(
    fmt: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    skip_bad: bool = False,
    overwrite: bool = False,
    workload: str | None = None,
    block_size_tokens: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Import ``src`` (format ``fmt``, one of :data:`FORMATS`) into a canonical trace at ``out``.

    ``workload`` labels every task (default: the format's name; BurstGPT: model and log type).
    ``block_size_tokens`` is the size of the blocks behind ``hash_ids`` (default 512, Mooncake's). The
    output is written atomically; it is refused if it exists and ``overwrite`` is false.
    """
    if fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    path = Path(src)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    block = DEFAULT_BLOCK_SIZE if block_size_tokens is None else int(block_size_tokens)
    if block < 1:
        raise TraceError(f"block size must be >= 1, got {block}")
    report = ImportReport(fmt, str(path), str(out))
    bad = _Bad(str(path), skip_bad, report)
    t0 = time.perf_counter()
    label = workload or fmt
    with atomic_output(out, overwrite=overwrite) as tmp, tempfile.TemporaryDirectory(dir=Path(out).parent) as work:
        sink = _Sink(tmp, f"{fmt}:{path.name}", block, batch_rows)
        runners: dict[str, Callable[[], None]] = {
            "mooncake": lambda: _import_mooncake(path, sink, bad, report, label),
            "azure": lambda: _import_azure(path, sink, bad, report, label),
            "burstgpt": lambda: _import_burstgpt(path, sink, bad, report, workload, Path(work)),
            "agent-sessions": lambda: _import_agent_sessions(path, sink, bad, report, label),
            "aiperf": lambda: _import_aiperf(path, sink, bad, report, label, Path(work)),
        }
        try:
            runners[fmt]()
        except UnicodeDecodeError as e:
            raise BadInputError(str(path), report.lines + 1, f"not UTF-8 text ({e.reason})") from None
        except BaseException:
            sink.writer.close()
            raise
        report.sorted_in_memory = not sink.sorted
        report.tasks, report.calls = sink.finish()
        if report.calls == 0:
            raise TraceError(f"{path}: no importable rows")
    report.seconds = time.perf_counter() - t0
    return report
