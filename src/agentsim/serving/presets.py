"""Engine presets: the defaults of vLLM v0.12.0, SGLang v0.5.5 and TensorRT-LLM 1.x, filled into a pool's engine.

A scenario's ``deployment.engine`` names a ``preset`` and may set any knob itself; every knob it leaves unset
(null) takes the preset's value here, some of them by the accelerator's memory as the engines choose them.
:func:`fill_engine` returns the completed :class:`~agentsim.spec.EngineSpec` (and the KV precision), which the
memory and perf models read; :func:`engine_config` turns it into the plain
:class:`~agentsim.serving.admission.EngineConfig` a replica runs. ``agentsim.resolve`` calls both, once per pool.

Values and sources (``docs/DESIGN.md``, Engine presets, has the table and the KV memory formulas):

* vLLM v0.12.0 (V1): fcfs-preempt; KV = 0.9 x total memory - weights - activations; ``kv_cache_dtype=auto``
  (bf16 even for fp8 weights); chunked prefill on, ``max_num_batched_tokens`` 8192 and ``max_num_seqs`` 1024 on
  GPUs of >= 70 GiB other than A100, else 2048 and 256 (``engine/arg_utils.py``); 16-token blocks.
* SGLang v0.5.5: new-token-ratio admission, prefill batches before decode; KV = ``mem_fraction_static`` x (total -
  CUDA context and distributed buffers) - weights, the fraction from its reserve formula (``server_args.py``;
  :func:`sglang_reserve_gb`); bf16 KV; ``chunked_prefill_size`` by GPU
  memory; ``max_running_requests = min(KV tokens // 2, 4096)``, 48 with speculative decoding, which also turns
  the overlap scheduler off; token-granular radix cache.
* TensorRT-LLM 1.x (PyTorch backend): guaranteed-no-evict; KV = 0.9 x (memory - weights - activations)
  (``free_gpu_memory_fraction``); fp8 KV for NVIDIA's ModelOpt FP8 and NVFP4 checkpoints (they quantize the KV
  cache: ``kv_cache_quant_algo: FP8``), bf16 for checkpoints without a KV entry (:func:`kv_precision`); every
  layer's cache sized for the full sequence, sliding-window layers included (``agentsim.perf.memory``); chunked
  prefill off, ``max_num_tokens`` 8192, ``max_batch_size`` 2048; 32-token blocks.

Each preset also charges a cost per decoding sequence per step (``step_overhead_s_per_seq``, the roofline's
``overhead_s_per_seq``), fitted on the public rows of ``experiments/fidelity/data`` (constants below).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from agentsim.catalog import Hardware, ModelArch
from agentsim.perf.efficiency import fp8_scales
from agentsim.perf.memory import ACTIVATION_RESERVE_GB, WindowKv, forward_activation_bytes
from agentsim.perf.roofline import KERNEL_LATENCY_S
from agentsim.serving.admission import ADMISSION_CODES, EngineConfig
from agentsim.spec import Deployment, EnginePreset, EngineSpec, Precision

GIB = float(2**30)
MIB = float(2**20)

VLLM_STEP_OVERHEAD_S = 0.002
"""vLLM v0.12 schedules the next step on the CPU while the GPU idles (async scheduling is off by default): the
2 ms agentsim has always charged per step, within the 0.2-6 ms range of the published measurements."""

OVERLAPPED_STEP_OVERHEAD_S = 0.0003
"""SGLang and TensorRT-LLM overlap the CPU scheduling of step n+1 with the GPU run of step n; what remains per
step is sampling and launch gaps (an estimate bounded by vLLM's 0.2-0.3 ms async target, issue #10634)."""

VLLM_SEQ_OVERHEAD_S = 130e-6
"""Engine cost per decoding sequence per step (``step_overhead_s_per_seq``): CPU work per running request
(scheduling, sampling, detokenizing, streaming to its client) that grows with the batch. No public per-step
figure exists for vLLM V1 (the V1 blog names the costs, not their size; microbenchmarks in vLLM PRs time single
functions at ~1 us per request, e.g. ``update_from_output`` 0.29 ms at batch 256, PR #46112), so this is a fit:
the grid value minimizing the mean absolute log error of output tok/s and TPOT over the public vLLM >= 0.8 rows
of at least 64 sequences (``experiments/fidelity/fit_seq_overhead.py``: gpustack's ``vllm bench serve`` runs of
vLLM v0.10.2-v0.11.0 on H100/H200, 43 rows of 8 deployments, one source); every leave-one-deployment-out refit
gave the same value. Refitted at the stop of 2026-12-08 on the 53 rows of 10 deployments the data has grown to:
100 us at a loss of 0.299 against this value's 0.303, within the grid's flatness, so it is kept
(``docs/FIDELITY.md``, cause 28).
Those rows are MoE or FP4 models served over HTTP, so the fit also absorbs what the step model misses there
(``docs/FIDELITY.md``, Served latency under load)."""

SGLANG_SEQ_OVERHEAD_S = 250e-6
"""SGLang v0.5's per-sequence step cost, fitted as :data:`VLLM_SEQ_OVERHEAD_S` on the public SGLang rows
(gpustack's SGLang v0.5.3-0.5.5 runs, 11 rows of >= 64 sequences, 4 deployments; refits without each
deployment: 250-300 us; refitted on the 21 rows of 7 deployments of the stop of 2026-12-08, DeepSeek-R1's
served without DP attention as SGLang ran them: 250 us again). The overlap scheduler hides the per-step constant,
not work that grows with the batch beyond the GPU's step."""

BELOW_FP8_UNITS: Final[Mapping[EnginePreset, tuple[Precision, ...]]] = MappingProxyType(
    {"vllm": ("fp8", "fp4"), "sglang": ("fp4",), "trtllm": ()}
)
"""Quantized weights each preset serves on a GPU without FP8 units (Ampere), through weight-only kernels that
dequantize to the 16-bit activations (``Hardware.math_precision``). vLLM: Marlin W8A16 and W4A16
(``quantization/fp8.py``, ``use_marlin`` below capability 8.9; ``mxfp4.py``, ``get_mxfp4_backend``). SGLang:
gpt-oss's MXFP4 through ``triton_kernels`` (gpustack ran it on A100), but not FP8 ("Running SGLang with FP8
quantization on A100 GPUs does not work", ``docs/performance-lab/qwen3-235b-a22b/a100.md``). TensorRT-LLM:
neither ("RuntimeError: Unsupported SM version for FP8 block scaling GEMM", "NotImplementedError: WFP4A16 MoE is
unsupported on SM80": ``qwen3-14b/a100.md``, ``gpt-oss-20b/a100.md``), nor an FP8 KV cache there. A GPU with FP8
units but no FP4 ones (Hopper) runs FP4 weight-only under every preset (the public gpt-oss rows of all three)."""

SGLANG_SPECULATIVE_MAX_RUNNING = 48
"""SGLang v0.5's ``max_running_requests`` under speculative decoding when not set (``server_args.py``), which also
turns the overlap scheduler off: the step then pays the non-overlapped :data:`VLLM_STEP_OVERHEAD_S`."""

TRTLLM_SEQ_OVERHEAD_S = 250e-6
"""TensorRT-LLM 1.x served by ``trtllm-serve`` (its OpenAI server: detokenizing and streaming every request in
Python): fitted as :data:`VLLM_SEQ_OVERHEAD_S` on the public ``trtllm-serve`` rows (gpustack's bursts of 1,000
requests: gpt-oss-20b, gpt-oss-120b, DeepSeek-R1 on H100/H200; ``experiments/fidelity/fit_seq_overhead.py``,
250 us on a 0-1300 us grid, refits without each deployment: 200-250 us). With it those rows' mean TPOT is 1%
low to 34% high (it was 73-93% low). ``trtllm-bench`` feeds token ids to the executor with no server; NVIDIA's
max-throughput tables (up to 4,096 sequences a step) leave no room for a per-sequence cost on dense models
(within 10.7% without it), so the fidelity harness runs ``trtllm-bench`` rows at
:data:`TRTLLM_BENCH_SEQ_OVERHEAD_S` (``docs/FIDELITY.md``)."""

TRTLLM_KERNEL_LATENCY_S = 6.8e-6
"""TensorRT-LLM's ``kernel_latency_s`` (vLLM's and SGLang's is the roofline's :data:`KERNEL_LATENCY_S`, with its
sources): TensorRT-LLM's DeepSeek-R1 latency blog's optimized engine (programmatic dependent launch, fused
all-reduce + norm, multi-stream overlap) decoded 111 tokens/s for one user without MTP, 9.0 ms for the 1,325
kernels agentsim counts."""

EAGER_KERNEL_LATENCY_S = 32e-6
"""``kernel_latency_s`` of an engine run without CUDA/HIP graphs (``cuda_graphs: false``: vLLM's
``--enforce-eager``, SGLang's ``--disable-cuda-graph``, and vLLM V0's decode steps past ``max_seq_len_to_capture``):
the host launches each kernel through the model's Python code, so a forward pass cannot be shorter than its
kernels at the host's time per kernel. Five public eager decode steps where the host, not the GPU, sets the step
time, each over a count of its kernels by the per-block rules of :func:`agentsim.perf.roofline.forward_kernels`
(GPT-2's and whisper's unfused LayerNorms and residual adds counted as the engines launch them), give 28-35 us;
the median is taken:

* GPT-2 (12 layers of 11 kernels, ~6 outside: ~138) on one H200, batch 1, 128 prompt / 32 output tokens
  (deepspeedai/DeepSpeed PR #8352, comment of 2026-09-22): vLLM 154.1 ms a request eager against 41.8 ms with
  graphs, SGLang 156.0 against 33.2; 32 forward passes: 34.9 and 35.3 us a kernel;
* whisper-large-v3-turbo's 4-layer decoder (self- and cross-attention and MLP, ~17 kernels a layer, ~74 a pass)
  under vLLM on one MI355X (ROCm), batch 1 (vllm-project/vllm PR #48664): TPOT ~2.15 ms eager against ~0.68 ms
  with graphs: 29 us;
* Llama-3-8B (32 layers, 292 kernels) under SGLang v0.3, batch 1 (sgl-project/sglang PR #1401): decode step
  9.28 ms eager against 7.06 ms with graphs (Triton attention), 8.23 against 7.35 (FlashInfer): 31.8 and 28.2 us
  (its weight stream, ~5 ms, is below both).

The step times include each engine's per-step CPU work, which the presets charge again as ``step_overhead_s``;
the figure is an upper estimate of the launch cost alone. With graphs the GPT-2 and whisper passes take 7-10 us a
kernel, the presets' :data:`KERNEL_LATENCY_S`."""

FRONTEND_S = 0.0
"""Every preset's ``frontend_s``: none. A server's front end (HTTP, chat template, tokenizing; detokenizing and
streaming back) adds to every call's TTFT, but no public figure sizes it per engine: gpustack's concurrency-1 rows
put 50-60 ms on the client's TTFT for prompts the GPU prefills in a few ms, and the same ``vllm bench serve`` client
measured 28 ms against SGLang and 64 ms against vLLM on the same prompts (``docs/FIDELITY.md``), which mixes the
servers' front ends with the client's host and network. A scenario sets it from its own measurements, and
``agentsim calibrate`` fits it when the measurements carry TTFT."""

TRTLLM_BENCH_SEQ_OVERHEAD_S = 0.0
"""``trtllm-bench``'s: none (offline, token ids in and out, no HTTP server; see :data:`TRTLLM_SEQ_OVERHEAD_S`)."""


def _gib(hardware: Hardware) -> float:
    """The device memory the engine sees, GiB (``Hardware.device_memory_bytes``): the engines' thresholds
    below read the driver's total."""
    return hardware.device_memory_bytes / GIB


def _vllm_large(hardware: Hardware, hardware_id: str) -> bool:
    """vLLM's test for its larger defaults: at least 70 GiB of device memory and not an A100."""
    return _gib(hardware) >= 70.0 and "a100" not in hardware_id.lower()


def sglang_chunk_tokens(hardware: Hardware) -> int:
    """SGLang v0.5.5's ``chunked_prefill_size`` by GPU memory (``server_args.py``)."""
    gib = _gib(hardware)
    if gib < 35:
        return 2048
    if gib < 60:
        return 4096
    if gib < 160:
        return 8192
    return 16384


def sglang_cuda_graph_bs(hardware: Hardware, tp: int) -> int:
    """SGLang v0.5.5's ``cuda_graph_max_bs`` by GPU memory and tensor parallelism (it enters the reserve)."""
    gib = _gib(hardware)
    if gib < 20:
        return 8
    if gib < 35:
        return 24 if tp < 4 else 80
    if gib < 60:
        return 32 if tp < 4 else 160
    if gib < 160:
        return 256 if tp < 4 else 512
    return 512


def sglang_mem_fraction_static(hardware: Hardware, tp: int, pp: int, chunk: int) -> float:
    """SGLang v0.5.5's automatic ``mem_fraction_static``: ``(capacity - reserved) / capacity`` with
    ``reserved = 512 + 1.5 max(chunk, 2048) + 2 cuda_graph_max_bs + 1024 tp pp / 8`` MiB, at least 10 GiB on GPUs
    of more than 60 GiB, rounded to 3 decimals (``server_args.py:784-822``)."""
    capacity = hardware.device_memory_bytes / MIB
    reserved = 512 + 1.5 * max(chunk, 2048) + 2 * sglang_cuda_graph_bs(hardware, tp) + 1024 * tp * pp / 8
    if capacity > 60 * 1024:
        reserved = max(reserved, 10240.0)
    return round((capacity - reserved) / capacity, 3)


SGLANG_CONTEXT_GB = 0.55
"""GB per GPU the CUDA context holds before SGLang first measures the free memory it sizes its pools from
(``ModelRunner.init_torch_distributed``: ``get_available_gpu_memory`` after ``torch.cuda.set_device``): sgl-project
/sglang issue #11716 logs ``Load weight begin. avail mem=137.34 GB`` on an H200 of 139.81 GiB after ``Init torch
distributed ends. mem usage=1.96 GB``, 0.51 GiB unaccounted for by either."""

SGLANG_DISTRIBUTED_GB = 2.1
"""GB per GPU that initializing torch.distributed (NCCL, the custom all-reduce) takes with more than one GPU, before
SGLang's measure: the same log, ``mem usage=`` 1.77-2.01 GiB over eight H200 ranks, 1.96 on rank 0; a one-GPU
server logs 0.00."""


def sglang_reserve_gb(deployment: Deployment, mem_fraction_static: float) -> float:
    """GB per GPU of the KV rule's reserve under SGLang: its ``mem_fraction_static`` applies to the memory free
    after the CUDA context and torch.distributed's buffers (``profile_max_num_token``: ``rest = available after
    the weights - total x (1 - mfs)``, ``total`` measured after distributed init), not to the device's total, so
    the rule ``mfs x device - weights`` overstates the cache by ``mfs`` times what those took
    (:data:`SGLANG_CONTEXT_GB`, :data:`SGLANG_DISTRIBUTED_GB` with more than one GPU); ``mem_fraction_static`` the
    preset's, a scenario's ``gpu_memory_utilization`` winning."""
    taken = SGLANG_CONTEXT_GB + (SGLANG_DISTRIBUTED_GB if deployment.gpus > 1 else 0.0)
    if deployment.engine.kv_memory == "of-free":
        return taken  # the of-free rule applies its fraction to what the reserve leaves: not twice
    return (deployment.engine.gpu_memory_utilization or mem_fraction_static) * taken


def kv_precision(deployment: Deployment, model: ModelArch) -> Precision:
    """The KV cache's precision: ``kv_precision`` when set, else the preset's (module docstring). TensorRT-LLM's
    ``kv_cache_config.dtype: auto`` takes the checkpoint's ``kv_cache_quant_algo`` (``ModelConfig.from_pretrained``:
    ModelOpt's ``hf_quant_config.json``), else the model's dtype: NVIDIA's ModelOpt FP8 and NVFP4 checkpoints
    quantize the KV cache to FP8; the checkpoints whose quantization config has no KV entry keep BF16 (OpenAI's
    MXFP4 gpt-oss: ``quant_method: mxfp4``, TensorRT-LLM 1.1.0rc3 logs ``kv size is 73728`` bytes a token for
    gpt-oss-120b, BF16 on all 36 layers; Meta's FBGEMM FP8 Llama 3.1; DeepSeek's and Qwen3's block-scaled FP8)."""
    if deployment.kv_precision is not None:
        return deployment.kv_precision
    if deployment.engine.preset == "trtllm" and modelopt_checkpoint(deployment, model):
        return "fp8"
    return "bf16"


def modelopt_checkpoint(deployment: Deployment, model: ModelArch) -> bool:
    """Whether ``deployment`` serves an NVIDIA ModelOpt checkpoint (FP8 with static per-tensor scales on every
    linear layer, or NVFP4), whose ``hf_quant_config.json`` carries ``kv_cache_quant_algo: FP8``. NVIDIA's DeepSeek
    FP4 releases (``fp4_checkpoint: nvfp4-ffn``) are counted so: the current ones declare it
    (nvidia/DeepSeek-R1-0528-NVFP4's ``hf_quant_config.json``; TensorRT-LLM's best-practice blog: it "had enabled FP8
    KV cache by-default"); the first, DeepSeek-R1-FP4, says ``null``, and a pool serving it sets ``kv_precision:
    bf16``."""
    if deployment.precision == "fp4":
        return model.fp4_checkpoint in ("nvfp4", "nvfp4-ffn")
    if deployment.precision == "fp8":
        return model.fp8_checkpoint == "all" and fp8_scales(model, deployment) == "tensor"
    return False


def preset_values(deployment: Deployment, hardware: Hardware) -> dict[str, Any]:
    """Every knob of ``deployment.engine.preset`` on ``hardware`` except SGLang's ``max_num_seqs``, which
    depends on the KV capacity, and vLLM's ``activation_reserve_gb``, which depends on the model and the limits
    (:func:`fill_engine`, :func:`vllm_activation_reserve_gb`)."""
    preset = deployment.engine.preset
    if preset == "vllm":
        large = _vllm_large(hardware, deployment.hardware)
        return {
            "admission": "fcfs-preempt",
            "max_num_seqs": 1024 if large else 256,
            "max_batched_tokens": 8192 if large else 2048,
            "chunked_prefill": True,
            "prefix_caching": True,
            "block_size_tokens": 16,
            "gpu_memory_utilization": 0.9,
            "kv_memory": "of-total",
            "step_overhead_s": VLLM_STEP_OVERHEAD_S,
            "step_overhead_s_per_seq": VLLM_SEQ_OVERHEAD_S,
            "kernel_latency_s": KERNEL_LATENCY_S,
            "cuda_graphs": True,
            "fp8_dequant": "fused",
            "frontend_s": FRONTEND_S,
        }
    if preset == "sglang":
        chunk = deployment.engine.max_batched_tokens or sglang_chunk_tokens(hardware)
        mfs = sglang_mem_fraction_static(hardware, deployment.tp, deployment.pp, chunk)
        values: dict[str, Any] = {
            "admission": "new-token-ratio",
            "max_batched_tokens": chunk,
            "chunked_prefill": True,
            "prefix_caching": True,
            "block_size_tokens": 1,
            "gpu_memory_utilization": mfs,
            "kv_memory": "of-total",
            "activation_reserve_gb": sglang_reserve_gb(deployment, mfs),
            "step_overhead_s": OVERLAPPED_STEP_OVERHEAD_S,
            "step_overhead_s_per_seq": SGLANG_SEQ_OVERHEAD_S,
            "kernel_latency_s": KERNEL_LATENCY_S,
            "cuda_graphs": True,
            "fp8_dequant": "fused",
            "frontend_s": FRONTEND_S,
        }
        if deployment.engine.speculative is not None:
            # SGLang v0.5 with EAGLE/EAGLE3/NEXTN or a draft model resets max_running_requests to 48 unless set
            # and turns the overlap scheduler off (server_args.py: "Max running requests is reset to 48 for
            # speculative decoding"), so the CPU's scheduling of each step is no longer hidden
            values |= {"max_num_seqs": SGLANG_SPECULATIVE_MAX_RUNNING, "step_overhead_s": VLLM_STEP_OVERHEAD_S}
        return values
    return {
        "admission": "guaranteed-no-evict",
        "max_num_seqs": 2048,
        "max_batched_tokens": 8192,
        "chunked_prefill": False,
        "prefix_caching": True,
        "block_size_tokens": 32,
        "gpu_memory_utilization": 0.9,
        "kv_memory": "of-free",
        "activation_reserve_gb": ACTIVATION_RESERVE_GB,
        "step_overhead_s": OVERLAPPED_STEP_OVERHEAD_S,
        "step_overhead_s_per_seq": TRTLLM_SEQ_OVERHEAD_S,
        "kernel_latency_s": TRTLLM_KERNEL_LATENCY_S,
        "cuda_graphs": True,
        "fp8_dequant": "fused",
        "frontend_s": FRONTEND_S,
    }


def precision_problem(deployment: Deployment, hardware: Hardware) -> tuple[str, str] | None:
    """(field, why) when the filled-in ``deployment``'s preset cannot serve its weights or KV cache in their
    precision on ``hardware`` (:data:`BELOW_FP8_UNITS`), else None."""
    if hardware.fp8_dense_tflops is not None:
        return None
    preset = deployment.engine.preset
    served = BELOW_FP8_UNITS[preset]
    where = f"{deployment.hardware}, which has no FP8 units"
    if deployment.precision in ("fp8", "fp4") and deployment.precision not in served:
        others = [p for p, ok in BELOW_FP8_UNITS.items() if deployment.precision in ok]
        return "precision", (
            f"the {preset} preset has no kernels for {deployment.precision} weights on {where}; use bf16"
            + (f", or the {' or '.join(others)} preset (weight-only kernels)" if others else "")
        )
    if deployment.kv_precision == "fp8" and preset == "trtllm":
        return "kv_precision", f"the trtllm preset has no FP8 KV cache on {where}; use bf16"
    return None


def fill_engine(deployment: Deployment, hardware: Hardware, model: ModelArch) -> Deployment:
    """``deployment`` with every unset engine knob and the KV precision taken from its preset (SGLang's
    ``max_num_seqs`` stays unset: :func:`sglang_max_running` needs the KV capacity)."""
    engine = deployment.engine
    given = engine.model_dump(exclude_none=True)
    values = {**preset_values(deployment, hardware), **given}
    if values["preset"] == "vllm" and "activation_reserve_gb" not in given:
        values["activation_reserve_gb"] = vllm_activation_reserve_gb(
            model, deployment, values["max_num_seqs"], values["max_batched_tokens"]
        )
    if not values["cuda_graphs"] and "kernel_latency_s" not in given:
        values["kernel_latency_s"] = EAGER_KERNEL_LATENCY_S  # the host launches every kernel
    return deployment.model_copy(
        update={"engine": EngineSpec.model_validate(values), "kv_precision": kv_precision(deployment, model)}
    )


VLLM_SAMPLER_FP32_COPIES = 3.5
"""FP32 ``[sequences, vocab]`` tensors alive at once at the peak of vLLM V1's profiling run (v0.10-v0.12), whose
dummy sampler run applies top-k (``vocab - 1``) and top-p (0.9) at temperature 0.5 to one logit row per sequence
(``gpu_model_runner._dummy_sampler_run``), counted from the source of vLLM v0.11.0
(``v1/sample/sampler.py``, ``v1/sample/ops/topk_topp_sampler.py``) and flashinfer-python 0.3.1
(``flashinfer/sampling.py``): the model's bf16 logits, which the caller keeps (0.5), their FP32 cast (1), FlashInfer's
top-k masked logits (1) and their softmax (1). FlashInfer's sampler is vLLM's default wherever FlashInfer imports
(``VLLM_USE_FLASHINFER_SAMPLER`` unset), as in vLLM's Docker images. A ``pip install vllm`` without FlashInfer
takes PyTorch's sort instead, :data:`VLLM_NATIVE_SAMPLER_FP32_COPIES`; such a deployment sets its
``activation_reserve_gb``.

Checked both ways on public runs: the logs of source installs (``experiments/fidelity/data/vllm_memory_logs.csv``)
show 9.7-12.1 copies, the native count; gpustack's Qwen3-32B in BF16 on one H100 under vLLM v0.11.0 served prompts
of 32,000 tokens, so its cache held at least 32,077 tokens: 3.5 copies leave 32,663, the native count 18,419. (vLLM
also refuses to start with a cache smaller than one ``max_model_len`` request, 40,960 tokens for this model, which
neither count leaves at the default ``gpu_memory_utilization`` of 0.9: that server gave its cache more memory than
the defaults do. This count starts it from 0.93, the native one from 0.97; the row cannot tell them apart beyond
that.)"""

VLLM_NATIVE_SAMPLER_FP32_COPIES = 9.5
"""The same count on PyTorch's sort-based top-k/top-p (``apply_top_k_top_p``), at its peak inside
``logits.sort``: the bf16 and FP32 logits (1.5), the sorted values (1) and their int64 indices (2), the sort's int64
reverse index (2) and CUB's segmented radix sort's third key and value buffers (1 + 2). The public logs of runs
whose peak the sampler decides give 9.7, 9.8, 10.3 and 12.1 copies (median 10.05): this count plus the forward's
leftovers. Not a preset value: what a deployment without FlashInfer reserves (``docs/FIDELITY.md``, cause 22)."""

VLLM_NON_TORCH_GB = 0.19
"""Memory vLLM's profile finds outside PyTorch's allocator on a one-GPU replica (cuBLAS and attention
workspaces), GB: the median of six public logs' ``non_torch_memory``, 0.09, 0.12, 0.16, 0.20, 0.26 and 1.79 GiB
(median 0.18 GiB; ``docs/FIDELITY.md``, cause 22)."""

VLLM_NON_TORCH_MULTI_GB = 2.2
"""The same with tensor or pipeline parallelism, which adds NCCL's and the custom all-reduce's buffers: the median
of seven public multi-GPU runs, each at its largest rank (the one that sizes every rank's KV cache): 0.20, 0.36,
1.39, 2.04, 2.15, 3.58 and 7.16 GiB, median 2.04 GiB (``docs/FIDELITY.md``, cause 22)."""


def vllm_activation_reserve_gb(
    model: ModelArch,
    deployment: Deployment,
    max_num_seqs: int,
    budget: int,
    *,
    copies: float = VLLM_SAMPLER_FP32_COPIES,
) -> float:
    """GB per GPU vLLM's profiling run keeps out of the KV cache: memory outside PyTorch
    (:data:`VLLM_NON_TORCH_GB`, :data:`VLLM_NON_TORCH_MULTI_GB` with more than one GPU) plus the larger of a
    forward pass of ``budget`` tokens (:func:`agentsim.perf.memory.forward_activation_bytes`) and the sampler's run
    after it: ``copies`` FP32 copies of the logits of ``max_num_seqs`` rows, at most ``budget``
    (:data:`VLLM_SAMPLER_FP32_COPIES`), next to the forward's bf16 hidden states it keeps (the whole budget's, and
    the sampled rows' twice: ``last_hidden_states`` and its random stand-in). The two runs follow each other and
    the caching allocator reuses the forward's blocks for the sampler, so the peak is the larger, not the sum.
    vLLM's profile runs ``max_num_batched_tokens`` tokens: 8,192 under V1's defaults; V0 without chunked prefill
    runs its whole ``max_model_len``, which is why its long-context default turned chunked prefill on."""
    if not (math.isfinite(copies) and copies >= 0.0):
        raise ValueError(f"copies: FP32 copies of the sampler's logits must be finite and >= 0, got {copies}")
    non_torch = VLLM_NON_TORCH_GB if deployment.gpus == 1 else VLLM_NON_TORCH_MULTI_GB
    # the profile's batch has at most one sequence per token of the budget (V1: min(max_num_seqs, max_num_tokens))
    rows = min(max_num_seqs, budget)
    kept = 2.0 * model.hidden_size * (budget + 2 * rows)  # bf16 hidden states alive through the sampler's run
    sampler = copies * 4.0 * rows * model.vocab_size + kept
    forward = forward_activation_bytes(model, deployment, budget)
    return non_torch + max(sampler, forward) / 1e9


def sglang_max_running(kv_capacity_tokens: int) -> int:
    """SGLang's ``max_running_requests`` default: ``min(max_total_num_tokens // 2, req_to_token_pool size)``
    with the pool at most 4096 requests (``tp_worker.py``, ``model_runner.py``; the pool's dependence on the
    context length is not modelled)."""
    return max(1, min(kv_capacity_tokens // 2, 4096))


PER_RANK_LIMITS = ("vllm", "trtllm")
"""Presets whose ``max_num_seqs`` and ``max_batched_tokens`` count per data-parallel attention rank: vLLM's DP ranks
are engine cores with their own scheduler limits, TensorRT-LLM's ``max_batch_size`` / ``max_num_tokens`` are "in
each rank". SGLang's are totals it divides by ``dp_size`` (``server_args.py``)."""


def engine_config(
    engine: EngineSpec, tokens_per_step: float = 1.0, window: WindowKv | None = None, attention_ranks: int = 1
) -> EngineConfig:
    """The plain configuration a replica runs, from a filled engine spec (:func:`fill_engine`).

    With speculative decoding the engine steps in *token steps* of ``1 / tokens_per_step`` of a real step
    (docs/DESIGN.md, speculative decoding), so its per-step token budget is the real one divided by the
    expected tokens per step. ``window``: the KV each running call holds for the model's sliding-window layers
    (:func:`agentsim.perf.memory.sliding_window_kv`; none when not given). ``attention_ranks``: the
    data-parallel attention ranks (the deployment's ``tp`` with ``data_parallel_attention``), which split the
    token budget between them; under the :data:`PER_RANK_LIMITS` presets the replica's limits are that many times
    the knobs."""
    assert engine.admission is not None and engine.max_num_seqs is not None
    limits_per_rank = attention_ranks if engine.preset in PER_RANK_LIMITS else 1
    return EngineConfig(
        admission=ADMISSION_CODES[engine.admission],
        max_num_seqs=engine.max_num_seqs * limits_per_rank,
        max_batched_tokens=step_budget(engine, tokens_per_step) * limits_per_rank,
        chunked_prefill=bool(engine.chunked_prefill),
        prefix_caching=bool(engine.prefix_caching),
        block_size_tokens=engine.block_size_tokens or 16,
        frontend_s=engine.frontend_s or 0.0,
        window_tokens=window.tokens if window is not None else 0,
        window_blocks=window.blocks if window is not None else 0,
        attention_ranks=attention_ranks,
    )


def step_budget(engine: EngineSpec, tokens_per_step: float = 1.0) -> int:
    """The token budget of one engine step: ``max_batched_tokens``, divided by the expected tokens per step under
    speculative decoding (the engine runs token steps, :func:`engine_config`), at least 1."""
    assert engine.max_batched_tokens is not None
    if tokens_per_step > 1.0:
        return max(1, math.floor(engine.max_batched_tokens / tokens_per_step))
    return engine.max_batched_tokens


def check_budget(engine: EngineSpec, tokens_per_step: float = 1.0) -> str | None:
    """A problem with a filled engine's limits, or None: where decodes share the step budget (every policy but
    SGLang's), the budget the engine runs (:func:`step_budget`: divided under speculative decoding) must hold
    one token per running sequence."""
    if engine.admission == "new-token-ratio":
        return None
    assert engine.max_batched_tokens is not None and engine.max_num_seqs is not None
    budget = step_budget(engine, tokens_per_step)
    if budget < engine.max_num_seqs:
        divided = (
            f" / {tokens_per_step:.3g} expected tokens per speculative step = {budget}" if tokens_per_step > 1.0 else ""
        )
        return (
            f"max_batched_tokens ({engine.max_batched_tokens}){divided} must be >= max_num_seqs "
            f"({engine.max_num_seqs}): every running sequence takes one token of the step budget when it decodes"
        )
    return None
