"""Distributions of non-negative quantities: the random parts of a workload (tokens, seconds, counts).

Each kind is a small model tagged by ``kind``; :data:`Dist` is their tagged union, so a profile field typed
``Dist`` accepts any of them and a bad one is reported under the variant it names. Only the parameters live
here; :mod:`agentsim.workload.distributions` draws from them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from agentsim.spec.base import Strict


class Constant(Strict):
    """Always ``value``."""

    kind: Literal["constant"] = "constant"
    value: NonNegativeFloat


class Uniform(Strict):
    """Uniform on ``[low, high]``."""

    kind: Literal["uniform"] = "uniform"
    low: NonNegativeFloat
    high: NonNegativeFloat

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class Exponential(Strict):
    """Exponential with the given mean (CV 1)."""

    kind: Literal["exponential"] = "exponential"
    mean: PositiveFloat


class Lognormal(Strict):
    """Lognormal given by its ``median`` and the shape ``sigma`` (std-dev of the log).

    ``p90 = median * exp(1.2816 * sigma)``; ``mean = median * exp(sigma**2 / 2)``. Optionally clipped.
    """

    kind: Literal["lognormal"] = "lognormal"
    median: PositiveFloat
    sigma: NonNegativeFloat
    min: NonNegativeFloat | None = None
    max: PositiveFloat | None = None

    @model_validator(mode="after")
    def _clip_ordered(self) -> Lognormal:
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Gamma(Strict):
    """Gamma with the given mean and coefficient of variation (std/mean)."""

    kind: Literal["gamma"] = "gamma"
    mean: PositiveFloat
    cv: PositiveFloat


class Empirical(Strict):
    """Draw from ``values`` with optional ``weights`` (normalised)."""

    kind: Literal["empirical"] = "empirical"
    values: list[NonNegativeFloat] = Field(min_length=1)
    weights: list[NonNegativeFloat] | None = None

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
