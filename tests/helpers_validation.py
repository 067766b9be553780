"""Shared helpers of the validation tests: scenario builders, replication statistics, a read-only spy.

Statistics. A validation test runs ``R`` independent replications (seeds ``0..R-1``), reduces each one to a
single number (a replication mean), and checks that a closed form lies inside the two-sided 99.8% confidence
interval of the mean of those numbers: ``|mean - theory| <= t(0.999, R-1) * SE`` with ``SE = s / sqrt(R)``.
Replication means of long runs are close to normal (central limit theorem over many weakly dependent calls),
so Student's t applies; at 99.8% a correct simulator fails one such check in 500. Where the closed form is
itself an approximation (mean-field formulas), an explicit relative band is added to the statistical
tolerance and the test says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

import agentsim.engine.sim as sim_module
from agentsim.analysis.rows import col
from agentsim.api import load_scenario
from agentsim.engine.events import EventQueue
from agentsim.serving.cluster import Cluster
from agentsim.spec import Dist, Scenario

MODEL = "llama-3.1-8b"
HARDWARE = "h100"
NO_KV_LIMIT = 10**9

# Student's t quantile t(0.999, df): the half-width of a two-sided 99.8% interval in standard errors.
_T999 = {
    2: 22.327, 3: 10.215, 4: 7.173, 5: 5.893, 6: 5.208, 7: 4.785, 8: 4.501, 9: 4.297, 10: 4.144,
    11: 4.025, 12: 3.930, 13: 3.852, 14: 3.787, 15: 3.733, 16: 3.686, 17: 3.646, 18: 3.610, 19: 3.579,
    20: 3.552, 25: 3.450, 30: 3.385, 40: 3.307, 60: 3.232, 120: 3.160,
}


def t999(df: int) -> float:
    """``t(0.999, df)`` (conservative: the next smaller tabulated df is used between entries)."""
    if df < 2:
        raise ValueError("need at least 3 replications")
    if df > 120:
        return 3.090  # the normal quantile
    return _T999[max(k for k in _T999 if k <= df)]


@dataclass(frozen=True)
class Estimate:
    """The mean of replication values with its standard error."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def se(self) -> float:
        return float(np.std(self.values, ddof=1) / math.sqrt(self.n))

    @property
    def halfwidth(self) -> float:
        """Half-width of the two-sided 99.8% confidence interval."""
        return t999(self.n - 1) * self.se

    def z(self, theory: float) -> float:
        """Distance from ``theory`` in standard errors."""
        if self.se > 0:
            return (self.mean - theory) / self.se
        return 0.0 if self.mean == theory else math.copysign(math.inf, self.mean - theory)

    def describe(self, theory: float) -> str:
        rel = (self.mean - theory) / theory if theory else math.nan
        return (
            f"sim {self.mean:.6g} ± {self.se:.2g} (SE, R={self.n}) vs theory {theory:.6g}: "
            f"{rel:+.2%}, {self.z(theory):+.2f} SE"
        )

    def assert_matches(self, theory: float, *, band: float = 0.0, what: str = "") -> None:
        """``theory`` lies in the 99.8% interval widened by ``band * |theory|`` (an approximation's band)."""
        tol = self.halfwidth + band * abs(theory)
        assert abs(self.mean - theory) <= tol, (
            f"{what}: {self.describe(theory)}; tolerance {tol:.3g} "
            f"(t={t999(self.n - 1):.3f} x SE + {band:.0%} band)"
        )


def estimate(values: Sequence[float]) -> Estimate:
    return Estimate(tuple(float(v) for v in values))


# ----------------------------------------------------------------------------------------------- scenarios


def const(value: float) -> dict[str, Any]:
    return {"kind": "constant", "value": value}


def fixed_profile(prompt: dict[str, Any] | int, output: dict[str, Any] | int) -> dict[str, Any]:
    """A one-call-per-task profile; ints mean constant token counts."""
    return {
        "kind": "fixed",
        "prompt_tokens": const(prompt) if isinstance(prompt, int) else prompt,
        "output_tokens": const(output) if isinstance(output, int) else output,
    }


def linear_perf(alpha: float, beta: float = 0.0, gamma: float = 0.0, delta: float = 0.0) -> dict[str, Any]:
    return {
        "kind": "linear",
        "alpha_s": alpha,
        "beta_s_per_prefill_token": beta,
        "gamma_s_per_context_token": gamma,
        "delta_s_per_seq": delta,
    }


