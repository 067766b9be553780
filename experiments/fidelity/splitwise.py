"""The default roofline's step times against Splitwise's measured ones: Llama-2-70B on DGX-A100 and DGX-H100.

Splitwise (Patel et al., "Splitwise: Efficient Generative LLM Inference Using Phase Splitting", ISCA 2024)
released the profile behind its simulator (``Mutinifni/splitwise-sim`` ``data/perf_model.csv``, MIT; a copy is
``../shared/data/perf/splitwise_perf_model.csv``, and this experiment's slice, the Llama-2-70B rows of
``a100-80gb`` and ``h100-80gb``, is ``data/splitwise_llama2_70b.csv``): static batches of ``batch_size``
requests of ``prompt_size`` prompt tokens asked for ``token_size`` tokens, at tensor parallelism 2, 4 and 8,
each condition run 5 or 15 times, FP16. ``prompt_time`` is the prefill of the batch in one pass (ms),
``token_time`` the mean decode iteration (ms) and ``e2e_time`` the request's time (ms), so a run decoded
``(e2e_time - prompt_time) / token_time`` iterations (:func:`iterations`; ``token_size - 1`` when it ran to its
length, fewer for many runs asked for 256 tokens or more, which stopped early). The file names no serving engine
and no software versions.

Left out, by rules the script applies and prints:

* the ``h100-80gb-pcap`` rows: their prompt times are exactly 1.3 x the ``h100-80gb`` ones and their token times
  equal, a power-capping assumption, not a measurement;
* a condition any of whose runs decoded more iterations than its tokens (by more than 2%): the batch did not run
  as one (it did not fit, and ran in waves), so its iteration is a mix, and at batch 64 its prefill time is a
  wave's (:func:`in_waves`: batch 64 at TP2 on both GPUs, e.g. 2,362 iterations for 128 tokens on A100, and batch
  32 at TP2 on A100, 161-164).

Per condition, the mean of its runs against the model's

* prefill: :meth:`~agentsim.perf.base.PerfModel.prefill_step_time` of ``B x P`` prompt tokens in ``B`` chunks of
  ``P``, nothing cached (``P (P / 2)`` causal pairs a chunk), no decoding sequence;
* decode: the mean step of each run's iterations, ``B`` sequences from context ``P + 1`` (:meth:`decode_total`
  over the run's iteration count), averaged over the runs as the measured means are;

for ``llama-2-70b`` in BF16 (the same FLOPs and bytes as FP16) under the ``vllm`` preset's costs (2 ms a step,
130 us a decoding sequence, the kernel floor) with every step eager (no CUDA graphs: a host launching each kernel
at 32 us), a reading of these rows, not the presets' default: their decode iteration does not shrink from TP4 to
TP8 (A100 45 ms, H100 30 ms at one request), which a host launching kernels does and a graph replay does not.
``--graphs`` takes the presets' default (CUDA graphs), ``--bare`` drops the step and per-sequence costs (the
kernel floor stays).

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
from agentsim.perf.base import PerfModel
from agentsim.resolve import resolve_engine

DATA = Path(__file__).resolve().parent / "data" / "splitwise_llama2_70b.csv"
HARDWARE = {"a100-80gb": "a100", "h100-80gb": "h100"}
"""Splitwise's hardware names -> catalog ids (DGX-A100 80GB and DGX-H100: SXM parts)."""
WAVES_TOLERANCE = 1.02
"""A run decoding more than this times ``token_size - 1`` iterations ran its batch in waves (:func:`in_waves`)."""


@dataclass(frozen=True)
class Condition:
    """One static-batch condition of the profile: hardware (catalog id), tensor parallelism, prompt tokens,
    batch, tokens asked for."""

    hardware: str
    tp: int
    prompt: int
    batch: int
    tokens: int


@dataclass(frozen=True)
class Run:
    """One run of a condition: its prefill and mean decode iteration (ms) and the iterations it decoded."""

    prefill_ms: float
    decode_ms: float
    iterations: float


@dataclass(frozen=True)
class Row:
    """A condition's measured means (ms, over its runs) and the model's (ms); ``static`` false where the batch
    ran in waves (:func:`in_waves`), such a row counts in no figure."""

    condition: Condition
    runs: int
    prefill_ms: float
    decode_ms: float
    prefill_pred_ms: float
    decode_pred_ms: float
    static: bool

    @property
    def prefill_err_pct(self) -> float:
        return 100.0 * (self.prefill_pred_ms / self.prefill_ms - 1.0)

    @property
    def decode_err_pct(self) -> float:
        return 100.0 * (self.decode_pred_ms / self.decode_ms - 1.0)


