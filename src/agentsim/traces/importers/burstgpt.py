"""BurstGPT: CSV request logs of ChatGPT and GPT-4 use, optionally with sessions.

Format: ``Timestamp`` (s), ``Model``, ``Request tokens``, ``Response tokens``, ``Total tokens``, ``Log Type``;
newer releases add a session id (``Session ID``/``SessionID``) and ``Elapsed time`` (s, the request's
duration). Mapping: without a session id each row is a single-call task. With one, a session's rows (by
timestamp) form one task, each call depending on the previous one with ``gap_s = t_k - (t_(k-1) +
elapsed_(k-1))`` (or ``t_k - t_(k-1)``, an upper bound, without ``Elapsed time``), clipped at 0; a call links
its predecessor as prefix when its request is at least as long (the conversation context grew). Rows with 0
response tokens are failed requests: dropped and counted. Workload: ``<model>-<log type>`` slugged
(``chatgpt-conversation-log``). A session's rows may be anywhere in the file, so they go through the
:class:`~agentsim.traces.importers.common.Spool`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from agentsim.traces.importers.common import (
    BadInputError,
    BadRows,
    CsvLines,
    ImportReport,
    Sink,
    Spool,
    csv_batches,
    csv_header,
    first_failures,
    parse_floats,
    parse_ints,
)
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate

_SESSION_COLUMNS = ("Session ID", "SessionID", "Session Id", "session_id", "Session")
_ELAPSED_COLUMNS = ("Elapsed time", "Elapsed Time", "ElapsedTime", "elapsed_time")


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "burstgpt"


def import_burstgpt(src: Path, sink: Sink, bad: BadRows, report: ImportReport, workload: str | None, tmp: Path) -> None:
    """Read a BurstGPT CSV into ``sink``; with a session column, sessions are spooled in ``tmp`` and become
    chained tasks."""
    header = csv_header(src)
    need = ["Timestamp", "Request tokens", "Response tokens"]
    missing = [c for c in need if c not in header]
    if missing:
        raise BadInputError(str(src), 1, f"not a BurstGPT CSV: missing column(s) {', '.join(missing)}")
    session_col = next((c for c in _SESSION_COLUMNS if c in header), None)
    elapsed_col = next((c for c in _ELAPSED_COLUMNS if c in header), None)
    optional = [c for c in ("Model", "Log Type") if c in header]
    cols = need + optional + [c for c in (session_col, elapsed_col) if c]
    lines = CsvLines()
    spool = Spool(tmp) if session_col else None
    sessions: dict[str, int] = {}
    seq = 0
    for batch, used in csv_batches(src, cols, bad, lines):
        n = batch.num_rows
        if n == 0:
            continue
        t, ok_t = parse_floats(batch.column("Timestamp"))
        req, ok_r = parse_ints(batch.column("Request tokens"))
        resp, ok_s = parse_ints(batch.column("Response tokens"))
        el = np.zeros(n)
        ok_e = np.ones(n, dtype=bool)
        if elapsed_col:
            el_raw = batch.column(elapsed_col)
            el, ok_e = parse_floats(el_raw)
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
        ok = first_failures(checks, used, lambda i, reason: bad(lines.line(lines.rows + i), reason))
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
