"""Agent sessions: agentsim's own JSONL format for agent logs, one session (one task) per line.

Format::

    {"session_id": "s1", "start_s": 12.5, "workload": "coding",
     "shared_prefix_tokens": 0,
     "requests": [{"input_tokens": 9000, "output_tokens": 300, "tool_s": 2.0}, ...]}

``start_s`` (s) or ``timestamp`` (ms) is required; ``workload`` and ``shared_prefix_tokens`` (a prompt prefix
shared by all sessions of the workload) are optional. Mapping: ``requests`` run in order, each depending on the
previous one; ``tool_s`` (or ``tool_ms``) is the tool time *after* that request, before the next one (so it is
the next call's ``gap_s``, a tool gap); ``prompt_tokens`` is accepted for ``input_tokens``. A request whose
input is at least the previous request's input links it as prefix (the context grew); a shorter one
(compaction) shares only the shared prefix.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentsim.traces.importers.common import (
    BadRows,
    ImportReport,
    Sink,
    float_field,
    int_field,
    line_blocks,
)
from agentsim.workload.taskgraph import ROOT, CallTemplate, TaskTemplate


def import_agent_sessions(src: Path, sink: Sink, bad: BadRows, report: ImportReport, workload: str) -> None:
    """Read an agent-sessions JSONL file into ``sink``, one chained task per good line."""
    for nums, lines in line_blocks(src):
        report.lines = nums[-1]
        for num, line in zip(nums, lines, strict=True):
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("expected a JSON object (one session per line)")
                start = float_field(obj, ("start_s",))
                if start is None:
                    ms = float_field(obj, ("timestamp",))
                    if ms is None:
                        raise ValueError("missing start_s (s) or timestamp (ms)")
                    start = ms / 1000.0
                label = obj.get("workload", workload)
                if not isinstance(label, str) or not label:
                    raise ValueError("workload must be a non-empty string")
                shared = int_field(obj, ("shared_prefix_tokens",), "", 0) if "shared_prefix_tokens" in obj else 0
                reqs = obj.get("requests")
                if not isinstance(reqs, list) or not reqs:
                    raise ValueError("requests must be a non-empty list")
                calls: list[CallTemplate] = []
                gap = 0.0
                for k, r in enumerate(reqs):
                    if not isinstance(r, dict):
                        raise ValueError(f"requests[{k}] must be an object")
                    try:
                        prompt = int_field(r, ("input_tokens", "prompt_tokens"), "input_tokens", 1)
                        output = int_field(r, ("output_tokens",), "output_tokens", 1)
                        tool = float_field(r, ("tool_s",))
                        if tool is None:
                            tool_ms = float_field(r, ("tool_ms",))
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
