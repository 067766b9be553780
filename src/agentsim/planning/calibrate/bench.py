"""How a published benchmark loaded the server and configured the engine, read from a measurement's labels.

A measured point is only comparable with a simulation that reproduces its *harness*: how requests arrived, which
of them were measured, and which engine settings the benchmark tool chose. The same engine measured by two tools
gives different numbers, and a simulator compared against the wrong harness measures the harness gap, not its
step model. This module turns a row's labels into that harness (:func:`bench_load`, :func:`engine_overrides`):

**Load** (:class:`BenchLoad`). ``load`` label: ``closed`` (a fixed number of clients, ``concurrency``, steady
state), ``poisson`` (a request rate, ``qps``), ``burst`` (``num_requests`` requests, or ``concurrency`` when that
is absent, all sent at time 0 with no cap: ``vllm bench serve`` with the default ``--request-rate inf``;
offline ``benchmark_throughput`` / ``benchmark_latency`` single waves; ``trtllm-bench throughput``). Without a
label the load follows the columns: a rate is Poisson, a concurrency closed, neither offline (steady state at
full batch). A burst and a Poisson load *with* ``num_requests`` are finite runs: exactly that many requests,
measured whole, as the tools do: output tokens/s is all output tokens over the time from the first request to
the last completion (the ramp-down included), TTFT includes the queueing behind the burst. Poisson arrivals of a
finite run are uniform over ``num_requests / qps`` (the arrival times of a Poisson process given their number).

**trtllm-bench** (NVIDIA's Perf Overview tables: ``trtllm-bench throughput``, offline, all requests queued).
The tool chooses ``max_batch_size`` and ``max_num_tokens`` itself from the KV memory and the dataset's ISL/OSL
(``tensorrt_llm/bench/build/tuning.py``, ``calc_engine_setting`` and ``finetune_setting``, reproduced in
:func:`trtllm_bench_settings`) and, without chunked prefill, raises ``max_num_tokens`` to ``max ISL +
max_batch_size`` (``bench/benchmark/utils/general.py``). Each ISL/OSL pair of the Perf Overview ran a fixed
number of requests (:data:`TRTLLM_PERF_OVERVIEW_REQUESTS`, the table of ``docs/source/performance/
perf-overview.md``), a finite burst.

**Engine version.** vLLM before 0.8 ran the V0 engine (V1 became the default in 0.8.0): ``max_num_seqs`` 256,
and chunked prefill only for models whose context passes 32K tokens (``EngineArgs.create_engine_config``), then
with a 512-token step budget (``SchedulerConfig``); otherwise (or when the server's flags turn it off, or the
row is an offline ``benchmark_throughput`` run, which passes its unset ``--enable-chunked-prefill`` to the
engine as ``False``) unchunked prefill with a budget of the context length (``--max-model-len`` when given),
which is also the forward pass its memory profile runs (``agentsim.serving.presets.vllm_activation_reserve_gb``).
A vLLM server starts only if its KV cache holds one sequence of ``--max-model-len``, so the harness takes the flag
as a lower bound on the capacity (:func:`vllm_max_model_len`). V0 also did its CPU work per sequence (scheduling,
sampling, detokenizing) in the step loop, at :data:`V0_SEQ_OVERHEAD_S` per decoding sequence per step, and
replayed CUDA graphs only for decode steps within ``max_seq_len_to_capture`` tokens: a row whose decode steps
mostly pass it runs eagerly (:data:`V0_MAX_SEQ_LEN_TO_CAPTURE`). Those rows run the ``vllm`` preset with these
values (:func:`vllm_v0_overrides`).

**Engine arguments.** An ``engine_args`` label holds the server's command-line flags as published; the ones that
map to engine knobs are honoured (:func:`parse_engine_args`): ``--max-num-seqs`` / ``--max-running-requests`` /
``--max_batch_size``, ``--max-num-batched-tokens`` / ``--chunked-prefill-size`` / ``--max_num_tokens``,
``--enable-chunked-prefill`` / ``--no-enable-chunked-prefill``, ``--gpu-memory-utilization`` (vLLM: of the total
memory), ``--kv_cache_free_gpu_mem_fraction`` (TensorRT-LLM: of what the weights leave free),
``--async-scheduling`` (vLLM overlaps the CPU scheduling with the GPU: the overlapped engines' step overhead),
``--enforce-eager`` / ``--disable-cuda-graph`` (no CUDA graphs: ``cuda_graphs: false``), vLLM V0's
``--max-seq-len-to-capture`` (:data:`V0_MAX_SEQ_LEN_TO_CAPTURE`),
``-pp`` / ``--pipeline-parallel-size``, and speculative decoding (``--speculative-algorithm``
EAGLE/EAGLE3/NEXTN/MTP with ``--speculative-num-steps`` draft tokens, SGLang's :data:`SGLANG_AUTO_SPEC_STEPS` when
a GQA model's row names the algorithm alone, at the acceptance defaults of :data:`DEFAULT_ACCEPTANCE`). The flags
keep their engine's meaning: TensorRT-LLM's batch flags count per attention-DP rank, as the engine takes them
(:func:`agentsim.resolve.resolve_engine`). Columns ``max_num_seqs``, ``max_batched_tokens`` and ``chunked_prefill``
win over all of these.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from agentsim.catalog import Hardware, ModelArch
from agentsim.planning.calibrate.measurements import CalibrationError, Measurement, cell_number

__all__ = [
    "DEFAULT_ACCEPTANCE",
    "ROWWISE_FP8_VLLM",
    "SGLANG_AUTO_SPEC_STEPS",
    "TRTLLM_PERF_OVERVIEW_REQUESTS",
    "V0_MAX_SEQ_LEN_TO_CAPTURE",
    "V0_SEQ_OVERHEAD_S",
    "BenchLoad",
    "bench_load",
    "engine_overrides",
    "measured_by_trtllm_bench",
    "parse_engine_args",
    "trtllm_bench_settings",
    "vllm_max_model_len",
    "vllm_v0_overrides",
    "vllm_version",
]

LoadMode = Literal["closed", "poisson", "offline", "burst"]

TRTLLM_PERF_OVERVIEW_REQUESTS: Final[dict[tuple[int, int], int]] = {
    (128, 128): 30000,
    (128, 2048): 3000,
    (128, 4096): 1500,
    (1000, 2000): 1500,
    (2048, 128): 3000,
    (2048, 2048): 1500,
    (5000, 500): 1500,
    (1000, 1000): 3000,
    (500, 2000): 3000,
    (20000, 2000): 1000,
}
"""``$num_requests`` per ISL/OSL of NVIDIA's TensorRT-LLM Perf Overview runs (``docs/source/performance/
perf-overview.md``, "Preparing a Dataset")."""

DEFAULT_ACCEPTANCE: Final[dict[str, list[float] | float]] = {
    "mtp": [0.85, 0.60, 0.60, 0.60],
    "eagle": 0.75,
}
"""Conditional acceptance per draft position when a row names a speculative method but not its acceptance:
DeepSeek-V3 MTP 85-90% at the first position (arXiv 2412.19437 section 5.4.3) and ~0.6 after (SGLang's MTP blog
fit, AL 2.18 at 3 tokens); EAGLE-3 chains ~0.75 per position (vLLM's EAGLE-3 on MiniMax, SPEED-Bench: cumulative
76/56/43%)."""

SGLANG_AUTO_SPEC_STEPS: Final = 5
"""Draft steps SGLang chooses when ``--speculative-algorithm`` is given without ``--speculative-num-steps``:
``auto_choose_speculative_params`` in ``server_args.py`` (v0.5) returns (steps, topk, draft tokens) = (5, 4, 8)
for Llama, Grok and every architecture it does not name (Qwen3 included). DeepSeek's value differs between
versions, so MLA rows without the flag are not defaulted."""

V0_MAX_NUM_SEQS: Final = 256
"""vLLM V0 ``EngineArgs.max_num_seqs`` default."""

V0_CHUNKED_BUDGET: Final = 512
"""vLLM V0 ``max_num_batched_tokens`` when chunked prefill is on by default (``SchedulerConfig``, 0.5-0.6)."""

V0_LONG_CONTEXT: Final = 32768
"""vLLM V0 turns chunked prefill on by default for models whose context passes this (``use_long_context``)."""

ROWWISE_FP8_VLLM: Final = (0, 8)
"""vLLM releases before this one run a per-channel FP8 checkpoint on ROCm with unfused dequantization
(``fp8_dequant: unfused``; ``perf.roofline.UNFUSED_DEQUANT_KERNELS``): their ``apply_fp8_linear`` fuses the scales
only through CUTLASS (CUDA) or a per-tensor ``torch._scaled_mm``, and the rowwise-scaled ``torch._scaled_mm``
that later releases call on ROCm (``USE_ROWWISE_TORCH_SCALED_MM``) needs PyTorch 2.7 and ROCm 6.3. 0.8 is the V0
boundary the harness already draws, not the exact release that changed it; the rows it touches ran 0.6.x."""

V0_MAX_SEQ_LEN_TO_CAPTURE: Final = 8192
"""vLLM V0's ``max_seq_len_to_capture`` default (``--max-seq-len-to-capture``): a decode step runs its CUDA graph
only when every sequence's length is within it (and the batch within the captured sizes: 256); longer ones run
eagerly (``vllm/worker/model_runner.py``, ``ModelInputForGPUBuilder._use_captured_graph``). The harness runs a V0
row eagerly (``cuda_graphs: false``) when more than half of its decode steps run a batch whose longest sequence
passes it. With ``B`` requests at independent positions of their ``osl`` decode steps, a step stays within the
captured length with probability ``f ** B``, ``f = (capture - isl) / osl`` the share of one request's steps within
it, so the row is eager when ``f < 2 ** (-1 / B)``: ``isl + osl x 2 ** (-1 / B) > max_seq_len_to_capture``
(``isl + osl / 2`` for one request; ``B`` the concurrency, or the requests of a burst up to the batch limit)."""

V0_SEQ_OVERHEAD_S: Final = 450e-6
"""vLLM V0's cost per decoding sequence per step, a fit as the presets' (``serving/presets.py``) on the public vLLM
< 0.8 rows of at least 64 sequences (``experiments/fidelity/fit_seq_overhead.py``: dstack's and Oracle's
Llama-3.1-405B runs on H100 and MI300X, 59 rows of 10 deployments; refits without each deployment: 400-500 us;
600 us until the per-channel FP8 kernels of Meta's checkpoint were counted, docs/FIDELITY.md cause 21).
The same engine's offline sweep alone gives ~0.7 ms per sequence beyond batch 32 (``docs/FIDELITY.md``); vLLM's
performance roadmap (issue #6801) measured ~20 ms between V0 steps at batch 200 (0.1 ms per sequence) on
smaller models."""

FINITE_THINK_S: Final = 1e12
"""Think time after a finite run's single request: never reached, so every client sends exactly one request."""


@dataclass(frozen=True)
class BenchLoad:
    """How a benchmark sent its requests: the mode and, for finite runs, how many (module docstring)."""

    mode: LoadMode
    requests: int | None = None

    @property
    def finite(self) -> bool:
        """Exactly ``requests`` requests, measured from the first arrival to the last completion."""
        return self.requests is not None and self.mode in ("burst", "poisson")


def _trtllm_bench(labels: Mapping[str, str]) -> bool:
    text = " ".join(labels.get(k, "") for k in ("source", "notes", "note", "engine", "harness")).lower()
    return "trtllm-bench" in text or "perf overview" in text or "perf-overview" in text


def bench_load(m: Measurement) -> BenchLoad:
    """The load of measurement ``m`` (module docstring). Raises :class:`CalibrationError` for a burst of
    unknown size or an unknown ``load`` label."""
    label = m.labels.get("load", "").strip().lower()
    n = m.num_requests
    if label in ("burst", "batch", "wave"):
        n = n or (round(m.concurrency) if m.concurrency else None)
        if not n:
            raise CalibrationError(f"{m.source}: load {label!r} needs num_requests (or a concurrency)")
        return BenchLoad("burst", int(n))
    if label not in ("", "closed", "poisson", "offline"):
        raise CalibrationError(f"{m.source}: load must be closed, poisson, burst or offline, got {label!r}")
    if label == "poisson" or (not label and m.qps is not None):
        if m.qps is None:
            raise CalibrationError(f"{m.source}: load poisson needs a qps")
        return BenchLoad("poisson", n)
    if label == "closed" or (not label and m.concurrency is not None):
        if m.concurrency is None:
            raise CalibrationError(f"{m.source}: load closed needs a concurrency")
        return BenchLoad("closed")
    if n is None and _trtllm_bench(m.labels):
        n = TRTLLM_PERF_OVERVIEW_REQUESTS.get((round(m.isl), round(m.osl)))
    return BenchLoad("burst", n) if n else BenchLoad("offline")


# --------------------------------------------------------------------------- engine settings from labels


def vllm_version(labels: Mapping[str, str]) -> tuple[int, int] | None:
    """(major, minor) of the vLLM release a vLLM row ran, from ``engine_version`` (``0.6.3.post2``,
    ``~0.6.x``, ``vLLM: v0.11.0 SGLang: ...``), or None."""
    if "vllm" not in labels.get("engine", "").lower():
        return None
    text = labels.get("engine_version", "")
    match = re.search(r"vllm\W*v?(\d+)\.(\d+)", text, flags=re.IGNORECASE) or re.search(r"v?(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def vllm_v0_overrides(
    model: ModelArch, chunked: bool | None = None, max_model_len: int | None = None, offline: bool = False
) -> dict[str, Any]:
    """The engine knobs of vLLM's V0 engine (before 0.8) that differ from the ``vllm`` preset's (module
    docstring); ``chunked`` is the server's ``--enable-chunked-prefill`` when given, ``max_model_len`` its
    ``--max-model-len`` (default: the model's window). Unchunked, V0's step budget, and the tokens of its profiling
    run, is ``max(max_model_len, 2048)`` (``SchedulerConfig``). Its long-context default (chunked prefill for
    windows past 32k) applies only where the flag is unset: ``benchmarks/benchmark_throughput.py`` of 0.5-0.6
    declares ``--enable-chunked-prefill`` as ``store_true`` and passes the resulting ``False`` to ``LLM(...)``, so
    an ``offline`` run without the flag runs unchunked."""
    window = max_model_len or model.max_context_tokens
    common = {"max_num_seqs": V0_MAX_NUM_SEQS, "step_overhead_s_per_seq": V0_SEQ_OVERHEAD_S}
    if chunked is None:
        chunked = not offline and window > V0_LONG_CONTEXT
    if chunked:
        return {**common, "chunked_prefill": True, "max_batched_tokens": V0_CHUNKED_BUDGET}
    return {**common, "chunked_prefill": False, "max_batched_tokens": max(window, 2048)}


def trtllm_bench_settings(
    model: ModelArch,
    hardware: Hardware,
    *,
    tp: int,
    pp: int,
    precision: str,
    kv_bytes: float,
    isl: float,
    osl: float,
    kv_fraction: float = 0.9,
) -> tuple[int, int]:
    """``(max_batch_size, max_num_tokens)`` as ``trtllm-bench throughput`` picks them without chunked prefill
    (``calc_engine_setting``, ``finetune_setting``, and ``max_num_tokens >= ISL + max_batch_size``): KV requests
    = ``fraction x (GPUs x device GiB - parameters x bytes) / (bytes per token x (ISL + OSL))`` with
    ``max(tp, kv_heads)`` KV heads; batch ``min(requests, 4096) / pp`` rounded up (to 32 below 256, 128 below
    1024, else 256; at least 64); tokens ``min(batch (1 + ISL / OSL), 32768)`` rounded up (at least 2048)."""
    gib = float(2**30)
    weight_bytes = {"fp4": 0.5, "fp8": 1.0}.get(precision, 2.0)
    heads = max(tp, model.kv_heads)
    # every layer, sliding-window ones included: the engine sizes each for the whole sequence (perf.memory)
    per_token = 2.0 * model.layers * heads * model.head_dim * kv_bytes / gib
    gpus = tp * pp
    available = gpus * hardware.device_memory_bytes / gib - model.params_b * 1e9 * weight_bytes / gib
    requests = max(available * kv_fraction, 0.0) / max(per_token * (isl + osl), 1e-12)
    raw_bs = min(requests, 4096.0) / pp
    raw_token = min(raw_bs * (1.0 + isl / max(osl, 1.0)), 32768.0)
    if raw_bs < 256:
        max_bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        max_bs = 128 * math.ceil(raw_bs / 128)
    else:
        max_bs = 256 * math.ceil(raw_bs / 256)
    if raw_token < 4096:
        max_token = max(2048, 256 * math.ceil(raw_token / 256))
    elif raw_token < 8192:
        max_token = 512 * math.ceil(raw_token / 512)
    else:
        max_token = 1024 * math.ceil(raw_token / 1024)
    return max_bs, max(max_token, math.ceil(isl) + max_bs)


def _flag(tokens: list[str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of ``names`` on the command line, as written, and its value."""
    for i, tok in enumerate(tokens):
        for name in names:
            if tok == name and i + 1 < len(tokens):
                return name, tokens[i + 1]
            if tok.startswith(name + "="):
                return name, tok.split("=", 1)[1]
    return None


def flag_value(tokens: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` on a server's command line (``--name value`` or ``--name=value``); None
    if absent."""
    found = _flag(tokens, names)
    return None if found is None else found[1]


def parse_engine_args(text: str, default_spec_steps: int | None = None) -> dict[str, Any]:
    """Engine knobs (and ``pp``, ``speculative``, and vLLM V0's ``max_seq_len_to_capture``, which
    :func:`engine_overrides` reads and drops) from a server command line (module docstring); ``default_spec_steps``
    the draft steps when an algorithm is named without them (none: no speculation)."""
    tokens = shlex.split(text.replace(",", " "))
    out: dict[str, Any] = {}

    def integer(names: tuple[str, ...]) -> int | None:
        found = _flag(tokens, names)
        if found is None:
            return None
        value = cell_number(found[1])
        if value is None or not (math.isfinite(value) and value > 0 and value == int(value)):  # never ignored
            raise CalibrationError(f"engine_args: {found[0]} {found[1]!r} is not a positive integer")
        return int(value)

    seqs = integer(("--max-num-seqs", "--max-running-requests", "--max_batch_size", "--max-batch-size"))
    if seqs:
        out["max_num_seqs"] = seqs
    sglang_chunk = _flag(tokens, ("--chunked-prefill-size",))
    if sglang_chunk is not None and cell_number(sglang_chunk[1]) == -1:
        out["chunked_prefill"] = False  # SGLang: "-1 means disabling chunked prefill"
        budget = integer(("--max-num-batched-tokens", "--max_num_tokens", "--max-num-tokens"))
    else:
        budget = integer(("--max-num-batched-tokens", "--chunked-prefill-size", "--max_num_tokens", "--max-num-tokens"))
    if budget:
        out["max_batched_tokens"] = budget
    def fraction(names: tuple[str, ...]) -> float | None:
        found = _flag(tokens, names)
        if found is None:
            return None
        value = cell_number(found[1])
        if value is None or not 0 < value <= 1:  # NaN fails the comparison too
            raise CalibrationError(f"engine_args: {found[0]} {found[1]!r} is not a fraction in (0, 1]")
        return value

    free = fraction(("--kv_cache_free_gpu_mem_fraction", "--kv-cache-free-gpu-mem-fraction"))
    if free is not None:
        # TensorRT-LLM sizes its KV cache from what is free after the weights (serving/presets.py)
        out |= {"kv_memory": "of-free", "gpu_memory_utilization": free}
    total = fraction(("--gpu-memory-utilization",))
    if total is not None:
        out["gpu_memory_utilization"] = total
    chunked = flag_value(tokens, ("--enable-chunked-prefill",))
    if "--no-enable-chunked-prefill" in tokens or (chunked or "").lower() == "false":
        out["chunked_prefill"] = False
    elif "--enable-chunked-prefill" in tokens or chunked is not None:
        out["chunked_prefill"] = True
    if "--async-scheduling" in tokens:
        from agentsim.serving.presets import OVERLAPPED_STEP_OVERHEAD_S

        out["step_overhead_s"] = OVERLAPPED_STEP_OVERHEAD_S
    for tok in tokens:
        if tok in ("--enforce-eager", "--disable-cuda-graph", "--no-enforce-eager"):
            out["cuda_graphs"] = tok == "--no-enforce-eager"
        elif tok.startswith("--enforce-eager="):
            out["cuda_graphs"] = tok.split("=", 1)[1].lower() in ("false", "0", "no")
    capture = integer(("--max-seq-len-to-capture", "--max-context-len-to-capture"))
    if capture:
        out["max_seq_len_to_capture"] = capture  # vLLM V0's; engine_overrides reads it and drops it
    model_len = integer(("--max-model-len", "--max_model_len"))
    if model_len:
        out["max_model_len"] = model_len  # vLLM V0's step budget unchunked; engine_overrides reads it and drops it
    pp = integer(("-pp", "--pipeline-parallel-size", "--pp-size", "--pp_size"))
    if pp:
        out["pp"] = pp
    algorithm = (flag_value(tokens, ("--speculative-algorithm",)) or "").lower()
    steps = integer(("--speculative-num-steps", "--num-speculative-tokens", "--num_nextn_predict_layers"))
    steps = steps or (default_spec_steps if algorithm else None)
    if algorithm and steps:
        method = "mtp" if algorithm in ("nextn", "mtp") else "eagle"
        out["speculative"] = {"method": method, "draft_tokens": steps, "acceptance": _acceptance(method, steps)}
    return out


def _acceptance(method: str, k: int) -> list[float] | float:
    rates = DEFAULT_ACCEPTANCE[method]
    if isinstance(rates, float):
        return rates
    return [rates[min(i, len(rates) - 1)] for i in range(k)]


def engine_overrides(m: Measurement, model: ModelArch) -> dict[str, Any]:
    """Engine knobs a row's labels fix (vLLM V0 defaults, then its ``engine_args``, then explicit columns);
    ``pp`` and ``speculative`` included when given. trtllm-bench's choices need the deployment and are applied
    by the harness. The flags keep their engine's meaning (TensorRT-LLM's batch flags count per attention-DP
    rank: :func:`agentsim.resolve.resolve_engine` scales them)."""
    labels = m.labels
    out: dict[str, Any] = {}
    version = vllm_version(labels)
    args = labels.get("engine_args", "")
    default_steps = None if model.attention == "mla" else SGLANG_AUTO_SPEC_STEPS
    parsed = parse_engine_args(args, default_steps) if args.strip() else {}
    capture = parsed.pop("max_seq_len_to_capture", V0_MAX_SEQ_LEN_TO_CAPTURE)
    model_len = parsed.pop("max_model_len", None)
    if version is not None and version < (0, 8):
        offline = "benchmark_throughput" in labels.get("engine", "").lower()
        out |= vllm_v0_overrides(model, parsed.get("chunked_prefill"), model_len, offline)
        batch = min(m.concurrency or m.num_requests or 1, parsed.get("max_num_seqs", V0_MAX_NUM_SEQS))
        if m.isl + m.osl * 2.0 ** (-1.0 / batch) > capture:
            # V0 replays a CUDA graph only for decode steps whose longest sequence is within the captured length
            out["cuda_graphs"] = False
    if parsed:
        if "max_batched_tokens" in parsed and version is not None and version < (0, 8):
            parsed.setdefault("chunked_prefill", out.get("chunked_prefill", False))
        out |= parsed
    for name in ("max_num_seqs", "max_batched_tokens"):
        value = cell_number(labels.get(name))
        if value is not None and value > 0:
            out[name] = int(value)
    chunked = labels.get("chunked_prefill", "").strip().lower()
    if chunked:
        out["chunked_prefill"] = chunked in ("1", "true", "yes", "on")
    if "speculative" in out and model.attention == "mla":
        # SGLang names DeepSeek's MTP head "EAGLE"
        out["speculative"] = {**out["speculative"], "method": "mtp"}
        out["speculative"]["acceptance"] = _acceptance("mtp", out["speculative"]["draft_tokens"])
    return out


def vllm_max_model_len(m: Measurement) -> int | None:
    """The ``--max-model-len`` a vLLM row's server ran with, or None. vLLM refuses to start when its KV cache cannot
    hold one sequence of that length (V0 ``raise_if_cache_size_invalid``, V1 ``check_enough_kv_cache_memory``), so
    a published run with the flag had at least that many tokens of KV cache."""
    if "vllm" not in m.labels.get("engine", "").lower():
        return None
    args = m.labels.get("engine_args", "")
    value: int | None = parse_engine_args(args).get("max_model_len") if args.strip() else None
    return value


def measured_by_trtllm_bench(m: Measurement) -> bool:
    """A TensorRT-LLM row measured by ``trtllm-bench`` (offline, no HTTP server), whatever its load."""
    return _trtllm_bench(m.labels) and "tensorrt" in m.labels.get("engine", "").lower()


def uses_trtllm_bench(m: Measurement, load: BenchLoad) -> bool:
    """A TensorRT-LLM row measured offline by ``trtllm-bench throughput`` (settings chosen by the tool)."""
    return load.mode in ("offline", "burst") and _trtllm_bench(m.labels) and "tensorrt" in (
        m.labels.get("engine", "").lower()
    )
