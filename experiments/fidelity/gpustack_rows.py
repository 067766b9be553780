"""Rows for ``data/*.csv`` from a gpustack performance-lab page: every ``vllm bench serve`` result with its server.

gpustack's pages (github.com/gpustack/gpustack, ``docs/performance-lab/<model>/<gpu>.md``, Apache-2.0) tune one
model on one GPU type: each experiment is a "Serving script" block (the server command; "Baseline" and "Optimized"
ones in the last section) followed by one or more "Benchmark result(s)" blocks (``vllm bench serve`` output, several
in a block after ``# label`` lines) run against it. A burst of N requests (``--num-prompts N``,
no rate) is written as ``load: burst`` with N concurrent clients, as the other gpustack rows of this directory; a
result that prints a "Maximum request concurrency" C (``--max-concurrency C``) as ``load: closed`` with C clients
(``num_requests`` N is recorded; the harness simulates a closed loop's steady state, not its N requests).
ISL and OSL are the result's total input and generated tokens over its successful requests (ShareGPT varies per
request; the random datasets' fixed lengths come out as set). Output tokens/s, mean TTFT and mean TPOT are copied
as printed.

A result is skipped, and said so on stderr, when its server's engine is not the one its section is about (a
copy slip in the page: the command and the numbers may belong to different experiments), or when it has no
server command before it.

    git -C <gpustack> show 47277d79:docs/performance-lab/qwen3-32b/h100.md > page.md
    python experiments/fidelity/gpustack_rows.py page.md --hardware H100 --model Qwen3-32B >> rows.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

from agentsim.catalog import load_catalog
from agentsim.planning.calibrate.bench import flag_value
from agentsim.planning.calibrate.harness import catalog_id

COLUMNS = ("isl", "osl", "concurrency", "qps", "output_tok_s", "ttft_ms", "tpot_ms", "load", "num_requests",
           "engine_args", "hardware", "model", "n_gpus", "tp", "ep", "dp_attention", "precision", "kv_precision",
           "engine", "engine_version", "source_id", "source_file", "note")  # fmt: skip
SOURCE_FILE = "gpustack_perf_lab_hopper.csv"
"""The research notes file the gpustack rows of ``data/`` are filed under (their ``source_file`` label)."""
ENGINES = (("vllm serve", "vLLM"), ("sglang.launch_server", "SGLang"), ("trtllm-serve", "TensorRT-LLM"))
RESULT = {
    "Successful requests": "n",
    "Total input tokens": "input",
    "Total generated tokens": "output",
    "Output token throughput (tok/s)": "output_tok_s",
    "Mean TTFT (ms)": "ttft_ms",
    "Mean TPOT (ms)": "tpot_ms",
}
OPTIONAL = {"Maximum request concurrency": "max_concurrency"}  # a closed loop (--max-concurrency), not a burst


def _block(lines: list[str], start: int) -> tuple[list[str], int]:
    """The lines of the fenced code block after ``start`` (indentation removed), and the index after it."""
    i = start
    while i < len(lines) and not lines[i].strip().startswith("```"):
        i += 1
    out = []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith("```"):
        out.append(lines[i].strip())
        i += 1
    return out, i + 1


def _server(command: str) -> tuple[str, str, list[str]]:
    """(engine, model path, flags) of a server command; flags keep their order (environment variables first)."""
    tokens = command.replace("\\", " ").split()
    found = [name for marker, name in ENGINES if marker in command]
    if not found:
        raise ValueError(f"no known server in {command!r}")
    engine = found[0]
    # what the model follows (SGLang takes --model as well)
    words = {"SGLang": ("--model-path", "--model"), "vLLM": ("serve",)}.get(engine, ("trtllm-serve",))
    word = next((w for w in words if w in tokens), words[0])
    if word not in tokens or tokens.index(word) + 1 >= len(tokens):
        raise ValueError(f"the {engine} server command names no model after {word}: {command!r}")
    at = tokens.index(word)
    model, rest = tokens[at + 1], tokens[:at] + tokens[at + 2 :]
    if engine == "SGLang":
        rest = [t for t in rest if t not in ("python3", "python", "-m", "sglang.launch_server")]
    else:
        rest = [t for t in rest if t != "vllm"]
    return engine, model, rest


TP_FLAGS = ("-tp", "--tp", "--tp-size", "--tensor-parallel-size", "--tp_size")
"""The engines' names of one flag, the tensor-parallel size: a label giving one replaces any other."""
ALIASES = (TP_FLAGS,)


