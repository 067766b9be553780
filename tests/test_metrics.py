"""Metrics on hand-made tables: SLO attainment with censoring, latency definitions."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from agentsim import spec
from agentsim.analysis.rows import call_latencies
from agentsim.analysis.slo import slo_attainment

W = spec.WorkloadSpec(name="w", slo=spec.Slo(ttft_s=1.0, tpot_s=0.1, task_s=100.0))


def calls_table(rows: list[tuple[float, float | None, float | None, int]], rejected: int = 0) -> pa.Table:
    """Calls as given, then ``rejected`` calls rejected at the context window (issued at 0)."""
    rows = rows + [(0.0, None, None, 0)] * rejected
    issue, first, done, gen = zip(*rows, strict=True)
    status = ["unfinished" if d is None else "finished" for d in done[: len(done) - rejected]]
    return pa.table(
        {
            "workload": ["w"] * len(rows),
            "issue_s": list(issue),
            "first_token_s": list(first),
            "done_s": list(done),
            "status": status + ["rejected"] * rejected,
            "generated_tokens": list(gen),
        }
    )


def tasks_table(rows: list[tuple[float, float | None]], failed: int = 0) -> pa.Table:
    """Tasks as given, then ``failed`` tasks failed at a rejected call (started at 0)."""
    rows = rows + [(0.0, None)] * failed
    start, done = zip(*rows, strict=True)
    status = ["unfinished" if d is None else "finished" for d in done[: len(done) - failed]]
    status += ["failed"] * failed
    return pa.table({"workload": ["w"] * len(rows), "start_s": list(start), "done_s": list(done), "status": status})


def test_latency_definitions() -> None:
    lat = call_latencies(calls_table([(0.0, 0.5, 2.5, 21), (1.0, 1.2, 1.2, 1)]))
    # ttft = first - issue; tpot = (done - first) / (generated - 1); e2e = done - issue
    assert lat["ttft_s"].tolist() == pytest.approx([0.5, 0.2])
    assert lat["tpot_s"][0] == pytest.approx((2.5 - 0.5) / (21 - 1))
    assert math.isnan(lat["tpot_s"][1])  # one token: no inter-token time
    assert lat["call_e2e_s"].tolist() == pytest.approx([2.5, 0.2])


def test_unfinished_work_is_censored_until_it_has_missed() -> None:
    horizon = 50.0
    calls = calls_table(
        [
            (0.0, 0.5, 2.5, 21),  # good: TTFT 0.5, TPOT 0.1
            (0.0, 2.0, 4.0, 21),  # bad TTFT
            (49.5, None, None, 0),  # waiting 0.5 s at the horizon: censored
            (40.0, None, None, 0),  # waiting 10 s for its first token: already missed
            (45.0, 45.2, None, 5),  # first token in time, still decoding: censored
        ]
    )
    tasks = tasks_table([(0.0, 80.0), (0.0, 120.0), (10.0, None), (-60.0, None)])
    # tasks: good; bad; running for 40 s (censored); running for 110 s (missed)
    a = slo_attainment(calls, tasks, [W], horizon)
    assert a["calls"] == 1 / 3
    assert a["tasks"] == 1 / 3
    assert a["by_workload"]["w"] == {"calls": 1 / 3, "tasks": 1 / 3}


def test_rejected_calls_and_failed_tasks_are_misses() -> None:
    """A call rejected at the context window never gets a token, and a task failed by one never ends: each is
    counted, as a miss, whatever the horizon (unlike unfinished work, which is censored)."""
    calls = calls_table([(0.0, 0.5, 2.5, 21), (0.0, 2.0, 4.0, 21)], rejected=2)
    tasks = tasks_table([(0.0, 80.0)], failed=3)
    a = slo_attainment(calls, tasks, [W], 1.0)
    assert a["calls"] == 1 / 4  # one good of two finished + two rejected
    assert a["tasks"] == 1 / 4  # one good + three failed
