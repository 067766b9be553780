"""A planner on a large model with sub-agents on a small one, against everything on the large model: $/task.

Runs the built-in example ``planner-subagents`` as written, then with every role on Llama-3.3-70B and the 8B pool
replaced by 70B replicas (3 in all), and prints $/task, TTFT p99 and the cost per model for both (the numbers quoted
in the example's comments). Run: ``python experiments/multi_model.py [--hours H]``.
"""

from __future__ import annotations

import argparse

import yaml

import agentsim
from agentsim import api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=1.0)
    a = ap.parse_args()
    base = yaml.safe_load(api.example_text("planner-subagents"))
    base["horizon_s"] = a.hours * 3600
    base["warmup_s"] = min(base["warmup_s"], base["horizon_s"] / 4)
    mixed = agentsim.load_scenario(base)
    large = dict(base)
    large["workload"] = [dict(base["workload"][0], overrides={})]
    large["cluster"] = dict(base["cluster"], pools=[dict(base["cluster"]["pools"][0], replicas=3)])
    for name, s in (("planner 70B + sub-agents 8B", mixed), ("everything on 70B", agentsim.load_scenario(large))):
        r = api.run(s)
        m = r.summary
        per_model = ", ".join(f"{k}: ${v['usd']:.2f} ({v['calls_completed']} calls)" for k, v in m["by_model"].items())
        print(f"{name}: $/task {m['usd_per_task']:.4f}, $/hour {m['usd_per_hour']:.2f}, TTFT p99 "
              f"{m['ttft_s']['p99']:.2f} s, tasks/h {m['tasks_per_hour']:.0f}; {per_model}", flush=True)


if __name__ == "__main__":
    main()
