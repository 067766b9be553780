"""Where does a public row's error come from: the step time or the batch the engine forms?

For each row of ``data/<group>.csv`` it simulates the condition as ``run.py`` does and prints, next to the
measured throughput, TPOT and the batch they imply (Little's law: decoding sequences ~= output tok/s x TPOT),
the simulated ones with the engine's limits: KV capacity (tokens), ``max_num_seqs``, the largest and the
time-averaged running batch while busy, the mean step time and the output tokens per step.

    python experiments/fidelity/diagnose.py moe [--rows 0,5,9] [--match gpt-oss]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agentsim.api import run
from agentsim.catalog import load_catalog
from agentsim.planning.calibrate import HarnessOptions, condition_engine, pool_from_labels
from agentsim.planning.calibrate.harness import plan_condition, replace_model, scenario_for
from agentsim.planning.calibrate.measurements import read_measurements
from agentsim.planning.fidelity import group_key

DATA = Path(__file__).resolve().parent / "data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("group")
    ap.add_argument("--rows", default="", help="comma-separated row indices (default: all)")
    ap.add_argument("--match", default="", help="only rows whose group key contains this")
    args = ap.parse_args(argv)
    catalog = load_catalog()
    opts = HarnessOptions()
    ms = read_measurements(DATA / f"{args.group}.csv")
    wanted = {int(x) for x in args.rows.split(",") if x.strip()}
    print(
        f"{'row':>3} {'isl/osl':>11} {'load':>9} | {'meas tok/s':>10} {'TPOT':>6} {'B~':>5} | {'sim tok/s':>9} "
        f"{'TPOT':>6} {'TTFT':>7} {'kv tok':>8} {'seqs':>5} {'Bmax':>5} {'Bavg':>6} {'step':>6} {'tok/st':>6}"
    )
    for i, m in enumerate(ms):
        key = group_key(m)
        if (wanted and i not in wanted) or args.match.lower() not in key.lower():
            continue
        pool = pool_from_labels(m, catalog)
        plan = plan_condition(pool, m, catalog, opts)
        sc = scenario_for(pool, m, plan, 0)
        sc = replace_model(sc, sample_interval_s=max(plan.horizon_s / 400.0, 1e-3))
        res = run(sc, catalog=catalog)
        rep = res.replicas.to_pandas() if hasattr(res.replicas, "to_pandas") else None
        assert rep is not None
        rep = rep[rep["pool"] == "bench"]
        busy = rep["running"] > 0
        bmax = int(rep["running"].max())
        bavg = float(rep.loc[busy, "running"].mean()) if busy.any() else 0.0
        last = rep.iloc[-1]
        steps = int(last["steps"])
        step_ms = 1e3 * float(last["busy_s"]) / steps if steps else float("nan")
        tok_step = float(last["output_tokens"]) / steps if steps else float("nan")
        s = res.summary
        calls = res.calls.to_pandas()
        done = calls["done_s"].to_numpy(dtype=float)
        gen = float(calls["generated_tokens"].sum())
        if plan.finite and np.isfinite(done).all():
            tok_s = gen / float(np.max(done))
        else:
            tok_s = float(s.get("output_tokens_per_s") or float("nan"))
        tpot = (s.get("tpot_s") or {}).get("mean")
        ttft = (s.get("ttft_s") or {}).get("mean")
        b_meas = (m.output_tok_s or 0) * (m.tpot_s or 0)
        load = m.labels.get("load", "") + (f" {m.num_requests}" if m.num_requests else "")
        if m.concurrency and m.labels.get("load") == "closed":
            load = f"c{m.concurrency:g}"
        kv = int(last["kv_capacity_tokens"])
        eng = condition_engine(pool, m, opts, catalog)
        print(
            f"{i:>3} {m.isl:>5.0f}/{m.osl:<5.0f} {load:>9} | {m.output_tok_s or 0:>10.0f} "
            f"{1e3 * (m.tpot_s or 0):>6.1f} {b_meas:>5.0f} | {tok_s:>9.0f} {1e3 * (tpot or 0):>6.1f} "
            f"{ttft or 0:>7.2f} {kv:>8} {eng.max_num_seqs or 0:>5} {bmax:>5} {bavg:>6.0f} {step_ms:>6.1f} "
            f"{tok_step:>6.0f}  {key} [{m.labels.get('engine_args', '')[:40]}]",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
