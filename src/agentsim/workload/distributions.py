"""Sampling and exact moments of the spec's distributions.

A profile describes each random quantity (tokens, seconds, counts) by a :data:`agentsim.spec.Dist`. This
module turns those descriptions into numbers in two ways:

* **Draws**, always vectorized: :func:`sample` returns a float64 array of ``n`` values from one numpy call.
  The simulator needs millions of draws per simulated hour, and one ``rng`` call per value costs ~1 µs of
  Python overhead each, so the hot paths use :class:`BlockSampler`, which draws 4096 values at a time and
  hands them out one by one as Python floats (or rounded ints via :class:`IntSampler`).
* **Moments**, exact rather than estimated: :func:`mean` and :func:`cv` come from closed forms, so tests can
  compare simulated averages against mathematics instead of against numbers the code once printed.

Parameterisations (all of a non-negative quantity):

========== ===================================== ============================================================
kind       parameters                            draw
========== ===================================== ============================================================
constant   ``value``                             ``value``
uniform    ``low``, ``high``                     U[low, high)
exponential ``mean``                             Exp with that mean (CV 1)
lognormal  ``median``, ``sigma``, ``min``/``max`` ``median * exp(sigma * Z)``, then **clipped** (censored) to
                                                 [min, max]: values outside are set to the bound, they are
                                                 not redrawn, so the bounds carry probability mass
gamma      ``mean``, ``cv``                      shape ``k = 1/cv²``, scale ``θ = mean·cv²``
empirical  ``values``, ``weights``               a value chosen with probability ∝ its weight (equal if none)
========== ===================================== ============================================================

The clipped lognormal's moments are exact too. With ``Y = ln X ~ N(μ, σ²)``, ``μ = ln median``, clip bounds
``a = ln min`` and ``b = ln max`` and ``Φ`` the standard normal CDF::

    E[min(max(X, m), M)^r] = m^r Φ(α) + e^{rμ + r²σ²/2} [Φ(β - rσ) - Φ(α - rσ)] + M^r (1 - Φ(β))

where ``α = (a - μ)/σ`` and ``β = (b - μ)/σ``: the bound's mass times the bound, plus the partial moment of
the lognormal between the bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Final, Generic, TypeVar

import numpy as np

from agentsim.spec import Constant, Dist, Empirical, Exponential, Gamma, Lognormal, Uniform
from agentsim.spec.base import MAX_COUNT

T = TypeVar("T", int, float)

BLOCK: Final = 4096
"""Values drawn per refill by :class:`BlockSampler`: large enough to amortise numpy's per-call cost, small
enough that an unused tail wastes nothing measurable."""


def _check(dist: Dist) -> None:
    """Reject what the spec cannot express as a field constraint: a lognormal with ``min > max``."""
    if isinstance(dist, Lognormal) and dist.min is not None and dist.max is not None and dist.min > dist.max:
        raise ValueError(f"lognormal: min ({dist.min}) must be <= max ({dist.max})")


def sample(dist: Dist, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` independent draws from ``dist`` as a float64 array (one vectorized numpy call)."""
    _check(dist)
    if isinstance(dist, Constant):
        return np.full(n, float(dist.value))
    if isinstance(dist, Uniform):
        return rng.uniform(dist.low, dist.high, n)
    # The unbounded kinds: a heavy tail (sigma 50) can draw past any count, or overflow to inf; such draws are
    # held at MAX_COUNT (2**53), far past every context window, where the engine rejects or compacts them.
    if isinstance(dist, Exponential):
        return np.minimum(rng.exponential(dist.mean, n), MAX_COUNT)
    if isinstance(dist, Lognormal):
        with np.errstate(over="ignore"):
            x = dist.median * np.exp(dist.sigma * rng.standard_normal(n))
        if dist.min is not None or dist.max is not None:
            np.clip(x, dist.min, dist.max, out=x)
        return np.minimum(x, MAX_COUNT, out=x)
    if isinstance(dist, Gamma):
        cv2 = dist.cv * dist.cv
        return np.minimum(rng.gamma(1.0 / cv2, dist.mean * cv2, n), MAX_COUNT)
    if isinstance(dist, Empirical):
        values = np.asarray(dist.values, dtype=np.float64)
        if dist.weights is None:
            return values[rng.integers(0, len(values), n)]
        # Inverse-CDF lookup: the same thing rng.choice does, without its per-call validation.
        cdf = np.cumsum(np.asarray(dist.weights, dtype=np.float64))
        idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        out: np.ndarray = values[np.minimum(idx, len(values) - 1)]
        return out
    raise TypeError(f"unknown distribution {dist!r}")  # pragma: no cover - the union is closed


