"""The default roofline's step times against Splitwise's measured ones: Llama-2-70B on DGX-A100 and DGX-H100.

Splitwise (Patel et al., "Splitwise: Efficient Generative LLM Inference Using Phase Splitting", ISCA 2024)
released the profile behind its simulator (``Mutinifni/splitwise-sim`` ``data/perf_model.csv``, MIT; a copy is
``../shared/data/perf/splitwise_perf_model.csv``, and this experiment's slice, the Llama-2-70B rows of
``a100-80gb`` and ``h100-80gb``, is ``data/splitwise_llama2_70b.csv``): static batches of ``batch_size``
requests of ``prompt_size`` prompt tokens generating ``token_size`` tokens, at tensor parallelism 2, 4 and 8,
each condition run 5 or 15 times, FP16. ``prompt_time`` is the prefill of the whole batch in one pass (ms) and
``token_time`` the mean decode iteration (ms). The ``h100-80gb-pcap`` rows are left out: their prompt times are
exactly 1.3 x the ``h100-80gb`` ones and their token times equal, a derived power-capping assumption, not a
measurement. The data file does not name the serving engine.

Nothing in the model was fitted to these rows (they entered the project after its defaults), so they test the
step model out of sample, without a server, a client or a scheduler in the way: per condition, the mean of its
runs against

* prefill: :meth:`~agentsim.perf.base.PerfModel.prefill_step_time` of ``B x P`` prompt tokens in ``B`` chunks of
  ``P`` with nothing cached (``P (P / 2)`` causal pairs each) and no decoding sequence;
* decode: the mean of the ``T`` decode steps of ``B`` sequences from context ``P`` (:meth:`decode_total` / ``T``),

of ``llama-2-70b`` in BF16 (the same FLOPs and bytes as FP16) under the ``vllm`` preset's step overheads (2 ms a
step, 130 us a decoding sequence, the kernel floor): what a user gets by default. ``--bare`` drops the engine
overheads (``overhead_s`` and ``overhead_s_per_seq`` 0) to show the roofline's own share.

    python experiments/fidelity/splitwise.py [--graphs] [--bare] [--csv out.csv [--overwrite]]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.files import OutputExistsError, OutputPathError, check_output, write_text
from agentsim.perf import build_perf
from agentsim.resolve import resolve_engine

DATA = Path(__file__).resolve().parent / "data" / "splitwise_llama2_70b.csv"
HARDWARE = {"a100-80gb": "a100", "h100-80gb": "h100"}
"""Splitwise's hardware names -> catalog ids (DGX-A100 80GB and DGX-H100: SXM parts)."""


@dataclass(frozen=True)
class Condition:
    """One static-batch condition of the profile: hardware (catalog id), tensor parallelism, prompt tokens,
    batch, tokens generated."""

    hardware: str
    tp: int
    prompt: int
    batch: int
    tokens: int


@dataclass(frozen=True)
class Row:
    """A condition's measured means (ms, over its runs) and the model's step times (ms); ``prefill_ok`` false
    where the measured prefill cannot be the batch's (:func:`monotone_prefill`)."""

    condition: Condition
    runs: int
    prefill_ms: float
    decode_ms: float
    prefill_pred_ms: float
    decode_pred_ms: float
    prefill_ok: bool = True

    @property
    def prefill_err_pct(self) -> float:
        return 100.0 * (self.prefill_pred_ms / self.prefill_ms - 1.0)

    @property
    def decode_err_pct(self) -> float:
        return 100.0 * (self.decode_pred_ms / self.decode_ms - 1.0)


def read_profile(path: Path = DATA) -> dict[Condition, list[tuple[float, float]]]:
    """The Llama-2-70B runs of ``path`` by condition: (prompt_time, token_time) in ms, A100 and H100 only."""
    runs: dict[Condition, list[tuple[float, float]]] = defaultdict(list)
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            hw = HARDWARE.get(r["hardware"])
            if r["model"] != "llama2-70b" or hw is None:
                continue
            c = Condition(hw, int(r["tensor_parallel"]), int(r["prompt_size"]), int(r["batch_size"]),
                          int(r["token_size"]))  # fmt: skip
            runs[c].append((float(r["prompt_time"]), float(r["token_time"])))
    return dict(runs)


