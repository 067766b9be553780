"""What every importer shares: the sink that writes canonical rows, bad-row bookkeeping, block readers, field
parsers and the on-disk spool for tasks spread over many rows.

An importer (one module per source format in this package) reads its source in blocks (:func:`line_blocks` for
JSONL, :func:`csv_batches` for CSV), validates each row with the field parsers, reports a row it cannot use to
:class:`BadRows` (which raises :class:`BadInputError` or, with ``skip_bad``, counts it in the
:class:`ImportReport`), and hands tasks to a :class:`Sink`, which numbers tasks and calls in arrival order
and writes canonical record batches. Formats whose tasks span rows that may be far apart in the file park the
rows in a :class:`Spool` (a temporary SQLite file) and read them back grouped by task, in start order.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import json
import math
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from agentsim.spec.base import MAX_COUNT
from agentsim.traces.schema import BATCH_ROWS, COLUMN_NAMES, TraceError, TraceTask, trace_schema
from agentsim.traces.tables import TableBuilder, single_call_table
from agentsim.workload.taskgraph import TaskTemplate

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


class BadRows:
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


class Sink:
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
            sort_in_place(self.path, self.schema)
        return self.next_task, self.next_call


def sort_in_place(path: Path, schema: pa.Schema) -> None:
    """Re-order a canonical file by task start (stable), renumbering task and call ids (dependencies and
    prefix links follow). Call ids written by :class:`Sink` are ``0..n-1`` in file order."""
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


def open_binary(path: Path) -> IO[bytes]:
    """``path`` opened for reading bytes, decompressed on the fly when it ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def line_blocks(path: Path, max_lines: int = LINES_PER_BLOCK) -> Iterator[tuple[list[int], list[bytes]]]:
    """Non-blank lines of a text file in blocks: ``(1-based line numbers, lines without newline)``."""
    lineno = 0
    nums: list[int] = []
    lines: list[bytes] = []
    with open_binary(path) as f, _corrupt_gzip(path, lambda: lineno):
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


@contextlib.contextmanager
def _corrupt_gzip(path: Path, line: Callable[[], int]) -> Iterator[None]:
    """A truncated or corrupt ``.gz`` (or a file named ``.gz`` that is not gzip) as a :class:`TraceError` naming
    the file and the last line read, not a decompressor's traceback."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise TraceError(f"{path}: corrupt or truncated gzip data after line {line()} ({e})") from None


def int_field(obj: dict[str, Any], names: tuple[str, ...], what: str, minimum: int) -> int:
    """The first of ``names`` present in ``obj``, an integer >= ``minimum``; ``ValueError`` naming the field
    (``what`` when none is present)."""
    for name in names:
        if name in obj:
            v = obj[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v != int(v):
                raise ValueError(f"{name} must be an integer, got {v!r}")
            if v < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
            if v > MAX_COUNT:
                raise ValueError(f"{name} must be <= 2**53, got {v!r}")
            return int(v)
    raise ValueError(f"missing {what} ({' or '.join(names)})")


def float_field(obj: dict[str, Any], names: tuple[str, ...], minimum: float | None = 0.0) -> float | None:
    """The first of ``names`` present and not null in ``obj``, a finite number >= ``minimum`` (``None`` when
    none is); ``ValueError`` naming the field."""
    for name in names:
        if name in obj and obj[name] is not None:
            v = obj[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name} must be a number, got {v!r}")
            if minimum is not None and v < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
            return float(v)
    return None


def hash_list(obj: dict[str, Any], prompt: int, block: int) -> tuple[int, ...] | None:
    """``obj["hash_ids"]`` checked to hold ``ceil(prompt / block)`` integers (``None`` when absent)."""
    h = obj.get("hash_ids")
    if h is None:
        return None
    if not isinstance(h, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in h):
        raise ValueError("hash_ids must be a list of integers")
    want = -(-prompt // block)
    if len(h) != want:
        raise ValueError(f"{len(h)} hash_ids for {prompt} input tokens; expected ceil({prompt}/{block}) = {want}")
    return tuple(h)


# --------------------------------------------------------------------------- CSV helpers


class CsvLines:
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


def csv_batches(src: Path, columns: list[str], bad: BadRows, lines: CsvLines) -> Iterator[tuple[Any, np.ndarray]]:
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


def csv_header(src: Path) -> list[str]:
    """The column names on the first line of a CSV file."""
    with open_binary(src) as f:
        first = f.readline().decode("utf-8-sig", errors="replace").strip()
    return [c.strip().strip('"') for c in first.split(",")]


_INT_RE = r"^\s*[+-]?\d+(\.0*)?\s*$"
_NUM_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


def first_failures(
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


def parse_ints(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """A string column as int64 and a validity mask (vectorized)."""
    ok = pc.match_substring_regex(arr, _INT_RE).to_numpy(zero_copy_only=False)
    vals = pc.cast(pc.if_else(pa.array(ok), arr, pa.scalar("0")), pa.float64()).to_numpy(zero_copy_only=False)
    ok &= np.abs(vals) <= MAX_COUNT  # past int64 (or past any real count): a bad row, not an overflow
    return np.where(ok, vals, 0.0).astype(np.int64), ok


def parse_floats(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """A string column as float64 and a validity mask (vectorized)."""
    ok = pc.match_substring_regex(arr, _NUM_RE).to_numpy(zero_copy_only=False)
    vals = pc.cast(pc.if_else(pa.array(ok), arr, pa.scalar("0")), pa.float64()).to_numpy(zero_copy_only=False)
    return vals, ok


# --------------------------------------------------------------------------- spool for multi-row tasks


class Spool:
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
        """The group ``g`` has been merged into (union-find root, with path compression)."""
        p = self.parent
        root = g
        while p[root] != root:
            root = p[root]
        while p[g] != root:
            p[g], g = root, p[g]
        return root

    def union(self, a: int, b: int) -> None:
        """Merge groups ``a`` and ``b`` into one task."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def add(self, grp: int, t: float | None, seq: int, payload: Any) -> None:
        """Park one row (see the class docstring)."""
        self.buf.append((grp, None if t is None or math.isnan(t) else t, seq, json.dumps(payload)))
        if len(self.buf) >= 50_000:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", self.buf)
            self.buf = []

    def tasks(self, *, by_time: bool) -> Iterator[list[Any]]:
        """Each task's payloads, rows by ``(t, seq)`` (``by_time``) or ``seq``, tasks by their earliest ``t``."""
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
        """Close the database (the caller removes its directory)."""
        self.db.close()
