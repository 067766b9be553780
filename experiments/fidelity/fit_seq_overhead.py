"""Fit the engines' per-sequence step cost on the public rows, with leave-one-deployment-out cross-validation.

The roofline charges each step ``overhead_s_per_seq`` per decoding sequence (the engine's CPU work per running
sequence: scheduling, sampling, detokenizing, streaming; ``docs/FIDELITY.md``). No public figure gives it for the
modelled engine versions, so its default per engine is fitted here on ``data/*.csv`` and nothing else:

1. every row is simulated as ``run.py`` does (its preset, harness and flags), once per value of the cost on a
   grid (``--grid``, microseconds per sequence per step), the cost set on the roofline so that it wins over any
   preset or harness default;
2. rows are split by engine family: ``vllm-v1`` (vLLM >= 0.8), ``vllm-v0`` (vLLM < 0.8, which the harness runs
   with V0's defaults), ``sglang``, ``trtllm`` (``trtllm-serve``), ``trtllm-bench`` (offline, no server; fix it
   at 0 as the harness does: ``--fix trtllm-bench=0``);
3. a family's cost is the grid value that minimizes the mean absolute log error of output tok/s and mean TPOT
   (the two metrics of the goal) over its rows that ran at least ``--min-batch`` sequences (64: the closed-loop
   clients, the burst's requests, or for a Poisson row the measured tok/s x TPOT, Little's law). Below that the
   term is a few percent of a step and the fit would only absorb the step model's other errors (a
   concurrency-4 row 150% optimistic cannot be a per-sequence cost); every row is still reported;
4. cross-validation: for each deployment (``agentsim.planning.fidelity.group_key``: hardware, model, GPUs,
   precision, engine), the cost is refitted on the family's other deployments and the held-out deployment's rows
   are predicted at that value. The MAPE per data group (dense Hopper, Blackwell, AMD, MoE) over these held-out
   predictions is the honest figure: no row is predicted by a cost fitted on itself.

    python experiments/fidelity/fit_seq_overhead.py [--jobs 2] [--grid 0,10,20,...] [--cache out.json] \
        [--fix trtllm-bench=0]

``--fix FAMILY=US`` sets a family's cost instead of fitting it (in the in-sample and cross-validated columns).

``--cache`` keeps the simulated grid (a JSON of predictions per value and row) so the analysis can be rerun.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentsim import spec
from agentsim.files import write_text
from agentsim.planning.calibrate import HarnessOptions, PointResult
from agentsim.planning.calibrate import mape as calibrate_mape
from agentsim.planning.calibrate.bench import measured_by_trtllm_bench, vllm_version
from agentsim.planning.calibrate.harness import label_preset
from agentsim.planning.calibrate.measurements import Measurement, read_measurements
from agentsim.planning.fidelity import PerfOverride, group_key, run_fidelity

DATA = Path(__file__).resolve().parent / "data"
GROUPS = ("dense_hopper", "blackwell", "amd", "moe")
GOAL = ("output_tok_s", "tpot_s")
METRICS = ("output_tok_s", "tpot_s", "ttft_s")
DEFAULT_GRID = "0,10,20,30,40,50,60,80,100,130,160,200,300,400,600"

Predictions = dict[str, list[dict[str, float | None] | None]]  # grid value (us) -> per row, None: not simulated


def family(m: Measurement) -> str:
    """The engine family whose cost a row informs."""
    preset = label_preset(m.labels) or "vllm"
    if preset == "trtllm" and measured_by_trtllm_bench(m):
        return "trtllm-bench"  # offline, no server: the harness runs it at 0 (serving/presets.py)
    if preset == "vllm":
        version = vllm_version(m.labels)
        return "vllm-v0" if version is not None and version < (0, 8) else "vllm-v1"
    return preset


def simulate(
    rows: Sequence[Measurement], grid: Sequence[float], jobs: int, options: HarnessOptions | None = None
) -> Predictions:
    """Predictions of every row at every grid value (microseconds per sequence per step)."""
    out: Predictions = {}
    for us in grid:
        perf = spec.RooflinePerf(overhead_s_per_seq=us * 1e-6)
        report = run_fidelity(rows, overrides=[PerfOverride(perf)], jobs=jobs, options=options)
        out[f"{us:g}"] = [None if r.error is not None else dict(r.predicted) for r in report.rows]
        print(f"  simulated {len(rows)} rows at {us:g} us", flush=True)
    return out


def _err(m: Measurement, pred: Mapping[str, float | None] | None, metric: str) -> float | None:
    """Relative error (predicted / measured - 1), None when either is missing."""
    meas = getattr(m, metric)
    value = None if pred is None else pred.get(metric)
    if meas is None or value is None or meas <= 0 or value <= 0:
        return None
    return value / meas - 1.0


def batch(m: Measurement) -> float:
    """Sequences the row's engine ran at once, from its load: clients, burst size, or tok/s x TPOT."""
    if m.concurrency:
        return float(m.concurrency)
    if m.num_requests and m.labels.get("load") == "burst":
        return float(m.num_requests)
    return (m.output_tok_s or 0.0) * (m.tpot_s or 0.0)