def _tp(flags: list[str]) -> int:
    value = flag_value(flags, TP_FLAGS)
    if value is None:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"tensor parallel size {value!r} in {' '.join(flags)!r} is not a positive integer")
    return int(value)


def _results(body: list[str]) -> list[tuple[str, dict[str, float]]]:
    """The results of one block: a block may print several, each after a ``# label`` line (a dataset, or a flag
    the server ran with instead)."""
    out: list[tuple[str, dict[str, float]]] = []
    label = ""
    for b in body:
        if b.startswith("#"):
            label = b.lstrip("#").strip()
        elif "Serving Benchmark Result" in b:
            out.append((label, {}))
            label = ""
        elif out:
            key, _, value = b.partition(":")
            name = RESULT.get(key.strip(), OPTIONAL.get(key.strip()))
            if name is not None and value.strip():
                try:
                    out[-1][1][name] = float(value.strip())
                except ValueError:
                    raise ValueError(f"{key.strip()}: {value.strip()!r} is not a number") from None
    return out


def _is_flag(word: str) -> bool:
    """``--name``, ``--name=value`` or ``-tp``; not a negative number (``-1``), which is a value."""
    return re.match(r"-{1,2}[A-Za-z]", word) is not None


def _pairs(words: list[str], strict: bool = True) -> list[tuple[str, list[str]]]:
    """``words`` as (flag name, its words) pairs: a flag's value is the next word when that is no flag, or
    after ``=``. A word that belongs to no flag (a server command's leading environment variable) is a pair of
    its own with no name, or, ``strict`` (a label: prose after its flags), a ValueError."""
    out: list[tuple[str, list[str]]] = []
    for w in words:
        if _is_flag(w):
            out.append((w.split("=", 1)[0], [w]))
        elif out and out[-1][0] and len(out[-1][1]) == 1 and "=" not in out[-1][1][0]:
            out[-1][1].append(w)
        elif strict:
            raise ValueError(f"{w!r} is no flag and no flag's value")
        else:
            out.append(("", [w]))
    return out


def _with_flag(flags: list[str], label: str) -> list[str]:
    """``flags`` with the flags of ``label`` in place of the same-named ones (in either form, ``--name=value`` or
    ``--name value``, and under another name of the same flag, :data:`ALIASES`), appended in the label's order:
    the A100 pages label results ``# --max-num-batched-tokens 4096`` under a server that ran 8192. Raises
    ValueError when the label has words that are no flags."""
    given = _pairs(label.split())

    def same(a: str, b: str) -> bool:
        return a == b or any(a in names and b in names for names in ALIASES)

    kept = [w for name, words in _pairs(flags, strict=False) if not any(same(name, g) for g, _ in given) for w in words]
    return kept + [w for _, words in given for w in words]


def _row(got: dict[str, float], engine: str, path: str, flags: list[str], hardware: str, model: str,
         engine_version: str, source_file: str, fp4_checkpoint: bool = False) -> dict[str, str]:  # fmt: skip
    missing = [name for name, key in RESULT.items() if key not in got]
    if missing:
        raise ValueError(f"the result prints no {', '.join(missing)}")
    count = got["n"]  # checked before int(), where NaN or an infinity would fail without the field's name
    if not (math.isfinite(count) and count >= 1 and count == int(count)):
        raise ValueError(f"Successful requests must be a positive whole number, got {count:g}")
    n = int(count)
    for name, key in RESULT.items():
        if key != "n" and not (math.isfinite(got[key]) and got[key] > 0):  # n: checked above
            raise ValueError(f"{name} must be a positive finite number, got {got[key]:g}")
    closed = got.get("max_concurrency")  # ``--max-concurrency C``: C clients, each sending after its answer
    if closed is not None and not (math.isfinite(closed) and closed >= 1 and closed == int(closed)):
        raise ValueError(f"Maximum request concurrency must be a positive whole number, got {closed:g}")
    tp = _tp(flags)
    # FP8 weights: Qwen's -FP8 checkpoints or on-the-fly quantization (not an FP8 KV cache's --kv-cache-dtype fp8)
    fp8 = path.upper().endswith("-FP8") or (flag_value(flags, ("--quantization", "-q")) or "").lower() == "fp8"
    precision = "fp8" if fp8 else "fp4" if fp4_checkpoint else "bf16"  # gpt-oss ships its experts in MXFP4
    # expert parallelism with tensor-parallel attention (moe.csv's labels): vLLM's spans the tensor-parallel GPUs,
    # SGLang's and TensorRT-LLM's are given as a size
    size = flag_value(flags, ("--ep-size", "--ep_size", "--ep"))
    ep = size if size is not None else str(tp) if "--enable-expert-parallel" in flags else ""
    return {
        "isl": f"{got['input'] / n:.1f}", "osl": f"{got['output'] / n:.1f}",
        "concurrency": f"{n if closed is None else closed:.1f}", "qps": "", "output_tok_s": f"{got['output_tok_s']:g}",
        "ttft_ms": f"{got['ttft_ms']:g}", "tpot_ms": f"{got['tpot_ms']:g}",
        "load": "burst" if closed is None else "closed", "num_requests": str(n),
        "engine_args": " ".join(flags), "hardware": hardware, "model": model, "n_gpus": str(tp),
        "tp": str(tp), "ep": ep, "dp_attention": "no" if ep else "", "precision": precision,
        "kv_precision": "", "engine": engine, "engine_version": engine_version,
        "source_id": "gpustack_perf_lab", "source_file": source_file,
        "note": "burst of N requests at once, simulated as N concurrent clients" if closed is None else "",
    }  # fmt: skip