def _phi(x: float) -> float:
    """Standard normal CDF (with Φ(±inf) = 1 or 0)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _lognormal_moment(d: Lognormal, r: int) -> float:
    """``E[X^r]`` of the (optionally clipped) lognormal, exactly; see the module docstring."""
    lo = 0.0 if d.min is None else d.min
    hi = math.inf if d.max is None else d.max
    if d.sigma == 0.0:
        return float(min(max(d.median, lo), hi)) ** r
    mu, s = math.log(d.median), d.sigma
    alpha = -math.inf if lo <= 0.0 else (math.log(lo) - mu) / s
    beta = math.inf if math.isinf(hi) else (math.log(hi) - mu) / s
    inner = math.exp(r * mu + 0.5 * r * r * s * s) * (_phi(beta - r * s) - _phi(alpha - r * s))
    below = lo**r * _phi(alpha) if lo > 0.0 else 0.0
    above = hi**r * (1.0 - _phi(beta)) if not math.isinf(hi) else 0.0
    return below + inner + above


def _moments(dist: Dist) -> tuple[float, float]:
    """``(E[X], E[X²])``."""
    _check(dist)
    if isinstance(dist, Constant):
        return dist.value, dist.value**2
    if isinstance(dist, Uniform):
        m = 0.5 * (dist.low + dist.high)
        return m, m * m + (dist.high - dist.low) ** 2 / 12.0
    if isinstance(dist, Exponential):
        return dist.mean, 2.0 * dist.mean**2
    if isinstance(dist, Lognormal):
        return _lognormal_moment(dist, 1), _lognormal_moment(dist, 2)
    if isinstance(dist, Gamma):
        return dist.mean, dist.mean**2 * (1.0 + dist.cv**2)
    if isinstance(dist, Empirical):
        v = np.asarray(dist.values, dtype=np.float64)
        w = np.ones_like(v) if dist.weights is None else np.asarray(dist.weights, dtype=np.float64)
        w = w / w.sum()
        return float(w @ v), float(w @ (v * v))
    raise TypeError(f"unknown distribution {dist!r}")  # pragma: no cover


def mean(dist: Dist) -> float:
    """The exact mean of ``dist`` (clipping included)."""
    return float(_moments(dist)[0])


def std(dist: Dist) -> float:
    """The exact standard deviation of ``dist`` (clipping included)."""
    m1, m2 = _moments(dist)
    return math.sqrt(max(m2 - m1 * m1, 0.0))


def cv(dist: Dist) -> float:
    """Coefficient of variation ``std / mean``: 0 for a point mass, ``inf`` for a non-degenerate
    distribution with mean 0 (impossible for these kinds, kept for totality)."""
    m1 = mean(dist)
    s = std(dist)
    if m1 == 0.0:
        return 0.0 if s == 0.0 else math.inf
    return s / m1


# --------------------------------------------------------------------------- block samplers


class _Blocks(Generic[T]):
    """Draws of one distribution, handed out one at a time but drawn ``block`` at a time.

    The values come out in the order :func:`sample` would produce them in consecutive calls of size
    ``block`` (or larger, when one :meth:`take` needs more), so a sampler is as reproducible as its generator.
    """

    __slots__ = ("_block", "_buf", "_dist", "_i", "_rng")

    def __init__(self, dist: Dist, rng: np.random.Generator, block: int = BLOCK) -> None:
        _check(dist)
        self._dist = dist
        self._rng = rng
        self._block = max(int(block), 1)
        self._buf: list[T] = []
        self._i = 0

    def _convert(self, x: np.ndarray) -> list[T]:
        raise NotImplementedError

    def _refill(self, need: int) -> None:
        rest = self._buf[self._i :]
        size = max(self._block, need - len(rest))
        self._buf = rest + self._convert(sample(self._dist, self._rng, size))
        self._i = 0

    def next(self) -> T:
        """One draw."""
        if self._i >= len(self._buf):
            self._refill(1)
        v = self._buf[self._i]
        self._i += 1
        return v

    def take(self, n: int) -> list[T]:
        """The next ``n`` draws as a list."""
        if self._i + n > len(self._buf):
            self._refill(n)
        i = self._i
        self._i = i + n
        return self._buf[i : i + n]

    def __iter__(self) -> Iterator[T]:
        while True:
            yield self.next()


class BlockSampler(_Blocks[float]):
    """Block-drawn values of ``dist`` as Python floats (seconds, rates)."""

    __slots__ = ()

    def _convert(self, x: np.ndarray) -> list[float]:
        out: list[float] = x.tolist()
        return out


class IntSampler(_Blocks[int]):
    """Block-drawn counts: each draw rounded half-to-even and raised to at least ``minimum`` (token counts,
    steps, sub-agents)."""

    __slots__ = ("_minimum",)

    def __init__(self, dist: Dist, rng: np.random.Generator, minimum: int = 0, block: int = BLOCK) -> None:
        self._minimum = int(minimum)
        super().__init__(dist, rng, block)

    def _convert(self, x: np.ndarray) -> list[int]:
        out: list[int] = np.maximum(np.rint(x), self._minimum).astype(np.int64).tolist()
        return out