def predict(
    conditions: list[Condition], bare: bool = False, graphs: bool = False
) -> dict[Condition, tuple[float, float]]:
    """Each condition's modelled (prefill, mean decode step) in ms: Llama-2-70B BF16 under the vllm preset, eager
    unless ``graphs``."""
    catalog = load_catalog()
    model = catalog.get_model("llama-2-70b")
    perf_models = {}
    out = {}
    for c in conditions:
        key = (c.hardware, c.tp)
        if key not in perf_models:
            perf = spec.RooflinePerf(overhead_s=0.0, overhead_s_per_seq=0.0) if bare else spec.RooflinePerf()
            engine = spec.EngineSpec(cuda_graphs=graphs)
            dep = spec.Deployment(model="llama-2-70b", hardware=c.hardware, tp=c.tp, precision="bf16", engine=engine)
            pool, _kv, _config = resolve_engine(
                spec.PoolSpec(name="splitwise", deployment=dep, perf=perf), model, catalog.get_hardware(c.hardware)
            )
            perf_models[key] = build_perf(pool, catalog)
        pm = perf_models[key]
        p, b = float(c.prompt), float(c.batch)
        pairs = p * p / 2.0
        prefill = pm.prefill_step_time(b * p, 0.0, 0.0, 0.0, b * pairs, p, pairs, 0.0)
        decode = pm.decode_total(c.batch, b * p, c.tokens) / c.tokens
        out[c] = (1e3 * prefill, 1e3 * decode)
    return out


def monotone_prefill(means: dict[Condition, float]) -> set[Condition]:
    """The conditions whose measured prefill (``means``, ms) is shorter than that of a smaller batch of the same
    prompts on the same GPUs: a pass over B prompts does the work of one over fewer and more, so such a time is
    not the batch's prefill. (The profile's batch-64 rows: 796 ms on A100 at TP2 where batch 32 takes 6,607 and
    batch 2 416.)"""
    bad = set()
    for c, t in means.items():
        for o, u in means.items():
            same = (o.hardware, o.tp, o.prompt, o.tokens) == (c.hardware, c.tp, c.prompt, c.tokens)
            if same and o.batch < c.batch and u > t:
                bad.add(c)
    return bad


def compare(bare: bool = False, graphs: bool = False, path: Path = DATA) -> list[Row]:
    """Measured means against the model, one row per condition, in the profile's order of conditions."""
    profile = read_profile(path)
    pred = predict(list(profile), bare, graphs)
    prefill = {c: statistics.fmean(x[0] for x in v) for c, v in profile.items()}
    bad = monotone_prefill(prefill)
    return [
        Row(c, len(v), prefill[c], statistics.fmean(x[1] for x in v), *pred[c], prefill_ok=c not in bad)
        for c, v in profile.items()
    ]


def _mape(values: list[float]) -> float:
    return statistics.fmean(abs(v) for v in values)