def rows(
    text: str, hardware: str, model: str, source_file: str = SOURCE_FILE, fp4_checkpoint: bool = False
) -> list[dict[str, str]]:
    """The page's result rows (module docstring); ``fp4_checkpoint``: the model's checkpoint is FP4 (gpt-oss's
    MXFP4 experts), its rows' precision unless the server names FP8. ``ValueError`` naming the section of a result
    that cannot be read (a figure missing, no requests, a tensor-parallel size that is not one)."""
    lines = text.splitlines()
    versions = re.findall(r"^- (vLLM|SGLang|TensorRT-LLM): (\S+)", text, flags=re.M)
    engine_version = " ".join(f"{name}: {v}" for name, v in versions)
    out: list[dict[str, str]] = []
    section, command = "", None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if re.search(r'serving script"', line, flags=re.I):  # "Serving script", "Optimized serving script"
            body, i = _block(lines, i + 1)
            command = " ".join(b for b in body if not b.startswith("#"))  # the page's comments are not flags
            continue
        if re.search(r'benchmark results?"', line, flags=re.I):
            body, i = _block(lines, i + 1)
            if command is None:
                print(f"skipped: a result with no server before it ({section})", file=sys.stderr)
                continue
            try:
                engine, path, flags = _server(command)
                results = _results(body)
            except ValueError as e:
                raise ValueError(f"section {section!r}: {e}") from None
            named = [e for _, e in ENGINES if e.lower() in section.lower()]
            if named and engine not in named:
                print(f"skipped: section {section!r} is about {named[0]}, its server is {engine} ({command})",
                      file=sys.stderr)  # fmt: skip
                continue
            for k, (label, got) in enumerate(results, start=1):
                # a result labelled with a flag ran the server with that flag instead of the command's own
                try:
                    variant = _with_flag(flags, label) if _is_flag(label) else flags
                    out.append(_row(got, engine, path, variant, hardware, model, engine_version, source_file,
                                    fp4_checkpoint))  # fmt: skip
                except ValueError as e:
                    raise ValueError(f"section {section!r}, result {k} ({label or 'unlabelled'}): {e}") from None
            continue
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--source-file", default=SOURCE_FILE, help="the rows' source_file label")
    ap.add_argument("--header", action="store_true", help="print the CSV header first")
    args = ap.parse_args(argv)
    catalog = load_catalog()
    found_ids: dict[str, str] = {}
    for option, name, ids in (("--hardware", args.hardware, catalog.hardware), ("--model", args.model, catalog.models)):
        known = catalog_id(name, ids)
        if known is None:
            ap.error(f"{option} {name!r} names no catalog entry (known: {', '.join(sorted(ids))})")
        found_ids[option] = known
    fp4 = catalog.get_model(found_ids["--model"]).fp4_checkpoint == "mxfp4-experts"  # released only in MXFP4
    try:
        found = rows(args.page.read_text(encoding="utf-8"), args.hardware, args.model, args.source_file, fp4)
    except (OSError, ValueError) as e:
        ap.error(f"{args.page}: {e}")
    w = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    if args.header:
        w.writeheader()
    w.writerows(found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
