"""The scenario root: workloads x cluster x pricing over a simulated horizon.

:class:`Scenario` is what a scenario file validates to. Its own validator checks what spans its parts (the
warm-up window lies inside the horizon, workload labels are unique); each part checks itself.
"""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from agentsim.spec.base import Strict
from agentsim.spec.cluster import ClusterSpec
from agentsim.spec.pricing import PricingSpec, Rental
from agentsim.spec.workload import AnyWorkload

MAX_SAMPLES = 1_000_000
"""Most samples of the replicas' time series a scenario may ask for (horizon_s / sample_interval_s)."""


class Scenario(Strict):
    """One simulated run: workload x cluster x pricing over ``horizon_s`` of simulated time."""

    name: str = "scenario"
    """a label for the run (its directory name, report titles)"""
    seed: int = Field(0, ge=0)
    """root of every random stream: the same seed gives the same run, bit for bit"""
    horizon_s: PositiveFloat = 600.0
    """simulated seconds; work still running at the end is reported as unfinished (censored)"""
    warmup_s: NonNegativeFloat = Field(0.0, description="excluded from summary statistics")
    sample_interval_s: PositiveFloat = Field(10.0, description="period of the replicas time series")
    workload: list[AnyWorkload] = Field(min_length=1)
    """one or more streams of tasks: synthetic (a profile and arrivals) or a recorded trace"""
    cluster: ClusterSpec
    """the serving cluster: pools of replicas, routing, tool workers"""
    pricing: PricingSpec = Rental()
    """what a GPU-hour costs: rented (catalog tiers) or owned (TCO)"""
    catalog: list[str] = Field(
        default_factory=list,
        description="user catalog YAML files (hardware, cpus, models, prices) added to the built-in catalog in "
        "order, replacing entries of the same id; a relative path is read from the scenario file's directory",
    )

    @model_validator(mode="after")
    def _window(self) -> Scenario:
        if self.warmup_s >= self.horizon_s:
            raise ValueError(f"warmup_s ({self.warmup_s}) must be below horizon_s ({self.horizon_s})")
        samples = self.horizon_s / self.sample_interval_s
        if samples > MAX_SAMPLES:
            # Each sample is one row per replica, held until the run ends: an interval far below the horizon's
            # scale is a typo that would fill memory before the first event.
            raise ValueError(
                f"sample_interval_s ({self.sample_interval_s:g}) gives {samples:.3g} samples over horizon_s "
                f"({self.horizon_s:g}); at most {MAX_SAMPLES:,}: set sample_interval_s to at least "
                f"{self.horizon_s / MAX_SAMPLES:.3g}"
            )
        labels = [w.label for w in self.workload]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"workload names must be unique (set `name`); repeated: {', '.join(dupes)}")
        return self
