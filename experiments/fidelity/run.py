"""Fidelity of the default roofline on public measurements, per group: MAPE of throughput, TPOT and TTFT.

Runs `agentsim fidelity` (``agentsim.planning.fidelity.run_fidelity``) on each CSV of ``data/`` (one group per
file: dense Hopper, Blackwell, AMD, MoE; ``data/README.md`` names the sources) and prints, per group, the number
of rows simulated and the MAPE of output tokens/s, mean TPOT and mean TTFT where measured. ``--holdout K``
calibrates per deployment on K rows (``agentsim calibrate``'s default coefficients: ``mfu, mbu, overhead_s``, the
front end where TTFT is measured, the kernel time where the floor binds) and reports the held-out rows.
``--quick`` simulates the first rows of each group with short windows (a smoke test); ``--group`` runs one group.

    python experiments/fidelity/run.py [--holdout 3] [--jobs N] [--csv out.csv] [--quick] [--group moe]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentsim.planning.calibrate import HarnessOptions
from agentsim.planning.calibrate.measurements import read_measurements
from agentsim.planning.fidelity import FidelityReport, holdout, run_fidelity

DATA = Path(__file__).resolve().parent / "data"
GROUPS = ("dense_hopper", "blackwell", "amd", "moe")
METRICS = (("output_tok_s", "tok/s"), ("tpot_s", "TPOT"), ("ttft_s", "TTFT"))


def _cell(report: FidelityReport, metric: str, role: str | None) -> str:
    value = report.mape(metric, role=role)
    n = sum(1 for r in report.select(role) if r.error_pct(metric) is not None)
    return "-" if value is None else f"{value:5.1f}% ({n})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holdout", type=int, default=0, help="calibrate on K rows per deployment, report the rest")
    ap.add_argument("--max-evals", type=int, default=60, help="simulations budget of each fit")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="alias of --jobs")
    ap.add_argument("--quick", action="store_true", help="first 2 rows per group, 1.5 waves: a smoke test")
    ap.add_argument("--group", action="append", choices=GROUPS, help="only this group (repeatable; default: all)")
    ap.add_argument("--csv", type=Path, default=None, help="write predicted vs measured per row (one file per group)")
    args = ap.parse_args(argv)
    jobs = args.workers or args.jobs
    options = HarnessOptions(waves=1.5, warmup_waves=0.5, min_requests=20) if args.quick else HarnessOptions()
    header = f"{'group':<14}{'rows':>6}  " + "  ".join(f"{label + ' MAPE (n)':>16}" for _, label in METRICS)
    print(header)
    for group in args.group or GROUPS:
        measurements = read_measurements(DATA / f"{group}.csv")
        if args.quick:
            measurements = measurements[:2]
        if args.holdout:
            result = holdout(measurements, k=args.holdout, options=options, max_evals=args.max_evals, jobs=jobs)
            reports = [("default", result.default, None), ("held-out", result.calibrated, "held-out")]
        else:
            reports = [("default", run_fidelity(measurements, options=options, jobs=jobs, title=group), None)]
        for name, report, role in reports:
            ran = sum(1 for r in report.select(role) if r.error is None)
            cells = "  ".join(f"{_cell(report, m, role):>16}" for m, _ in METRICS)
            print(f"{group + ('' if name == 'default' else ' ' + name):<14}{ran:>6}  {cells}", flush=True)
            for r in report.failures():
                print(f"    not simulated: row {r.index}: {r.error}", file=sys.stderr)
            if args.csv is not None:
                report.write_csv(args.csv.with_name(f"{args.csv.stem}_{group}_{name}{args.csv.suffix}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
