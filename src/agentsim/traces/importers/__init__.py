"""Importers: production and benchmark trace formats into the canonical trace schema.

Each importer reads one source format and writes a canonical trace (:mod:`agentsim.traces.schema`) through
the same table builder that synthetic generation uses; :func:`import_trace` picks it by name. One module per
format, whose docstring says what the format holds and how it is mapped:

================== ====================================================================================
format             module
================== ====================================================================================
``mooncake``       :mod:`~agentsim.traces.importers.mooncake`: Mooncake JSONL with block hashes
``azure``          :mod:`~agentsim.traces.importers.azure`: Azure LLM inference CSV, 2023 and 2024
``burstgpt``       :mod:`~agentsim.traces.importers.burstgpt`: BurstGPT CSV, sessions when it has them
``agent-sessions`` :mod:`~agentsim.traces.importers.sessions`: agentsim's JSONL for agent logs
``aiperf``         :mod:`~agentsim.traces.importers.aiperf`: AIPerf/Dynamo multi-turn and agentic JSONL
================== ====================================================================================

What they share (the sink, bad-row bookkeeping, block readers, field parsers, the spool) is in
:mod:`~agentsim.traces.importers.common`.

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

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agentsim.files import atomic_path
from agentsim.traces.importers.aiperf import header_block_size, import_aiperf
from agentsim.traces.importers.azure import import_azure
from agentsim.traces.importers.burstgpt import import_burstgpt
from agentsim.traces.importers.common import BadInputError, BadRows, ImportReport, Sink
from agentsim.traces.importers.mooncake import import_mooncake
from agentsim.traces.importers.sessions import import_agent_sessions
from agentsim.traces.io import check_output_parent
from agentsim.traces.schema import BATCH_ROWS, DEFAULT_BLOCK_SIZE, OutputExistsError, TraceError

__all__ = ["FORMATS", "BadInputError", "ImportReport", "import_trace"]

FORMATS = ("mooncake", "azure", "burstgpt", "agent-sessions", "aiperf")
"""Source formats :func:`import_trace` understands."""


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
    ``block_size_tokens`` is the size of the blocks behind ``hash_ids`` (default: an aiperf file's header, else
    512, Mooncake's). The
    output is written atomically; it is refused if it exists and ``overwrite`` is false.
    """
    if fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    path = Path(src)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    if block_size_tokens is None and fmt == "aiperf":
        block_size_tokens = header_block_size(path)  # a header line says what its hash ids mean
    block = DEFAULT_BLOCK_SIZE if block_size_tokens is None else int(block_size_tokens)
    if block < 1:
        raise TraceError(f"block size must be >= 1, got {block}")
    report = ImportReport(fmt, str(path), str(out))
    bad = BadRows(str(path), skip_bad, report)
    t0 = time.perf_counter()
    label = workload or fmt
    check_output_parent(out)
    with (
        atomic_path(out, overwrite=overwrite, exists_error=OutputExistsError) as tmp,
        # Named like atomic_path's temporaries (pid inside), so one left by a killed import is cleaned later.
        tempfile.TemporaryDirectory(prefix=f".{Path(out).name}.{os.getpid()}.", suffix=".tmp", dir=Path(out).parent)
        as work,
    ):
        sink = Sink(tmp, f"{fmt}:{path.name}", block, batch_rows)
        runners: dict[str, Callable[[], None]] = {
            "mooncake": lambda: import_mooncake(path, sink, bad, report, label),
            "azure": lambda: import_azure(path, sink, bad, report, label),
            "burstgpt": lambda: import_burstgpt(path, sink, bad, report, workload, Path(work)),
            "agent-sessions": lambda: import_agent_sessions(path, sink, bad, report, label),
            "aiperf": lambda: import_aiperf(path, sink, bad, report, label, Path(work)),
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