def loss(rows: Sequence[int], ms: Sequence[Measurement], preds: Sequence[Mapping[str, float | None] | None]) -> float:
    """Mean absolute log error of the goal metrics over ``rows``."""
    terms = [
        abs(math.log1p(e)) for i in rows for metric in GOAL if (e := _err(ms[i], preds[i], metric)) is not None
    ]
    return sum(terms) / len(terms) if terms else math.inf


def best(rows: Sequence[int], ms: Sequence[Measurement], table: Predictions) -> str:
    """The grid value (key) with the smallest loss over ``rows`` (the smallest value on ties)."""
    return min(table, key=lambda k: (loss(rows, ms, table[k]), float(k)))


def mape(pairs: Sequence[tuple[Measurement, Mapping[str, float | None] | None]], metric: str) -> tuple[float, int]:
    """MAPE (%) and count of ``metric`` over (measurement, prediction) pairs: calibrate's own (``error_pct``, so a
    prediction of 0 counts as -100% as it does in ``agentsim fidelity``; the log loss above has to skip it)."""
    points = [PointResult(m, p) for m, p in pairs if p is not None]
    n = sum(1 for pt in points if pt.error_pct(metric) is not None)
    value = calibrate_mape(points, metric)
    return (math.nan if value is None else value), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="alias of --jobs")
    ap.add_argument("--quick", action="store_true", help="first 2 rows per group, costs 0 and 100 us: a smoke test")
    ap.add_argument("--grid", default=DEFAULT_GRID, help="per-sequence costs to simulate, microseconds")
    ap.add_argument("--min-batch", type=float, default=64.0, help="fit on rows with at least this many sequences")
    ap.add_argument("--fix", action="append", default=[], help="FAMILY=US: a family's cost set, not fitted")
    ap.add_argument("--cache", type=Path, default=None, help="JSON of simulated predictions (read if it exists)")
    args = ap.parse_args(argv)
    grid = [0.0, 100.0] if args.quick else [float(x) for x in args.grid.split(",")]
    options = HarnessOptions(waves=1.5, warmup_waves=0.5, min_requests=20) if args.quick else None
    ms: list[Measurement] = []
    data_group: list[str] = []
    for g in GROUPS:
        rows = read_measurements(DATA / f"{g}.csv")
        if args.quick:
            rows = rows[:2]
        ms += rows
        data_group += [g] * len(rows)
    table: Predictions = {}
    if args.cache is not None and args.cache.exists() and not args.quick:
        table = json.loads(args.cache.read_text(encoding="utf-8"))
    missing = [us for us in grid if f"{us:g}" not in table]
    if missing:
        table |= simulate(ms, missing, args.workers or args.jobs, options)
        if args.cache is not None and not args.quick:
            write_text(args.cache, json.dumps(table), overwrite=True)  # the cache grows by the values it lacked
    table = {f"{us:g}": table[f"{us:g}"] for us in grid}

    fam = [family(m) for m in ms]
    dep = [group_key(m) for m in ms]
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(fam):
        if batch(ms[i]) >= args.min_batch:
            by_family[f].append(i)
    all_rows: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(fam):
        all_rows[f].append(i)

    print(f"\nfit per engine family on rows of >= {args.min_batch:g} sequences (mean |log error| of tok/s and TPOT):")
    fitted: dict[str, str] = {}
    fixed = {f: f"{float(us):g}" for f, us in (x.split("=") for x in args.fix)}
    for f, rows in sorted(by_family.items()):
        fitted[f] = best(rows, ms, table)
        curve = "  ".join(f"{k}:{loss(rows, ms, table[k]):.3f}" for k in table)
        n_dep = len({dep[i] for i in rows})
        print(f"  {f:<8} {len(rows):>4} rows, {n_dep:>2} deployments -> {fitted[f]} us   [{curve}]")

    print("\nleave-one-deployment-out: cost refitted without each deployment, its rows predicted at that cost")
    cv: list[Mapping[str, float | None] | None] = [None] * len(ms)
    for f, rows in sorted(all_rows.items()):
        for d in sorted({dep[i] for i in rows}):
            held = [i for i in rows if dep[i] == d]
            train = [i for i in by_family[f] if dep[i] != d]
            k = fixed.get(f) or (best(train, ms, table) if train else "0")
            for i in held:
                cv[i] = table[k][i]
            print(f"  {f:<8} {d:<70} {len(held):>3} rows  fitted without it: {k} us")

    zero = table.get(f"{0.0:g}")
    print(f"\n{'group':<14}{'metric':<14}{'cost 0':>14}{'in-sample':>14}{'held-out (CV)':>16}")
    for g in GROUPS:
        idx = [i for i in range(len(ms)) if data_group[i] == g]
        for metric in METRICS:
            cells = []
            chosen = fitted | fixed
            for preds in (zero, [table[chosen.get(fam[i], "0")][i] for i in range(len(ms))], cv):
                if preds is None:
                    cells.append("-")
                    continue
                v, n = mape([(ms[i], preds[i]) for i in idx], metric)
                cells.append("-" if n == 0 else f"{v:.1f}% ({n})")
            print(f"{g:<14}{metric:<14}{cells[0]:>14}{cells[1]:>14}{cells[2]:>16}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
