"""Fit Blackwell's serving shares on NVIDIA's dense FP4 tables, and test them on rows the fit never saw.

The roofline's default efficiencies are a microbenchmark fraction times a *serving share* (what a whole serving
step loses against an isolated GEMM or STREAM kernel; :mod:`agentsim.perf.efficiency`). The shares 0.86 and 0.88
were fitted on Hopper FP8 rows and applied to every GPU. On Blackwell FP4 the default is optimistic on every row of
NVIDIA's tables (+14..+78% on dense Llama, +81..+137% on Qwen3-235B) and on the public DeepSeek-R1 rows. This
script fits one (GEMM share, HBM share) pair for Blackwell the way the Hopper shares were fitted, on named data:

1. **fit rows**: the dense FP4 rows on B200 and GB200 of ``../shared/data/perf/trtllm_max_throughput.csv``
   (TensorRT-LLM v1.0 "Perf Overview", ``trtllm-bench`` offline; Llama-3.3-70B on one GPU and Llama-3.1-405B on
   four, each on both GPUs: 4 groups, 40 rows), simulated as ``agentsim fidelity`` does, for every pair of the
   grid, with the pair set on both GPUs' catalog entries;
2. the pair minimizing the fit rows' throughput MAPE;
3. **cross-validation**: each of the 4 groups predicted by the pair fitted on the other three; and, since a
   group's twin on the other GPU stays in that fit, each model predicted by the pair fitted on the other model's
   rows alone, and each GPU by the pair fitted on the other GPU's;
4. **held-out rows**, never in any fit: the MoE rows of the same tables (Qwen3-235B-A22B FP4 on 8 B200, expert
   parallel with data-parallel attention) and ``data/blackwell.csv`` (TensorRT-LLM's DeepSeek-R1 NVFP4 recipes on
   8 B200), at the fitted pair and at the Hopper shares.

    python experiments/fidelity/fit_serving_shares.py [--gemm 0.40,0.45,...,0.86] [--hbm 0.40,...,0.88] [--quick]

The grid runs in this process (``--workers`` is accepted and unused): the shares live in an in-memory copy of the
catalog, which worker processes, loading the packaged catalog, would not see. ``--quick``: one row per fit group,
a 2 x 2 grid and two held-out rows of each kind, a smoke test of the script.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from agentsim.catalog import Catalog, load_catalog
from agentsim.perf.efficiency import SERVING_GEMM_SHARE, SERVING_HBM_SHARE
from agentsim.planning.calibrate import pool_from_labels
from agentsim.planning.calibrate.measurements import Measurement, read_measurements
from agentsim.planning.fidelity import group_key, run_fidelity

HERE = Path(__file__).resolve().parent
TABLES = HERE.parents[2] / "shared" / "data" / "perf" / "trtllm_max_throughput.csv"
PUBLIC = HERE / "data" / "blackwell.csv"
BLACKWELL = ("b200", "gb200")


def with_shares(catalog: Catalog, gemm: float, hbm: float) -> Catalog:
    """``catalog`` with both Blackwell GPUs' serving shares set."""
    hardware = dict(catalog.hardware)
    for name in BLACKWELL:
        hw = hardware[name]
        assert hw.efficiency is not None
        eff = hw.efficiency.model_copy(update={"serving_gemm_share": gemm, "serving_hbm_share": hbm})
        hardware[name] = hw.model_copy(update={"efficiency": eff})
    return dataclasses.replace(catalog, hardware=hardware)


def errors(rows: Sequence[Measurement], catalog: Catalog) -> list[float | None]:
    """Signed throughput error (%) of every row, None where it could not be simulated."""
    report = run_fidelity(rows, catalog=catalog)
    return [r.error_pct("output_tok_s") if r.error is None else None for r in report.rows]


