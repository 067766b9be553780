"""Fidelity of the default roofline on public measurements, per group: MAPE of throughput, TPOT and TTFT.

Runs `agentsim fidelity` (``agentsim.planning.fidelity.run_fidelity``) on each CSV of ``data/`` (one group per
file: dense Hopper, Blackwell, AMD, MoE, Ampere; ``data/README.md`` names the sources) and prints, per group, the number
of rows simulated and the MAPE of output tokens/s, mean TPOT and mean TTFT where measured, over all its rows and
over its prompt-heavy and output-heavy rows (``agentsim.analysis.accuracy.regime_of``). ``--holdout K``
calibrates per deployment on K rows (``agentsim calibrate``'s default coefficients: ``mfu, mbu, overhead_s``, the
front end where TTFT is measured, the kernel time where the floor binds, the per-sequence cost where the rows
tell it) and reports the held-out rows.
``--quick`` simulates the first rows of each group with short windows (a smoke test); ``--group`` runs one group.
``--accuracy`` rewrites the ``measured`` blocks of the package's ``catalog/accuracy.yaml`` (what a run's summary
says of its pools' accuracy, ``agentsim.analysis.accuracy``) from this run of every group; the classes' other
fields are kept. ``tests/test_accuracy.py`` fails when the file no longer agrees with the model.

    python experiments/fidelity/run.py [--holdout 3] [--jobs N] [--csv out.csv] [--quick] [--group moe]
    python experiments/fidelity/run.py --jobs 2 --accuracy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from agentsim.analysis.accuracy import REGIMES, AccuracyTable, read_accuracy
from agentsim.catalog import load_catalog
from agentsim.files import OutputExistsError, OutputPathError, check_output, write_text
from agentsim.planning.calibrate import HarnessOptions
from agentsim.planning.calibrate.measurements import read_measurements
from agentsim.planning.fidelity import FidelityReport, holdout, run_fidelity

DATA = Path(__file__).resolve().parent / "data"
GROUPS = ("dense_hopper", "blackwell", "amd", "moe", "ampere")
METRICS = (("output_tok_s", "tok/s"), ("tpot_s", "TPOT"), ("ttft_s", "TTFT"))
ACCURACY = Path(__file__).resolve().parents[2] / "src" / "agentsim" / "catalog" / "accuracy.yaml"
ACCURACY_HEADER = """\
# What the default roofline's step times are worth, per class of deployment: how far they fell from the public
# measurements of experiments/fidelity/data (docs/FIDELITY.md). Read by agentsim.analysis.accuracy, which puts a
# pool's figures in its run's summary and warns where they miss the goal. Each class's `measured` block is
# written by `python experiments/fidelity/run.py --jobs 2 --accuracy`; the other fields are edited by hand.
"""


def default_report(group: str, jobs: int = 1, options: HarnessOptions | None = None, rows: int = 0) -> FidelityReport:
    """The default roofline's fidelity report of ``group``'s public rows (its first ``rows`` only, when given)."""
    measurements = read_measurements(DATA / f"{group}.csv")
    opts = options if options is not None else HarnessOptions()
    return run_fidelity(measurements[:rows] if rows else measurements, options=opts, jobs=jobs, title=group)


def default_reports(jobs: int = 1, options: HarnessOptions | None = None) -> dict[str, FidelityReport]:
    """The default roofline's fidelity report of each group's public rows."""
    return {g: default_report(g, jobs, options) for g in GROUPS}


def accuracy_table(reports: dict[str, FidelityReport], current: AccuracyTable) -> AccuracyTable:
    """``current`` with each class's ``measured`` block replaced by its group's report."""
    catalog = load_catalog()
    classes = [c.model_copy(update={"measured": type(c.measured).model_validate(reports[c.id].measured(catalog))})
               for c in current.classes]  # fmt: skip
    return current.model_copy(update={"classes": classes})


def write_accuracy(table: AccuracyTable, path: Path) -> None:
    """``table`` as YAML under :data:`ACCURACY_HEADER`, written atomically over ``path``."""
    body = yaml.safe_dump(table.model_dump(mode="json"), sort_keys=False, width=110, default_flow_style=None)
    write_text(path, ACCURACY_HEADER + body, overwrite=True)


def _cell(report: FidelityReport, metric: str, role: str | None) -> str:
    value = report.mape(metric, role=role)
    return "-" if value is None else f"{value:5.1f}% ({report.count(metric, role=role)})"


def _csv_path(base: Path, group: str, name: str) -> Path:
    """The CSV of ``group``'s ``name`` report (default or held-out) next to ``--csv``'s path."""
    return base.with_name(f"{base.stem}_{group}_{name}{base.suffix}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holdout", type=int, default=0, help="calibrate on K rows per deployment, report the rest")
    ap.add_argument("--max-evals", type=int, default=60, help="simulations budget of each fit")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="alias of --jobs")
    ap.add_argument("--quick", action="store_true", help="first 2 rows per group, 1.5 waves: a smoke test")
    ap.add_argument("--group", action="append", choices=GROUPS, help="only this group (repeatable; default: all)")
    ap.add_argument("--csv", type=Path, default=None, help="write predicted vs measured per row (one file per group)")
    ap.add_argument("--accuracy", action="store_true", help=f"rewrite the measured blocks of {ACCURACY.name}")
    ap.add_argument("--overwrite", action="store_true", help="replace CSV files of an earlier run")
    args = ap.parse_args(argv)
    for option, value, least in (("--holdout", args.holdout, 0), ("--max-evals", args.max_evals, 1),
                                 ("--jobs", args.jobs, 1), ("--workers", args.workers, 1)):  # fmt: skip
        if value is not None and value < least:  # say so before minutes of simulation
            ap.error(f"{option} must be at least {least}, got {value}")
    if args.accuracy and (args.quick or args.holdout or args.group):
        ap.error("--accuracy needs the default run of every group (no --quick, --holdout or --group)")
    groups = list(dict.fromkeys(args.group or GROUPS))  # a group named twice runs once
    names = ("default", "held-out") if args.holdout else ("default",)
    csvs = {(g, n): _csv_path(args.csv, g, n) for g in groups for n in names} if args.csv is not None else {}
    for path in csvs.values():  # say so before minutes of simulation, not after
        try:
            check_output(path, overwrite=args.overwrite)
        except (OutputExistsError, OutputPathError) as e:
            ap.error(f"{e} (--csv)")
    jobs = args.workers or args.jobs
    options = HarnessOptions(waves=1.5, warmup_waves=0.5, min_requests=20) if args.quick else HarnessOptions()
    header = f"{'group':<14}{'rows':>6}  " + "  ".join(f"{label + ' MAPE (n)':>16}" for _, label in METRICS)
    print(header)
    defaults: dict[str, FidelityReport] = {}
    for group in groups:
        if args.holdout:
            measurements = read_measurements(DATA / f"{group}.csv")[: 2 if args.quick else None]
            result = holdout(measurements, k=args.holdout, options=options, max_evals=args.max_evals, jobs=jobs)
            reports = [("default", result.default, None), ("held-out", result.calibrated, "held-out")]
        else:
            defaults[group] = default_report(group, jobs, options, rows=2 if args.quick else 0)
            reports = [("default", defaults[group], None)]
        for name, report, role in reports:
            ran = sum(1 for r in report.select(role) if r.error is None)
            cells = "  ".join(f"{_cell(report, m, role):>16}" for m, _ in METRICS)
            print(f"{group + ('' if name == 'default' else ' ' + name):<14}{ran:>6}  {cells}", flush=True)
            for regime in REGIMES:  # the class's rows by regime (what a run of that regime is judged on)
                part = report.regime(regime)
                n = sum(1 for r in part.select(role) if r.error is None)
                if n:
                    cells = "  ".join(f"{_cell(part, m, role):>16}" for m, _ in METRICS)
                    print(f"  {regime:<12}{n:>6}  {cells}", flush=True)
            for r in report.failures():
                print(f"    not simulated: row {r.index}: {r.error}", file=sys.stderr)
            if csvs:
                report.write_csv(csvs[group, name], overwrite=args.overwrite)
    if args.accuracy:
        current = read_accuracy(ACCURACY)
        write_accuracy(accuracy_table(defaults, current), ACCURACY)
        print(f"wrote {ACCURACY}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
