"""The server's front end (``engine.frontend_s``): every call waits that long between its issue and its engine's
queue. A constant delay on every arrival shifts the replica's whole arrival process in time, so each call's
queueing, prefill and decode are unchanged and its TTFT and end-to-end time grow by exactly ``frontend_s``; the
router counts a call from the moment it routes it, so a burst still spreads; a draining replica waits for the calls
in its front end."""

from __future__ import annotations

import numpy as np
import pytest

from agentsim.analysis.rows import col
from agentsim.api import run
from agentsim.engine.clock import Clock
from agentsim.perf.linear import LinearPerfModel
from agentsim.serving.admission import EngineConfig
from agentsim.serving.call import Call, Callbacks
from agentsim.serving.replica import Replica
from agentsim.spec import LinearPerf
from helpers_validation import fixed_profile, issued_between, latencies, linear_perf, scenario

D = 0.01  # one engine step (alpha only), seconds
F = 0.05  # the front end


def _md1(frontend: float | None, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    engine: dict[str, object] = {"max_num_seqs": 1}
    if frontend is not None:
        engine["frontend_s"] = frontend
    s = scenario(
        profile=fixed_profile(8, 4), arrivals={"kind": "poisson", "rate_per_s": 20.0}, perf=linear_perf(D),
        seed=seed, horizon_s=60.0, engine=engine,
    )
    r = run(s)
    mask = issued_between(r.calls, 0.0, 50.0)
    lat = latencies(r.calls, mask)
    return col(r.calls, "issue_s")[mask], lat["ttft"], lat["sojourn"]


def test_every_call_is_shifted_by_the_front_end() -> None:
    """M/D/1-like replica at rho 0.8 (4 steps of 10 ms per call, 20 calls/s): the same seed with and without a
    50 ms front end issues the same calls, and each one's TTFT and time in system differ by exactly 50 ms."""
    issue0, ttft0, soj0 = _md1(None)
    issue1, ttft1, soj1 = _md1(F)
    assert len(issue0) > 800 and np.array_equal(issue0, issue1)
    assert np.allclose(ttft1 - ttft0, F, rtol=0, atol=1e-9)
    assert np.allclose(soj1 - soj0, F, rtol=0, atol=1e-9)
    # queueing happened (not a trivially idle replica): some calls waited behind others
    assert (ttft0 > D + 1e-9).mean() > 0.3


def test_the_preset_has_no_front_end() -> None:
    _, ttft_unset, _ = _md1(None)
    _, ttft_zero, _ = _md1(0.0)
    assert np.array_equal(ttft_unset, ttft_zero)


def test_a_burst_spreads_over_replicas_while_in_the_front_end() -> None:
    """40 calls at once to 4 replicas under least-load: the router counts calls in the front end, so each replica
    gets 10 (without that count all would see empty replicas and go to the first)."""
    s = scenario(
        profile=fixed_profile(100, 10), perf=linear_perf(D), horizon_s=30.0, replicas=4, engine={"frontend_s": F},
        arrivals={"kind": "closed", "agents": 40, "think_s": {"kind": "constant", "value": 1e6}}, max_tasks=40,
    )
    r = run(s)
    replicas = col(r.calls, "replica")
    assert len(replicas) == 40
    assert sorted(np.bincount(replicas.astype(int), minlength=4).tolist()) == [10, 10, 10, 10]
    # nobody reached an engine before the front end let it through
    admitted = col(r.calls, "admitted_s")
    assert admitted.min() == pytest.approx(F, abs=1e-12)


def test_a_draining_replica_waits_for_calls_in_its_front_end() -> None:
    env = Clock()
    drained: list[float] = []
    rep = Replica(
        env.events, 0, "p", LinearPerfModel(LinearPerf(alpha_s=D)), EngineConfig(frontend_s=F), 10_000,
        Callbacks(lambda c, t: None, lambda c, t: None),
    )
    rep.on_drained = lambda r, now: drained.append(now)
    call = Call(0, 10, 2, 0.0)
    call.load = call.prompt + call.output  # what Cluster.route counts while the call is in the front end
    rep.outstanding += call.load
    rep.incoming += 1
    rep.status = "draining"
    rep.drain_if_empty(0.0)
    assert drained == []  # a call is on its way
    env.events.schedule(F, rep.submit_later, (call,))
    env.run()
    assert call.done_s == pytest.approx(F + 2 * D, abs=1e-12)  # prefill step (first token), one decode step
    assert rep.outstanding == 0 and rep.incoming == 0
    assert drained == [pytest.approx(F + 2 * D, abs=1e-12)]

