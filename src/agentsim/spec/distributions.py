"""Distributions of non-negative quantities: the random parts of a workload (tokens, seconds, counts).

Each kind is a small model tagged by ``kind``; :data:`Dist` is their tagged union, so a profile field typed
``Dist`` accepts any of them and a bad one is reported under the variant it names. Only the parameters live
here; :mod:`agentsim.workload.distributions` draws from them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from agentsim.spec.base import MAX_COUNT, Strict


class _Bounded(Strict):
    """A distribution whose parameters stay below :data:`~agentsim.spec.base.MAX_COUNT` (2**53): a token count
    or a number of seconds past it is a typo, and would overflow the int64 tables once drawn."""

    @model_validator(mode="after")
    def _bounded(self) -> _Bounded:
        for name in type(self).model_fields:
            v = getattr(self, name)
            values = v if isinstance(v, list) else [v]
            for x in values:
                if isinstance(x, int | float) and not isinstance(x, bool) and x > MAX_COUNT:
                    raise ValueError(f"{name} ({x:g}) must be at most 2**53 ({MAX_COUNT:.3g})")
        return self


class Constant(_Bounded):
    """Always ``value``."""

    kind: Literal["constant"] = "constant"
    value: NonNegativeFloat
    """the value every draw takes"""


class Uniform(_Bounded):
    """Uniform on ``[low, high]``."""

    kind: Literal["uniform"] = "uniform"
    low: NonNegativeFloat
    """smallest value"""
    high: NonNegativeFloat
    """largest value (>= low)"""

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class Exponential(_Bounded):
    """Exponential with the given mean (CV 1)."""

    kind: Literal["exponential"] = "exponential"
    mean: PositiveFloat
    """mean (and standard deviation)"""


class Lognormal(_Bounded):
    """Lognormal given by its ``median`` and the shape ``sigma`` (std-dev of the log).

    ``p90 = median * exp(1.2816 * sigma)``; ``mean = median * exp(sigma**2 / 2)``. Optionally clipped.
    """

    kind: Literal["lognormal"] = "lognormal"
    median: PositiveFloat
    """the median, exp(mu)"""
    sigma: NonNegativeFloat
    """standard deviation of the log; 0 is a constant, 1 a heavy tail (p90 = 3.6 x median)"""
    min: NonNegativeFloat | None = None
    """draws below are raised to it (none: no lower clip)"""
    max: PositiveFloat | None = None
    """draws above are lowered to it (none: no upper clip)"""

    @model_validator(mode="after")
    def _clip_ordered(self) -> Lognormal:
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Gamma(_Bounded):
    """Gamma with the given mean and coefficient of variation (std/mean)."""

    kind: Literal["gamma"] = "gamma"
    mean: PositiveFloat
    """mean"""
    cv: PositiveFloat
    """coefficient of variation, std / mean (1 is exponential; above 1 burstier)"""


class Empirical(_Bounded):
    """Draw from ``values`` with optional ``weights`` (normalised)."""

    kind: Literal["empirical"] = "empirical"
    values: list[NonNegativeFloat] = Field(min_length=1)
    """the values to draw from (e.g. measured token counts)"""
    weights: list[NonNegativeFloat] | None = None
    """relative weight of each value, normalised (none: equally likely)"""

    @model_validator(mode="after")
    def _weights(self) -> Empirical:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"weights has {len(self.weights)} entries but values has {len(self.values)}")
            if sum(self.weights) <= 0:
                raise ValueError("weights must not all be zero")
        return self


Dist = Annotated[Constant | Uniform | Exponential | Lognormal | Gamma | Empirical, Field(discriminator="kind")]
"""A distribution of a non-negative quantity (tokens, seconds, counts)."""