def scenario(
    *,
    profile: dict[str, Any] | str,
    arrivals: dict[str, Any],
    perf: dict[str, Any],
    seed: int = 0,
    horizon_s: float,
    warmup_s: float = 0.0,
    sample_interval_s: float | None = None,
    replicas: int = 1,
    engine: dict[str, Any] | None = None,
    router: str = "least-load",
    max_tasks: int | None = None,
    pricing: dict[str, Any] | None = None,
) -> Scenario:
    """One workload on one pool of ``replicas`` replicas, validated through :func:`agentsim.api.load_scenario`.

    The KV capacity is unlimited unless ``engine`` says otherwise."""
    eng = {"kv_capacity_tokens": NO_KV_LIMIT}
    eng.update(engine or {})
    workload: dict[str, Any] = {"profile": profile, "arrivals": arrivals}
    if max_tasks is not None:
        workload["max_tasks"] = max_tasks
    data: dict[str, Any] = {
        "seed": seed,
        "horizon_s": horizon_s,
        "warmup_s": warmup_s,
        "sample_interval_s": sample_interval_s if sample_interval_s is not None else horizon_s,
        "workload": [workload],
        "cluster": {
            "pools": [
                {
                    "name": "pool",
                    "deployment": {"model": MODEL, "hardware": HARDWARE, "tp": 1, "engine": eng},
                    "perf": perf,
                    "replicas": replicas,
                }
            ],
            "router": {"kind": router},
        },
    }
    if pricing is not None:
        data["pricing"] = pricing
    return load_scenario(data)


# ----------------------------------------------------------------------------------------------- tables


def issued_between(calls: pa.Table, t0: float, t1: float) -> np.ndarray:
    """Mask of calls issued in ``[t0, t1)``."""
    issue = col(calls, "issue_s")
    return (issue >= t0) & (issue < t1)


def latencies(calls: pa.Table, mask: np.ndarray) -> dict[str, np.ndarray]:
    """TTFT, time in system and TPOT (NaN for one-token calls) of the masked calls, which must all be done
    (a test picks its window so that no call in it is censored by the horizon)."""
    issue = col(calls, "issue_s")[mask]
    first = col(calls, "first_token_s")[mask]
    done = col(calls, "done_s")[mask]
    gen = col(calls, "generated_tokens")[mask]
    assert not np.isnan(done).any(), "a call of the measurement window is unfinished: widen the tail"
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(gen > 1, (done - first) / (gen - 1), np.nan)
    return {"ttft": first - issue, "sojourn": done - issue, "tpot": tpot}


# ----------------------------------------------------------------------------------------------- moments


def rounded_moments(dist_: Dist, minimum: int = 1, grid: int = 400_000) -> tuple[float, float]:
    """``(E[N], E[N^2])`` of ``N = max(rint(X), minimum)``, the token count the task factory makes of a draw
    ``X`` (``IntSampler``: round half to even, then raise to ``minimum``). Exact for the exponential (sum of
    interval probabilities ``P(k - 1/2 <= X < k + 1/2)``; ties have probability 0); other kinds are not needed.
    """
    from agentsim.spec import Exponential

    assert isinstance(dist_, Exponential)
    m = dist_.mean
    kmax = int(60 * m) + 10
    k = np.arange(0, kmax + 1, dtype=float)
    lo = np.maximum(k - 0.5, 0.0)
    p = np.exp(-lo / m) - np.exp(-(k + 0.5) / m)
    n = np.maximum(k, minimum)
    assert abs(p.sum() - 1.0) < 1e-12
    return float(p @ n), float(p @ (n * n))


# ----------------------------------------------------------------------------------------------- spy


@dataclass
class EngineSnapshot:
    """A replica's step counter and busy seconds at a step boundary: ``busy_s`` is the total duration of the
    first ``steps`` steps (the engine updates both together at the end of a step or of a skipped segment)."""

    t_s: float
    steps: int
    busy_s: float


class ClusterSpy:
    """Records ``(step, busy_s)`` of every replica at chosen simulated times. Read-only: it schedules its own
    events on the clock and never calls into the engine."""

    def __init__(self, times: Sequence[float]) -> None:
        self.times = list(times)
        self.snapshots: list[list[EngineSnapshot]] = []

    def attach(self, cluster: Cluster, events: EventQueue) -> None:
        for t in self.times:
            events.later(t, lambda t=t: self.snapshots.append(
                [EngineSnapshot(t, r.step, r.busy_s) for r in cluster.replicas]))


@contextmanager
def spy_on_cluster(monkeypatch: Any, times: Sequence[float]) -> Iterator[ClusterSpy]:
    """Within the block, the engine (:mod:`agentsim.engine.sim`) builds its cluster through a factory that hands it
    to the yielded :class:`ClusterSpy` (one run per block: a second run would add its own snapshots)."""
    spy = ClusterSpy(times)
    base = sim_module.Cluster

    def spied_cluster(events: EventQueue, *args: Any, **kwargs: Any) -> Any:
        # A factory, not a subclass: the engine's classes may be compiled (mypyc), and compiled classes
        # cannot be subclassed from interpreted code.
        cluster = base(events, *args, **kwargs)
        spy.attach(cluster, events)
        return cluster

    with monkeypatch.context() as m:
        m.setattr(sim_module, "Cluster", spied_cluster)
        yield spy
