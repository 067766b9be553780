"""When tasks start: open arrival processes and closed populations.

**Open loop.** Tasks arrive from outside at times that do not depend on how the cluster is doing. A
*renewal process* draws i.i.d. gaps between arrivals; its long-run rate is ``1 / E[gap]`` and its burstiness
the gaps' coefficient of variation (CV). ``Poisson`` has exponential gaps (CV 1, memoryless);
``GammaArrivals`` has gamma gaps with shape ``k = 1/cv²`` and scale ``θ = cv²/rate``: ``cv > 1`` gives bursts
and lulls, ``cv < 1`` near-periodic arrivals.

Stationary from the start. A renewal process observed from an arbitrary instant does not see a plain gap
first: long gaps are more likely to cover a given instant (the inspection paradox), so the time to the first
arrival has the *equilibrium* density ``(1 - F(x)) / E[gap]``. :class:`OpenArrivals` draws that first gap, so
the expected number of arrivals in any window ``[a, b)`` is exactly ``rate * (b - a)``, including windows that
start at 0 (no warm-up bias). For gamma gaps the equilibrium gap is ``U * L`` with ``U ~ Uniform(0, 1)`` and
``L ~ Gamma(k + 1, θ)`` (a length-biased gap, then a uniform point inside it); for the exponential this is
again ``Exp(rate)``, as memorylessness demands.

**Closed loop.** ``Closed`` has a fixed population of agents, each starting its next task ``think_s`` after
its previous one ends, so the arrival rate is set by the response time (the interactive response-time law
``R = N / X - Z``). The engine owns that loop; this module only supplies the agents' start offsets (spread
uniformly over ``[0, ramp_s)``) and their think times.

All draws are made in numpy blocks; iterating costs a list index per arrival.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from agentsim.spec import Closed, GammaArrivals, Poisson
from agentsim.workload.distributions import BLOCK, BlockSampler


class OpenArrivals:
    """Arrival times of a stationary renewal process (Poisson or gamma gaps), in increasing order.

    ``next()`` returns successive absolute times starting after ``start_s``; the process is in equilibrium at
    ``start_s`` (see the module docstring), so its rate is exact over any window.
    """

    __slots__ = ("_arr", "_block", "_buf", "_i", "_rng", "_scale", "_shape", "_t")

    def __init__(
        self,
        spec: Poisson | GammaArrivals,
        rng: np.random.Generator,
        start_s: float = 0.0,
        *,
        block: int = BLOCK,
    ) -> None:
        cv2 = 1.0 if isinstance(spec, Poisson) else spec.cv * spec.cv
        self._shape = 1.0 / cv2
        self._scale = cv2 / spec.rate_per_s
        self._rng = rng
        self._block = max(int(block), 1)
        first = rng.random() * rng.gamma(self._shape + 1.0, self._scale)
        self._t = float(start_s) + first
        # The pending block twice: as a list for cheap scalar reads, as an array for `until`.
        self._arr = np.array([self._t])
        self._buf: list[float] = [self._t]
        self._i = 0

    def _refill(self) -> None:
        gaps = self._rng.gamma(self._shape, self._scale, self._block)
        self._arr = self._t + np.cumsum(gaps)
        self._buf = self._arr.tolist()
        self._t = self._buf[-1]
        self._i = 0

    def next(self) -> float:
        """The next arrival time (seconds, absolute)."""
        if self._i >= len(self._buf):
            self._refill()
        t = self._buf[self._i]
        self._i += 1
        return t

    def until(self, end_s: float) -> np.ndarray:
        """All remaining arrivals before ``end_s`` as an array, consuming them (vectorized).

        Produces the same times as calling :meth:`next` until one reaches ``end_s``; the first time at or
        after ``end_s`` is kept for the next call.
        """
        chunks: list[np.ndarray] = []
        while True:
            if self._i >= len(self._buf):
                self._refill()
            rest = self._arr[self._i :]
            cut = int(np.searchsorted(rest, end_s, side="left"))
            chunks.append(rest[:cut])
            self._i += cut
            if self._i < len(self._buf):
                return np.concatenate(chunks)

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next()


def arrival_times(
    spec: Poisson | GammaArrivals, rng: np.random.Generator, horizon_s: float, start_s: float = 0.0
) -> Iterator[float]:
    """Arrival times in ``[start_s, horizon_s)`` (absolute seconds), lazily, in increasing order."""
    arrivals = OpenArrivals(spec, rng, start_s)
    while True:
        t = arrivals.next()
        if t >= horizon_s:
            return
        yield t


def arrival_array(
    spec: Poisson | GammaArrivals, rng: np.random.Generator, horizon_s: float, start_s: float = 0.0
) -> np.ndarray:
    """The same times as :func:`arrival_times` (for the same generator state), as one float64 array."""
    return OpenArrivals(spec, rng, start_s).until(horizon_s)


def think_times(spec: Closed, rng: np.random.Generator) -> Iterator[float]:
    """An endless stream of think times (seconds) for a closed population, drawn in blocks."""
    return iter(BlockSampler(spec.think_s, rng))


def start_offsets(spec: Closed, rng: np.random.Generator) -> np.ndarray:
    """When each of the ``spec.agents`` agents starts its first task: i.i.d. uniform on ``[0, ramp_s)``, or
    all zeros when ``ramp_s`` is 0 (the generator is then not used)."""
    if spec.ramp_s <= 0.0:
        return np.zeros(spec.agents)
    return rng.uniform(0.0, spec.ramp_s, spec.agents)
