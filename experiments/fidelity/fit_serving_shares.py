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

``--workers N`` simulates each grid point's rows in N processes (the in-memory catalog with the point's shares is
sent to them whole). ``--quick``: one row per fit group, a 2 x 2 grid and two held-out rows of each kind, a smoke
test of the script.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from agentsim.catalog import Catalog, load_catalog
from agentsim.perf.efficiency import SERVING_GEMM_SHARE, SERVING_HBM_SHARE
from agentsim.planning.calibrate import pool_from_labels
from agentsim.planning.calibrate.measurements import Measurement, read_measurements
from agentsim.planning.fidelity import group_key, run_fidelity, with_serving_shares

HERE = Path(__file__).resolve().parent
TABLES = HERE.parents[2] / "shared" / "data" / "perf" / "trtllm_max_throughput.csv"
PUBLIC = HERE / "data" / "blackwell.csv"
BLACKWELL = ("b200", "gb200")
HOPPER = (SERVING_GEMM_SHARE, SERVING_HBM_SHARE)

Pair = tuple[float, float]


def fit_rows(tables: Path | str, catalog: Catalog) -> tuple[list[Measurement], list[Measurement]]:
    """The tables' Blackwell rows: the dense ones (the fit's) and the MoE ones (held out)."""
    rows = [m for m in read_measurements(tables) if m.labels.get("hardware", "").lower() in BLACKWELL]
    is_moe = [catalog.get_model(pool_from_labels(m, catalog).deployment.model).is_moe for m in rows]
    dense = [m for m, e in zip(rows, is_moe, strict=True) if not e]
    return dense, [m for m, e in zip(rows, is_moe, strict=True) if e]


def errors(rows: Sequence[Measurement], catalog: Catalog, pair: Pair, jobs: int = 1) -> list[float | None]:
    """Signed throughput error (%) of every row with Blackwell's shares at ``pair``, None where it could not be
    simulated."""
    report = run_fidelity(rows, catalog=with_serving_shares(catalog, BLACKWELL, *pair), jobs=jobs)
    return [r.error_pct("output_tok_s") if r.error is None else None for r in report.rows]


def mape(errs: Sequence[float | None]) -> float:
    """Mean absolute error (%) over the simulated rows (NaN when none is)."""
    vals = [abs(e) for e in errs if e is not None]
    return sum(vals) / len(vals) if vals else math.nan


def _shares(ap: argparse.ArgumentParser, option: str, text: str) -> list[float]:
    """A comma-separated list of serving shares, each a finite number in (0, 1] (the catalog's own bounds)."""
    out = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            ap.error(f"{option}: {item!r} is not a number")
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            ap.error(f"{option}: a serving share lies in (0, 1], got {item}")
        out.append(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=str(TABLES))
    ap.add_argument("--gemm", default="0.40,0.45,0.50,0.55,0.60,0.65,0.70,0.75,0.86")
    ap.add_argument("--hbm", default="0.40,0.45,0.50,0.55,0.60,0.65,0.70,0.75,0.88")
    ap.add_argument("--quick", action="store_true", help="one row per group, a 2 x 2 grid: a smoke test")
    ap.add_argument("--workers", type=int, default=1, help="processes simulating each grid point's rows")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers must be at least 1, got {args.workers}")
    if args.quick:
        args.gemm, args.hbm = "0.60,0.86", "0.60,0.88"
    gemm, hbm = _shares(ap, "--gemm", args.gemm), _shares(ap, "--hbm", args.hbm)  # before minutes of simulation
    base = load_catalog()
    dense, moe = fit_rows(args.tables, base)
    public = read_measurements(PUBLIC)
    if args.quick:
        firsts = {group_key(m): m for m in reversed(dense)}  # the first row of each group
        dense, moe, public = list(firsts.values()), moe[:2], public[:2]
    n_groups = len({group_key(m) for m in dense})
    print(f"fit rows: {len(dense)} in {n_groups} groups; held out: {len(moe)} MoE table rows, {len(public)} public")

    grid = [(g, h) for g in gemm for h in hbm]
    by_pair: dict[Pair, list[float | None]] = {}
    for pair in grid:
        by_pair[pair] = errors(dense, base, pair, args.workers)
        print(f"  gemm {pair[0]:.2f} hbm {pair[1]:.2f}: dense MAPE {mape(by_pair[pair]):5.1f}%", flush=True)
    hopper = by_pair[HOPPER] if HOPPER in by_pair else errors(dense, base, HOPPER, args.workers)

    def best(indices: Sequence[int]) -> Pair:
        def loss(p: Pair) -> float:
            value = mape([by_pair[p][i] for i in indices])
            return math.inf if math.isnan(value) else value  # a pair that simulated none of them never wins

        return min(grid, key=loss)

    def held_out(fold_of: Callable[[Measurement], str]) -> tuple[list[float | None], dict[str, Pair]]:
        """Each fold's rows predicted by the pair fitted on the other folds' rows, and that pair per fold."""
        folds: dict[str, list[int]] = defaultdict(list)
        for i, m in enumerate(dense):
            folds[fold_of(m)].append(i)
        held: list[float | None] = [None] * len(dense)
        pairs = {}
        for fold, idx in folds.items():
            pairs[fold] = best([i for i in range(len(dense)) if i not in idx])
            for i in idx:
                held[i] = by_pair[pairs[fold]][i]
        return held, pairs

    fitted = best(range(len(dense)))
    print(f"\nfitted on all {len(dense)} rows: gemm share {fitted[0]:.2f}, hbm share {fitted[1]:.2f}")
    print(f"{'group':<62} {'in-sample':>9} {'held out':>9} {'pair fitted without it':>24} {'Hopper shares':>13}")
    cv, group_pairs = held_out(group_key)
    for key, pair in group_pairs.items():
        idx = [i for i, m in enumerate(dense) if group_key(m) == key]
        print(
            f"{key:<62} {mape([by_pair[fitted][i] for i in idx]):>8.1f}% {mape([cv[i] for i in idx]):>8.1f}% "
            f"{pair[0]:>12.2f} / {pair[1]:.2f} {mape([hopper[i] for i in idx]):>12.1f}%"
        )
    print(f"{'all dense':<62} {mape(by_pair[fitted]):>8.1f}% {mape(cv):>8.1f}% {'':>24} {mape(hopper):>12.1f}%")
    by_label: tuple[tuple[str, Callable[[Measurement], str]], ...] = (
        ("model", lambda m: m.labels.get("model", "")),
        ("hardware", lambda m: m.labels.get("hardware", "")),
    )
    for label, fold_of in by_label:
        held, pairs = held_out(fold_of)
        picked = "; ".join(f"{fold} {p[0]:.2f}/{p[1]:.2f}" for fold, p in pairs.items())
        print(f"leave one {label} out (each predicted by the pair fitted on the rest): {mape(held):.1f}%  [{picked}]")

    print("\nheld-out rows (never fitted): throughput error %, Hopper shares -> fitted pair")
    held_rows = (("Qwen3-235B FP4, 8 B200 (tables)", moe), ("DeepSeek-R1 NVFP4, 8 B200 (data/blackwell.csv)", public))
    for name, rows in held_rows:
        before, after = errors(rows, base, HOPPER, args.workers), errors(rows, base, fitted, args.workers)
        pairs_text = " ".join(f"{_fmt(a)}->{_fmt(b)}" for a, b in zip(before, after, strict=True))
        print(f"  {name}: MAPE {mape(before):.1f}% -> {mape(after):.1f}%\n    {pairs_text}")
    return 0


def _fmt(e: float | None) -> str:
    return "n/a" if e is None else f"{e:+.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