def report(rows: list[Row]) -> str:
    """Per hardware and tensor parallelism: MAPE and mean signed error of prefill and decode step times; then
    the measured and modelled H100 / A100 ratios per condition both GPUs ran."""
    left = sorted({(r.condition.tp, r.condition.batch) for r in rows if not r.prefill_ok})
    lines = [f"prefill figures leave out {len(left)} (tp, batch) conditions whose time is not the batch's: {left}",
             "hardware tp  conds  prefill MAPE (bias)   decode MAPE (bias)"]  # fmt: skip
    groups: dict[tuple[str, int], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r.condition.hardware, r.condition.tp)].append(r)
    for hw in ("a100", "h100"):
        for tp in (2, 4, 8):
            g = groups.get((hw, tp), [])
            if not g:
                continue
            pe = [r.prefill_err_pct for r in g if r.prefill_ok]
            de = [r.decode_err_pct for r in g]
            lines.append(
                f"{hw:8} {tp:2} {len(g):6}  {_mape(pe):6.1f}% ({statistics.fmean(pe):+6.1f}%)"
                f"    {_mape(de):6.1f}% ({statistics.fmean(de):+6.1f}%)"
            )
    for hw in ("a100", "h100"):
        g = [r for r in rows if r.condition.hardware == hw]
        pe = [r.prefill_err_pct for r in g if r.prefill_ok]
        de = [r.decode_err_pct for r in g]
        big = [r.prefill_err_pct for r in g if r.prefill_ok and r.condition.prompt * r.condition.batch >= 2048]
        lines.append(
            f"{hw} all: prefill {_mape(pe):.1f}% ({statistics.fmean(pe):+.1f}%), of which >= 2,048 prompt tokens "
            f"a pass {_mape(big):.1f}% ({statistics.fmean(big):+.1f}%, {len(big)}); decode {_mape(de):.1f}% "
            f"({statistics.fmean(de):+.1f}%)"
        )
    by = {(r.condition.tp, r.condition.prompt, r.condition.batch, r.condition.tokens, r.condition.hardware): r
          for r in rows}  # fmt: skip
    lines.append("")
    lines.append("tp prompt batch tokens | H100/A100 prefill measured model | decode measured model")
    for (tp, p, b, t, hw), h in sorted(by.items()):
        a = by.get((tp, p, b, t, "a100"))
        if hw != "h100" or a is None or not (h.prefill_ok and a.prefill_ok):
            continue
        measured, model = a.prefill_ms / h.prefill_ms, a.prefill_pred_ms / h.prefill_pred_ms
        lines.append(
            f"{tp:2} {p:6} {b:5} {t:6} | {measured:5.2f} {model:5.2f}"
            f" | {a.decode_ms / h.decode_ms:5.2f} {a.decode_pred_ms / h.decode_pred_ms:5.2f}"
        )
    return "\n".join(lines)


COLUMNS = ["hardware", "tp", "prompt_tokens", "batch", "output_tokens", "runs", "prefill_ms", "prefill_pred_ms",
           "prefill_err_pct", "prefill_ok", "decode_ms", "decode_pred_ms", "decode_err_pct"]  # fmt: skip


def write_csv(rows: list[Row], path: Path, overwrite: bool = False) -> None:
    """One line per condition: its labels, runs, measured and modelled times (ms) and signed errors (%), written
    atomically; an existing file is replaced only with ``overwrite``."""
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        c = r.condition
        w.writerow([c.hardware, c.tp, c.prompt, c.batch, c.tokens, r.runs, f"{r.prefill_ms:.2f}",
                    f"{r.prefill_pred_ms:.2f}", f"{r.prefill_err_pct:.1f}", int(r.prefill_ok), f"{r.decode_ms:.2f}",
                    f"{r.decode_pred_ms:.2f}", f"{r.decode_err_pct:.1f}"])  # fmt: skip
    write_text(path, f.getvalue(), overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bare", action="store_true", help="no engine overheads: the roofline's GPU time alone")
    ap.add_argument("--graphs", action="store_true", help="decode under CUDA graphs (the presets' default)")
    ap.add_argument("--csv", type=Path, help="write one line per condition here")
    ap.add_argument("--overwrite", action="store_true", help="replace the CSV file of an earlier run")
    ap.add_argument("--quick", action="store_true", help="accepted for the experiments' smoke test: no faster")
    ap.add_argument("--workers", type=int, default=1, help="accepted for the experiments' smoke test: one process")
    args = ap.parse_args(argv)
    if args.csv is not None:
        try:  # say so before computing, not after
            check_output(args.csv, overwrite=args.overwrite)
        except (OutputExistsError, OutputPathError) as e:
            ap.error(f"{e} (--csv)")
    rows = compare(args.bare, args.graphs)
    print(report(rows))
    if args.csv is not None:
        write_csv(rows, args.csv, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
