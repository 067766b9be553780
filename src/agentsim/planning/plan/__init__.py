"""Capacity planning: which deployments meet the SLOs, with how few replicas, how sure, and at what cost.

::

    from agentsim.planning.plan import plan, Space
    result = plan(base, {"ttft_p99_s": 2, "task_p95_s": 900}, space=Space(hardware=["h200", "b200"]))
    print(result.answer)                          # the cheapest deployment that meets the SLOs at 95% confidence
    result.save("plan.json")                      # everything, reloadable: PlanResult.load("plan.json")

The modules, in the order a plan runs:

* :mod:`~agentsim.planning.plan.space`: the candidate deployments (hardware x tp x pp x expert parallelism and
  DP attention x precisions x batch limit x engine preset x aggregated or disaggregated);
* :mod:`~agentsim.planning.plan.bounds`: each candidate's analytic lower bound on replicas, without simulating;
* :mod:`~agentsim.planning.plan.search`: the search from the bound: short runs first, full runs near the
  answer, replications until each SLO is confidently met or missed;
* :mod:`~agentsim.planning.plan.slo` and :mod:`~agentsim.planning.plan.confidence`: the SLO grammar, the values
  a run gives, pooled statistics with bootstrap intervals and the meets / fails / marginal decision;
* :mod:`~agentsim.planning.plan.result`: the ranked rows and the saved plan;
* :mod:`~agentsim.planning.plan.emit`: launch arguments and manifests for the chosen deployment.

**Ranking.** Candidates that meet the SLOs are ranked by ``$/hour`` (the provisioned cost of the cluster
found), then by ``$/Mtok`` of output (``rank_by="usd_per_mtok"`` swaps the two); then the marginal ones, the
infeasible ones and the skipped ones.
"""

from agentsim.planning.plan.result import Evaluation, PlanResult, PlanRow, SloEstimate
from agentsim.planning.plan.search import evaluate, plan
from agentsim.planning.plan.slo import Slo, parse_slo, percentile, statistic, values
from agentsim.planning.plan.space import Candidate, Space

__all__ = [
    "Candidate",
    "Evaluation",
    "PlanResult",
    "PlanRow",
    "Slo",
    "SloEstimate",
    "Space",
    "evaluate",
    "parse_slo",
    "percentile",
    "plan",
    "statistic",
    "values",
]
