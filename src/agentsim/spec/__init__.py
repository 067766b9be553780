"""The scenario: everything a user can say about a run, as one typed, frozen tree.

A scenario names a workload (agent profiles and how tasks arrive), a cluster (pools of replicas of a
deployment, each with a throughput curve, and a router) and a pricing rule. It is pure data: pydantic v2
models, ``frozen=True`` and ``extra="forbid"`` so a typo is an error rather than a silently ignored key, and
polymorphism by tagged unions on ``kind`` so error messages name the variant that failed. Nothing here has
behaviour; the layers below read these objects and never mutate them.

One module per part of the tree: :mod:`~agentsim.spec.base` (the strict base model),
:mod:`~agentsim.spec.distributions`, :mod:`~agentsim.spec.workload`, :mod:`~agentsim.spec.cluster`,
:mod:`~agentsim.spec.pricing` and :mod:`~agentsim.spec.scenario` (the root); this package re-exports every
model so that the spec reads as one namespace (``spec.Scenario``, ``spec.PoolSpec``).
:mod:`agentsim.spec.load` turns YAML files, mappings and ``path=value`` overrides into a validated
:class:`Scenario`, with errors that name each bad field by its path.

Checks that need the catalog (does the model fit the memory, is ``tp`` a divisor of the GPUs per node) live in
:mod:`agentsim.resolve`, because the spec itself knows no data files.
"""

from __future__ import annotations

from agentsim.spec.base import Strict
from agentsim.spec.cluster import (
    Admission,
    Autoscale,
    ClusterSpec,
    CurvePerf,
    CurvePoint,
    Deployment,
    EnginePreset,
    EngineSpec,
    KvLink,
    KvOffload,
    LeastLoad,
    LinearPerf,
    PerfSpec,
    PoolSpec,
    Precision,
    PrefixAware,
    RooflinePerf,
    RoundRobin,
    RouterSpec,
    SessionAffinity,
    SpeculativeSpec,
    TablePerf,
    TablePoint,
    ToolPool,
)
from agentsim.spec.distributions import Constant, Dist, Empirical, Exponential, Gamma, Lognormal, Uniform
from agentsim.spec.pricing import DecodePowerFraction, PriceTier, PricingSpec, Pue, Rental, Tco
from agentsim.spec.scenario import Scenario
from agentsim.spec.workload import (
    AgentProfile,
    AnyWorkload,
    Arrivals,
    Closed,
    FanOut,
    FixedProfile,
    GammaArrivals,
    Poisson,
    Profile,
    Slo,
    TraceWorkload,
    WorkloadSpec,
)

__all__ = [
    "Admission",
    "AgentProfile",
    "AnyWorkload",
    "Arrivals",
    "Autoscale",
    "Closed",
    "ClusterSpec",
    "Constant",
    "CurvePerf",
    "CurvePoint",
    "DecodePowerFraction",
    "Deployment",
    "Dist",
    "Empirical",
    "EnginePreset",
    "EngineSpec",
    "Exponential",
    "FanOut",
    "FixedProfile",
    "Gamma",
    "GammaArrivals",
    "KvLink",
    "KvOffload",
    "LeastLoad",
    "LinearPerf",
    "Lognormal",
    "PerfSpec",
    "Poisson",
    "PoolSpec",
    "Precision",
    "PrefixAware",
    "PriceTier",
    "PricingSpec",
    "Profile",
    "Pue",
    "Rental",
    "RooflinePerf",
    "RoundRobin",
    "RouterSpec",
    "Scenario",
    "SessionAffinity",
    "Slo",
    "SpeculativeSpec",
    "Strict",
    "TablePerf",
    "TablePoint",
    "Tco",
    "ToolPool",
    "TraceWorkload",
    "Uniform",
    "WorkloadSpec",
]