def iterations(prompt_ms: float, token_ms: float, e2e_ms: float) -> float:
    """The decode iterations a run made: its time after the prefill over its mean iteration."""
    return (e2e_ms - prompt_ms) / token_ms


def read_profile(path: Path = DATA) -> dict[Condition, list[Run]]:
    """The Llama-2-70B runs of ``path`` by condition, A100 and H100 only."""
    runs: dict[Condition, list[Run]] = defaultdict(list)
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            hw = HARDWARE.get(r["hardware"])
            if r["model"] != "llama2-70b" or hw is None:
                continue
            c = Condition(hw, int(r["tensor_parallel"]), int(r["prompt_size"]), int(r["batch_size"]),
                          int(r["token_size"]))  # fmt: skip
            prompt, token = float(r["prompt_time"]), float(r["token_time"])
            runs[c].append(Run(prompt, token, iterations(prompt, token, float(r["e2e_time"]))))
    return dict(runs)


def in_waves(condition: Condition, runs: list[Run]) -> bool:
    """Whether a run of ``condition`` decoded more iterations than its tokens allow: one batch decodes
    ``tokens - 1`` iterations after its prefill at most (the first token comes with the prefill), so more means the
    requests ran in several batches."""
    return any(r.iterations > WAVES_TOLERANCE * (condition.tokens - 1) for r in runs)


def perf_model(hardware: str, tp: int, bare: bool = False, graphs: bool = False) -> PerfModel:
    """Llama-2-70B BF16 on ``tp`` GPUs of ``hardware`` as the vllm preset fills it: eager unless ``graphs``,
    without the step and per-sequence costs when ``bare``."""
    catalog = load_catalog()
    perf = spec.RooflinePerf(overhead_s=0.0, overhead_s_per_seq=0.0) if bare else spec.RooflinePerf()
    dep = spec.Deployment(
        model="llama-2-70b", hardware=hardware, tp=tp, precision="bf16", engine=spec.EngineSpec(cuda_graphs=graphs)
    )
    model, hw = catalog.get_model("llama-2-70b"), catalog.get_hardware(hardware)
    pool, _kv, _config = resolve_engine(spec.PoolSpec(name="splitwise", deployment=dep, perf=perf), model, hw)
    return build_perf(pool, catalog)


def predict(
    profile: dict[Condition, list[Run]], bare: bool = False, graphs: bool = False
) -> dict[Condition, tuple[float, float]]:
    """Each condition's modelled prefill and mean decode step (ms; the decode averaged over its runs' iteration
    counts)."""
    models: dict[tuple[str, int], PerfModel] = {}
    out = {}
    for c, runs in profile.items():
        key = (c.hardware, c.tp)
        if key not in models:
            models[key] = perf_model(c.hardware, c.tp, bare, graphs)
        pm = models[key]
        p, b = float(c.prompt), float(c.batch)
        pairs = p * p / 2.0
        prefill = pm.prefill_step_time(b * p, 0.0, 0.0, 0.0, b * pairs, p, pairs, 0.0)
        decodes = []
        for r in runs:
            n = max(1, round(r.iterations))
            decodes.append(pm.decode_total(c.batch, b * (p + 1.0), n) / n)
        out[c] = (1e3 * prefill, 1e3 * statistics.fmean(decodes))
    return out


def compare(bare: bool = False, graphs: bool = False) -> list[Row]:
    """Measured means against the model, one row per condition, in the profile's order of conditions."""
    profile = read_profile()
    pred = predict(profile, bare, graphs)
    rows = []
    for c, v in profile.items():
        prefill, decode = statistics.fmean(r.prefill_ms for r in v), statistics.fmean(r.decode_ms for r in v)
        rows.append(Row(c, len(v), prefill, decode, *pred[c], static=not in_waves(c, v)))
    return rows


@dataclass(frozen=True)
class Figures:
    """MAPE and mean signed error (%) of prefill and decode over ``conditions`` static conditions."""

    conditions: int
    prefill_mape: float
    prefill_bias: float
    decode_mape: float
    decode_bias: float