def mape(errs: Sequence[float | None]) -> float:
    """Mean absolute error (%) over the simulated rows."""
    vals = [abs(e) for e in errs if e is not None]
    return sum(vals) / len(vals) if vals else math.nan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=str(TABLES))
    ap.add_argument("--gemm", default="0.40,0.45,0.50,0.55,0.60,0.65,0.70,0.75,0.86")
    ap.add_argument("--hbm", default="0.40,0.45,0.50,0.55,0.60,0.65,0.70,0.75,0.88")
    ap.add_argument("--quick", action="store_true", help="one row per group, a 2 x 2 grid: a smoke test")
    ap.add_argument("--workers", type=int, default=1, help="accepted for a uniform interface; unused (docstring)")
    args = ap.parse_args(argv)
    if args.quick:
        args.gemm, args.hbm = "0.60,0.86", "0.60,0.88"
    base = load_catalog()
    table = [m for m in read_measurements(args.tables) if m.labels.get("hardware", "").lower() in BLACKWELL]
    is_moe = [base.get_model(pool_from_labels(m, base).deployment.model).is_moe for m in table]
    dense = [m for m, e in zip(table, is_moe, strict=True) if not e]
    moe = [m for m, e in zip(table, is_moe, strict=True) if e]
    public = read_measurements(PUBLIC)
    if args.quick:
        firsts = {group_key(m): m for m in reversed(dense)}  # the first row of each group
        dense, moe, public = list(firsts.values()), moe[:2], public[:2]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(dense):
        groups[group_key(m)].append(i)
    print(f"fit rows: {len(dense)} in {len(groups)} groups; held out: {len(moe)} MoE table rows, {len(public)} public")

    grid = [(float(g), float(h)) for g in args.gemm.split(",") for h in args.hbm.split(",")]
    by_pair: dict[tuple[float, float], list[float | None]] = {}
    for g, h in grid:
        by_pair[(g, h)] = errors(dense, with_shares(base, g, h))
        print(f"  gemm {g:.2f} hbm {h:.2f}: dense MAPE {mape(by_pair[(g, h)]):5.1f}%", flush=True)

    def best(indices: Sequence[int]) -> tuple[float, float]:
        def loss(p: tuple[float, float]) -> float:
            value = mape([by_pair[p][i] for i in indices])
            return math.inf if math.isnan(value) else value  # a pair that simulated none of them never wins

        return min(grid, key=loss)

    every = list(range(len(dense)))
    fitted = best(every)
    print(f"\nfitted on all {len(dense)} rows: gemm share {fitted[0]:.2f}, hbm share {fitted[1]:.2f}")
    print(f"{'group':<62} {'in-sample':>9} {'held out':>9} {'pair fitted without it':>24} {'Hopper shares':>13}")
    hopper = errors(dense, with_shares(base, SERVING_GEMM_SHARE, SERVING_HBM_SHARE))
    cv: list[float | None] = [None] * len(dense)
    for key, idx in groups.items():
        others = [i for i in every if i not in idx]
        pair = best(others)
        for i in idx:
            cv[i] = by_pair[pair][i]
        print(
            f"{key:<62} {mape([by_pair[fitted][i] for i in idx]):>8.1f}% {mape([cv[i] for i in idx]):>8.1f}% "
            f"{pair[0]:>12.2f} / {pair[1]:.2f} {mape([hopper[i] for i in idx]):>12.1f}%"
        )
    print(f"{'all dense':<62} {mape(by_pair[fitted]):>8.1f}% {mape(cv):>8.1f}% {'':>24} {mape(hopper):>12.1f}%")
    for label in ("model", "hardware"):
        folds: dict[str, list[int]] = defaultdict(list)
        for i, m in enumerate(dense):
            folds[m.labels.get(label, "")].append(i)
        held: list[float | None] = [None] * len(dense)
        picked = []
        for value, idx in folds.items():
            pair = best([i for i in every if i not in idx])
            picked.append(f"{value} {pair[0]:.2f}/{pair[1]:.2f}")
            for i in idx:
                held[i] = by_pair[pair][i]
        print(f"leave one {label} out (each predicted by the pair fitted on the rest): {mape(held):.1f}%  "
              f"[{'; '.join(picked)}]")  # fmt: skip

    print("\nheld-out rows (never fitted): throughput error %, Hopper shares -> fitted pair")
    held_out = (("Qwen3-235B FP4, 8 B200 (tables)", moe), ("DeepSeek-R1 NVFP4, 8 B200 (data/blackwell.csv)", public))
    for name, rows in held_out:
        before = errors(rows, with_shares(base, SERVING_GEMM_SHARE, SERVING_HBM_SHARE))
        after = errors(rows, with_shares(base, *fitted))
        pairs = " ".join(f"{_fmt(a)}->{_fmt(b)}" for a, b in zip(before, after, strict=True))
        print(f"  {name}: MAPE {mape(before):.1f}% -> {mape(after):.1f}%\n    {pairs}")
    return 0


def _fmt(e: float | None) -> str:
    return "n/a" if e is None else f"{e:+.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
