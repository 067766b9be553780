"""Mooncake: JSONL request logs with block hashes (Kimi's conversation, tool&agent and synthetic traces).

Format: one request per line, ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids`` (one id
per 512-token block; equal leading ids = shared prefix). Mapping: each line is a single-call task released at
``timestamp / 1000`` s, its ``hash_ids`` kept as they are. Blocks of lines are parsed by ``pyarrow.json`` and
checked column-wise; a block pyarrow cannot parse is re-read line by line so the bad lines can be named.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from agentsim.spec.base import MAX_COUNT
from agentsim.traces.importers.common import (
    BadRows,
    ImportReport,
    Sink,
    float_field,
    hash_list,
    int_field,
    line_blocks,
)

_MOONCAKE_SCHEMA = pa.schema(
    [
        ("timestamp", pa.float64()),
        ("input_length", pa.int64()),
        ("output_length", pa.int64()),
        ("hash_ids", pa.list_(pa.int64())),
    ]
)


def _mooncake_block_python(
    nums: list[int], lines: list[bytes], bad: BadRows, block: int
) -> tuple[list[int], dict[str, list[Any]]]:
    """Slow path for a block pyarrow could not parse: line by line, naming the bad ones."""
    keep: list[int] = []
    cols: dict[str, list[Any]] = {"timestamp": [], "input_length": [], "output_length": [], "hash_ids": []}
    for num, line in zip(nums, lines, strict=True):
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            ts = float_field(obj, ("timestamp",))
            if ts is None:
                raise ValueError("missing timestamp")
            inp = int_field(obj, ("input_length",), "input_length", 1)
            out = int_field(obj, ("output_length",), "output_length", 1)
            hashes = hash_list(obj, inp, block)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            bad(num, str(e))
            continue
        keep.append(num)
        cols["timestamp"].append(ts)
        cols["input_length"].append(inp)
        cols["output_length"].append(out)
        cols["hash_ids"].append(None if hashes is None else list(hashes))
    return keep, cols


def import_mooncake(src: Path, sink: Sink, bad: BadRows, report: ImportReport, workload: str) -> None:
    """Read a Mooncake JSONL file into ``sink``, one single-call task per good line."""
    block = sink.block_size
    opts = pajson.ParseOptions(explicit_schema=_MOONCAKE_SCHEMA, unexpected_field_behavior="ignore")
    for nums, lines in line_blocks(src):
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
                (inp > MAX_COUNT, "input_length must be <= 2**53"),
                (out > MAX_COUNT, "output_length must be <= 2**53"),
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