def figures(rows: list[Row]) -> Figures:
    """The figures of ``rows``' static conditions (none of the batches that ran in waves)."""
    kept = [r for r in rows if r.static]
    pe = [r.prefill_err_pct for r in kept]
    de = [r.decode_err_pct for r in kept]
    return Figures(len(kept), statistics.fmean(map(abs, pe)), statistics.fmean(pe), statistics.fmean(map(abs, de)),
                   statistics.fmean(de))  # fmt: skip


def report(rows: list[Row], graphs: bool = False) -> str:
    """Per hardware and tensor parallelism: MAPE and mean signed error of prefill and decode step times; then
    the measured and modelled H100 / A100 ratios per condition both GPUs ran as one batch."""
    left = sorted((r.condition.hardware, r.condition.tp, r.condition.batch) for r in rows if not r.static)
    lines = [
        f"model: llama-2-70b bf16, vllm preset, {'CUDA graphs' if graphs else 'every step eager (no CUDA graphs)'}",
        f"left out, their batch ran in waves (hardware, tp, batch): {left}",
        "hardware tp  conds  prefill MAPE (bias)   decode MAPE (bias)",
    ]
    for hw in ("a100", "h100"):
        for tp in (2, 4, 8):
            g = [r for r in rows if (r.condition.hardware, r.condition.tp) == (hw, tp)]
            if not any(r.static for r in g):
                continue
            f = figures(g)
            lines.append(
                f"{hw:8} {tp:2} {f.conditions:6}  {f.prefill_mape:6.1f}% ({f.prefill_bias:+6.1f}%)"
                f"    {f.decode_mape:6.1f}% ({f.decode_bias:+6.1f}%)"
            )
    by = {(r.condition.tp, r.condition.prompt, r.condition.batch, r.condition.tokens, r.condition.hardware): r
          for r in rows if r.static}  # fmt: skip
    lines.append("")
    lines.append("tp prompt batch tokens | H100/A100 prefill measured model | decode measured model")
    for (tp, p, b, t, hw), h in sorted(by.items()):
        a = by.get((tp, p, b, t, "a100"))
        if hw != "h100" or a is None:
            continue
        measured, model = a.prefill_ms / h.prefill_ms, a.prefill_pred_ms / h.prefill_pred_ms
        lines.append(
            f"{tp:2} {p:6} {b:5} {t:6} | {measured:5.2f} {model:5.2f}"
            f" | {a.decode_ms / h.decode_ms:5.2f} {a.decode_pred_ms / h.decode_pred_ms:5.2f}"
        )
    return "\n".join(lines)


COLUMNS = ["hardware", "tp", "prompt_tokens", "batch", "output_tokens", "runs", "static", "prefill_ms",
           "prefill_pred_ms", "prefill_err_pct", "decode_ms", "decode_pred_ms", "decode_err_pct"]  # fmt: skip


def write_csv(rows: list[Row], path: Path, overwrite: bool = False) -> None:
    """One line per condition: its labels, runs, whether it ran as one batch, measured and modelled times (ms)
    and signed errors (%), written atomically; an existing file is replaced only with ``overwrite``."""
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        c = r.condition
        w.writerow([c.hardware, c.tp, c.prompt, c.batch, c.tokens, r.runs, int(r.static), f"{r.prefill_ms:.2f}",
                    f"{r.prefill_pred_ms:.2f}", f"{r.prefill_err_pct:.1f}", f"{r.decode_ms:.2f}",
                    f"{r.decode_pred_ms:.2f}", f"{r.decode_err_pct:.1f}"])  # fmt: skip
    write_text(path, f.getvalue(), overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", action="store_true", help="CUDA graphs, the presets' default (not these rows')")
    ap.add_argument("--bare", action="store_true", help="no step or per-sequence costs (the kernel floor stays)")
    ap.add_argument("--csv", type=Path, help="write one line per condition here")
    ap.add_argument("--overwrite", action="store_true", help="replace the CSV file of an earlier run")
    args = ap.parse_args(argv)
    if args.csv is not None:
        try:  # say so before computing, not after
            check_output(args.csv, overwrite=args.overwrite)
        except (OutputExistsError, OutputPathError) as e:
            ap.error(f"{e} (--csv)")
    rows = compare(args.bare, args.graphs)
    print(report(rows, args.graphs))
    if args.csv is not None:
        write_csv(rows, args.csv, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
