"""agentsim: what it costs, per delivered token and per finished agent task, to serve an agentic workload on
a given cluster, and what latency users see. A discrete-event simulation, no hardware needed.

>>> import agentsim
>>> result = agentsim.simulate(agentsim.load_scenario("scenario.yaml"))  # doctest: +SKIP
>>> result.summary["usd_per_mtok_output"]  # doctest: +SKIP
"""

from __future__ import annotations

from agentsim._version import __version__
from agentsim.api import (
    RunResult,
    ScenarioError,
    default_scenario,
    load_scenario,
    save_run,
    simulate,
)
from agentsim.build import warn_if_stale
from agentsim.planning.sweep import sweep

warn_if_stale()

__all__ = [
    "RunResult",
    "ScenarioError",
    "__version__",
    "default_scenario",
    "load_scenario",
    "save_run",
    "simulate",
    "sweep",
]
