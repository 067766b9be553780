"""The catalog: hardware, model architectures and prices, as data with a source per entry.

A simulator of serving clusters is only as good as the numbers it starts from, and spec sheets drift (one
repository has H100 at 3,072 GB/s, another at 3,350). agentsim keeps every such number in three YAML files
shipped with the package, with the unit in the field name and a ``source`` string per entry:

* ``hardware.yaml``: accelerators (``hardware:``: dense TFLOPS per precision, HBM size and bandwidth, power,
  scale-up bandwidth) and tool CPUs (``cpus:``);
* ``models.yaml``: model architectures (``models:``: layers, heads, KV heads, experts, attention kind), the
  shapes a roofline and a KV-cache budget need, taken from each model's Hugging Face ``config.json``;
* ``prices.yaml``: $/GPU-hour per pricing tier and all-in kW per GPU (``prices:``), and $/core-hour for tool
  CPUs (``cpu_prices:``).

Entries are keyed by lowercase ids (``h100``, ``llama-3.3-70b``). :func:`load_catalog` reads the packaged
files and then any user files with the same top-level keys; a user entry *replaces* the packaged entry of the
same id whole (no field-by-field merge, so an override can never half-apply). Every entry is a frozen
pydantic model that rejects unknown fields, and the catalog's tables are read-only mappings: nothing here
can be changed after loading, so one catalog can be shared by every run of a sweep.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from agentsim.errors import did_you_mean
from agentsim.spec import Precision, PriceTier
from agentsim.spec.base import Strict
from agentsim.spec.load import field_errors, format_path, parse_path
from agentsim.yamlio import TextFileError, line_of, loads, read_text

__all__ = [
    "SECTIONS",
    "VISIBLE_FRACTION",
    "Catalog",
    "CatalogError",
    "CatalogFileError",
    "Cpu",
    "CpuPrice",
    "Efficiency",
    "Hardware",
    "HostTiers",
    "ModelArch",
    "Price",
    "TierPrices",
    "load_catalog",
    "load_files",
    "scenario_catalog",
]

SECTIONS = ("hardware", "cpus", "models", "prices", "cpu_prices")
"""Top-level keys a catalog YAML file may hold."""

PACKAGED_FILES = ("hardware.yaml", "models.yaml", "prices.yaml")
"""The catalog files shipped inside this package."""


class CatalogError(KeyError):
    """An id that the catalog does not hold. The message lists the ids it does hold."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument (quotes and escapes); show the message as written.
        return str(self.args[0]) if self.args else ""


class CatalogFileError(ValueError):
    """A catalog YAML file that cannot be read or does not validate; the message names the file and entry."""


class Entry(Strict):
    """Base of every catalog entry: immutable, unknown keys rejected, numbers finite and not booleans
    (:class:`agentsim.spec.base.Strict`), a non-empty source required."""

    source: str = Field(min_length=1, description="where the numbers come from")


# --------------------------------------------------------------------------- hardware


class Efficiency(Strict):
    """Measured fractions of an accelerator's peaks that kernels reach, with their source.

    ``gemm_*``: sustained dense GEMM throughput over the catalog's dense peak of that precision (cuBLASLt /
    hipBLASLt or best-shape ``torch.matmul`` microbenchmarks); ``hbm``: STREAM-like copy/triad bandwidth over the
    catalog's peak HBM bandwidth; ``*_fp8_block``: the same of block-scaled FP8 GEMM kernels (one scale per
    128 x 128 weight block, DeepSeek's and Qwen3's FP8 checkpoints), measured at serving shapes (prefill-sized and
    decode-sized M), which bound what those layers reach. :mod:`agentsim.perf.efficiency` turns them into the
    roofline's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemm_bf16: float | None = Field(None, gt=0, le=1)
    gemm_fp8: float | None = Field(None, gt=0, le=1)
    gemm_fp4: float | None = Field(None, gt=0, le=1)
    hbm: float | None = Field(None, gt=0, le=1)
    gemm_fp8_block: float | None = Field(
        None, gt=0, le=1, description="block-scaled FP8 GEMM at serving-sized large M over the FP8 dense peak"
    )
    hbm_fp8_block: float | None = Field(
        None, gt=0, le=1, description="weight-streaming rate of a block-scaled FP8 GEMM at decode-sized M over peak HBM"
    )
    fused_moe_bf16: tuple[tuple[PositiveFloat, Annotated[float, Field(gt=0, le=1)]], ...] | None = Field(
        None,
        description="Triton fused-MoE throughput (vLLM's and SGLang's routed experts) at 256 tokens per expert over "
        "the BF16 dense peak, by per-GPU expert width: (width, fraction) points, widths increasing",
    )
    serving_gemm_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="a whole serving step's GEMM efficiency over the microbenchmark's on this hardware, where its "
        "own serving rows give one (a fit, or one assumed from a sibling GPU: the source says which; null: the "
        "Hopper-fitted share of agentsim.perf.efficiency, SERVING_GEMM_SHARE)",
    )
    serving_hbm_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="a whole serving step's HBM efficiency over STREAM's on this hardware, as serving_gemm_share "
        "(null: SERVING_HBM_SHARE)",
    )
    source: str = Field(min_length=1)

    @field_validator("fused_moe_bf16")
    @classmethod
    def _widths_increase(
        cls, v: tuple[tuple[float, float], ...] | None
    ) -> tuple[tuple[float, float], ...] | None:
        if v is not None and (not v or any(a[0] >= b[0] for a, b in itertools.pairwise(v))):
            raise ValueError("needs at least one (width, fraction) point, widths strictly increasing")
        return v

    @model_validator(mode="after")
    def _shares_scale_fractions(self) -> Efficiency:
        # A share multiplies a measured fraction; without one the fallback prior applies and the share would be
        # silently ignored.
        if self.serving_gemm_share is not None and self.gemm("bf16") is None:
            raise ValueError("serving_gemm_share scales a GEMM fraction: give gemm_bf16, gemm_fp8 or gemm_fp4")
        if self.serving_hbm_share is not None and self.hbm is None:
            raise ValueError("serving_hbm_share scales the HBM fraction: give hbm")
        return self

    def gemm(self, precision: Precision) -> float | None:
        """The GEMM fraction measured in ``precision``, else the one of the nearest measured precision (fp4 ->
        fp8 -> bf16, fp8 -> bf16 -> fp4, bf16 -> fp8 -> fp4); None when none is measured."""
        order = {"fp4": ("fp4", "fp8", "bf16"), "fp8": ("fp8", "bf16", "fp4"), "bf16": ("bf16", "fp8", "fp4")}
        for p in order[precision]:
            value: float | None = getattr(self, f"gemm_{p}")
            if value is not None:
                return value
        return None


class HostTiers(Strict):
    """The host memory and storage below one accelerator, for lower KV tiers (KV offload), with their source.

    Per GPU: host DRAM and local NVMe capacity (decimal GB), the host <-> GPU link (PCIe or NVLink-C2C, one
    direction, GB/s) reloads from DRAM cross, the NVMe read bandwidth, and each tier's $/GB-hour and watts per GB.
    Strict as every catalog entry: finite numbers, a boolean is not a number."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dram_gb_per_gpu: PositiveFloat
    link_gb_s_per_gpu: PositiveFloat
    nvme_gb_per_gpu: float = Field(ge=0)
    nvme_gb_s_per_gpu: PositiveFloat
    dram_usd_per_gb_hour: float = Field(ge=0)
    nvme_usd_per_gb_hour: float = Field(ge=0)
    dram_w_per_gb: float = Field(ge=0)
    nvme_w_per_gb: float = Field(ge=0)
    source: str = Field(min_length=1)


VISIBLE_FRACTION = 0.99
"""The share of a vendor's memory figure, read as GiB, that the driver shows an engine where the catalog has no logged
total: the logged parts show 0.990 (H100, 79.22 of 80), 0.992 (H200, 139.81 of 141), 0.995 (B200, nvidia-smi's
179.06 of 180) and 0.997 (MI300X, 191.45 of 192); the lowest is taken."""


Vendor = Literal["nvidia", "amd", "intel", "sambanova"]
"""Accelerator makers the catalog knows (``Hardware.vendor``)."""

VENDORS: Final[tuple[str, ...]] = get_args(Vendor)


class Hardware(Entry):
    """One accelerator: dense peak rates, memory, power and scale-up bandwidth (per GPU)."""

    name: str = Field(min_length=1)
    vendor: Vendor = Field(
        description="who makes it, which decides the engines' kernels (vLLM's MXFP4 MoE backend, ROCm's FP8 "
        "GEMMs); when not given, the first word of ``name``"
    )
    bf16_dense_tflops: PositiveFloat
    fp8_dense_tflops: PositiveFloat | None = Field(
        description="FP8 dense peak; null (stated, not left out): no FP8 units, FP8 weights are weight-only"
    )
    fp4_dense_tflops: PositiveFloat | None = None
    hbm_gb: PositiveFloat = Field(description="HBM per GPU, decimal GB (1e9 bytes)")
    hbm_visible_gib: PositiveFloat | None = Field(
        None,
        description="device memory the driver reports to a serving engine (torch.cuda.mem_get_info's total, as "
        "vLLM logs it), GiB (2**30 bytes); the memory the engine's fractions apply to; null: not logged publicly, "
        "hbm_gb read as GiB times VISIBLE_FRACTION",
    )
    hbm_visible_source: str | None = Field(None, min_length=1, description="where hbm_visible_gib comes from")
    hbm_tb_s: PositiveFloat = Field(description="peak HBM bandwidth, TB/s (1e12 bytes/s)")
    tdp_w: PositiveFloat
    idle_w: PositiveFloat
    scaleup_gb_s_per_gpu: PositiveFloat = Field(description="unidirectional scale-up bandwidth per GPU, GB/s")
    gpus_per_node: PositiveInt
    scaleup_domain_gpus: PositiveInt = Field(description="GPUs sharing the scale-up fabric (bound on tp)")
    ddr_gb: PositiveFloat | None = Field(
        None, description="second memory tier per accelerator (off-package DDR), decimal GB; null: none"
    )
    ddr_tb_s: PositiveFloat | None = Field(None, description="peak bandwidth of the DDR tier, TB/s")
    sram_mb: PositiveFloat | None = Field(None, description="on-chip SRAM, MB (informative; not modelled)")
    dataflow: bool = Field(
        False,
        description="a dataflow accelerator that maps the decoder onto the chip as one graph instead of launching "
        "kernels one after another (SambaNova's RDU): the roofline's kernel floor does not apply",
    )
    scaleout_gb_s_per_gpu: PositiveFloat | None = Field(
        None, description="unidirectional scale-out (NIC) bandwidth per GPU, GB/s; null: unknown (no wide EP)"
    )
    efficiency: Efficiency | None = Field(None, description="measured fractions of the peaks; null: generic defaults")
    host: HostTiers | None = Field(None, description="host DRAM / NVMe below each GPU (KV offload); null: unknown")

    @model_validator(mode="before")
    @classmethod
    def _vendor_from_name(cls, data: Any) -> Any:
        # every packaged entry's name starts with its maker; a catalog file's entry named otherwise must say it
        if isinstance(data, dict) and "vendor" not in data and isinstance(data.get("name"), str):
            first = data["name"].split()[0].lower() if data["name"].split() else ""
            if first not in VENDORS:
                raise ValueError(
                    f"vendor: give one of {', '.join(VENDORS)} (the name {data['name']!r} does not start with one)"
                )
            return {**data, "vendor": first}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Hardware:
        if self.idle_w > self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w}) must not exceed tdp_w ({self.tdp_w})")
        if (self.ddr_gb is None) != (self.ddr_tb_s is None):
            raise ValueError("ddr_gb and ddr_tb_s go together: give both or neither")
        if (self.hbm_visible_gib is None) != (self.hbm_visible_source is None):
            raise ValueError("hbm_visible_gib and hbm_visible_source go together: give both or neither")
        if self.hbm_visible_gib is not None and not 0.9 * self.hbm_gb <= self.hbm_visible_gib <= self.hbm_gb:
            # the vendors' "80 GB" is 80 GiB of HBM; the driver reports nearly all of it (H100: 79.22 GiB), never
            # more; far less is a figure left over from another part (a copied entry with a new hbm_gb)
            raise ValueError(
                f"hbm_visible_gib ({self.hbm_visible_gib}) must lie between 0.9 x and 1 x hbm_gb ({self.hbm_gb}) read "
                "in GiB: the driver's total of this part's memory"
            )
        if self.scaleup_domain_gpus < self.gpus_per_node:
            raise ValueError(
                f"scaleup_domain_gpus ({self.scaleup_domain_gpus}) must be >= gpus_per_node ({self.gpus_per_node})"
            )
        if self.fp4_dense_tflops is not None and self.fp8_dense_tflops is None:
            raise ValueError("fp4_dense_tflops without fp8_dense_tflops: no part has FP4 units and no FP8 ones")
        for peak, fields in (
            (self.fp8_dense_tflops, ("gemm_fp8", "gemm_fp8_block", "hbm_fp8_block")),
            (self.fp4_dense_tflops, ("gemm_fp4",)),
        ):
            given = [f for f in fields if self.efficiency is not None and getattr(self.efficiency, f) is not None]
            if peak is None and given:
                raise ValueError(
                    f"efficiency.{given[0]} on a part without those units (its peak is null): the fraction of a peak "
                    "it does not have; leave it out (weights of that precision run weight-only at the BF16 peak)"
                )
        for low, high, name in (
            (self.fp8_dense_tflops, self.bf16_dense_tflops, "fp8_dense_tflops below bf16_dense_tflops"),
            (self.fp4_dense_tflops, self.fp8_dense_tflops, "fp4_dense_tflops below fp8_dense_tflops"),
        ):
            if low is not None and high is not None and low < high:
                raise ValueError(f"{name} ({low} < {high}): a narrower precision never has a lower peak")
        return self

    def math_precision(self, precision: Precision) -> Precision:
        """The precision the matrix units compute in for weights in ``precision``: FP4 weights on hardware
        without FP4 units are weight-only quantized, dequantized in the kernel to the BF16 activations (Hopper:
        vLLM's MXFP4 MoE backends are FlashInfer MXFP4 x BF16, triton_kernels or Marlin W4A16,
        ``quantization/mxfp4.py`` ``get_mxfp4_backend``, BF16 the only activation dtype; TensorRT-LLM's GPT-OSS
        deployment guide: H200 BF16 activations x MXFP4 weights, Triton backend); FP8 weights on hardware
        without FP8 units likewise (Ampere: vLLM's Marlin W8A16 kernels, ``quantization/fp8.py``, used below
        compute capability 8.9); every other precision computes as itself."""
        if (precision == "fp4" and self.fp4_dense_tflops is None) or (
            precision == "fp8" and self.fp8_dense_tflops is None
        ):
            return "bf16"
        return precision

    def dense_tflops(self, precision: Precision) -> float:
        """Dense matrix peak for math on weights in ``precision`` (:meth:`math_precision`: FP4 or FP8 without
        such units at the BF16 peak)."""
        math = self.math_precision(precision)
        if math == "bf16":
            return self.bf16_dense_tflops
        if math == "fp8":
            assert self.fp8_dense_tflops is not None
            return self.fp8_dense_tflops
        assert self.fp4_dense_tflops is not None
        return self.fp4_dense_tflops

    @property
    def hbm_bytes(self) -> float:
        """HBM capacity per GPU in bytes."""
        return self.hbm_gb * 1e9

    @property
    def device_memory_bytes(self) -> float:
        """Bytes per GPU a serving engine sees and sizes its memory from: ``hbm_visible_gib`` GiB when the
        catalog has it (a vendor's "80 GB" is 80 GiB of HBM, of which the driver reports 79.22 GiB on an H100:
        85.06e9 bytes, 6% more than 80e9), else, for a GPU, ``hbm_gb`` read as GiB times :data:`VISIBLE_FRACTION`,
        so that GPUs with and without a logged figure compare on one scale. A dataflow accelerator's runtime is
        not a GPU driver: its ``hbm_gb`` is taken as stated (decimal GB)."""
        if self.hbm_visible_gib is not None:
            return self.hbm_visible_gib * 2**30
        if self.dataflow:
            return self.hbm_bytes
        return self.hbm_gb * 2**30 * VISIBLE_FRACTION

    @property
    def device_memory_logged(self) -> bool:
        """Whether :attr:`device_memory_bytes` is a logged figure (``hbm_visible_gib``) rather than the estimate."""
        return self.hbm_visible_gib is not None

    @property
    def hbm_bytes_per_s(self) -> float:
        """Peak HBM bandwidth per GPU in bytes/s."""
        return self.hbm_tb_s * 1e12

    @property
    def scaleup_bytes_per_s(self) -> float:
        """Unidirectional scale-up bandwidth per GPU in bytes/s."""
        return self.scaleup_gb_s_per_gpu * 1e9

    @property
    def scaleout_bytes_per_s(self) -> float:
        """Unidirectional scale-out (NIC) bandwidth per GPU in bytes/s (0 when unknown)."""
        return self.scaleout_gb_s_per_gpu * 1e9 if self.scaleout_gb_s_per_gpu is not None else 0.0

    @property
    def ddr_bytes(self) -> float:
        """Capacity of the DDR tier per accelerator in bytes (0 without one)."""
        return self.ddr_gb * 1e9 if self.ddr_gb is not None else 0.0

    @property
    def ddr_bytes_per_s(self) -> float:
        """Peak bandwidth of the DDR tier per accelerator in bytes/s (0 without one)."""
        return self.ddr_tb_s * 1e12 if self.ddr_tb_s is not None else 0.0


class Cpu(Entry):
    """A server CPU (one socket) that runs agent tools."""

    name: str = Field(min_length=1)
    cores: PositiveInt
    threads: PositiveInt
    base_ghz: PositiveFloat
    memory_channels: PositiveInt
    memory_gb: PositiveFloat
    mem_bw_gb_s: PositiveFloat
    tdp_w: PositiveFloat
    idle_w: PositiveFloat
    # The memory's share of the node's price and its power, for a KV tier kept on tool nodes (issue 15).
    dram_usd_per_gb_hour: NonNegativeFloat | None = None
    dram_w_per_gb: NonNegativeFloat | None = None


# --------------------------------------------------------------------------- models


class ModelArch(Entry):
    """A transformer's shapes, Hugging Face ``config.json`` names where they exist, and its context window.

    ``max_context_tokens`` bounds every call the model serves: prompt + output tokens (a server such as vLLM
    rejects a request past it); ``max_context_source`` says where the number comes from.

    Mixture-of-experts models give ``experts`` (routed experts per layer) and ``experts_per_token``; one
    expert's size ``e`` (summed over the MoE layers) comes from the shapes (:attr:`expert_params_b`), and
    ``dense = params - E*e`` holds attention, embeddings, dense layers and shared experts: everything every token
    reads. The card's ``active`` count gives the FLOPs a token does beside its ``k`` experts, ``active - k*e``
    (cards differ on whether it counts the input embedding, a lookup: gpt-oss's does not).
    """

    name: str = Field(min_length=1, description="Hugging Face repository")
    max_context_tokens: PositiveInt = Field(
        description="context window: the most prompt + output tokens one call may hold (config.json "
        "max_position_embeddings, what vLLM enforces as max_model_len)"
    )
    max_context_source: str = Field(min_length=1, description="where max_context_tokens comes from")
    layers: PositiveInt
    hidden_size: PositiveInt
    heads: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate_size: PositiveInt
    moe_intermediate_size: PositiveInt | None = None
    vocab_size: PositiveInt
    params_b: PositiveFloat = Field(description="total parameters, billions")
    active_params_b: PositiveFloat = Field(description="parameters used per token, billions")
    experts: NonNegativeInt = 0
    experts_per_token: NonNegativeInt = 0
    attention: Literal["gqa", "mla"] = "gqa"
    kv_lora_rank: PositiveInt | None = None
    qk_rope_head_dim: PositiveInt | None = None
    q_lora_rank: PositiveInt | None = Field(None, description="MLA query compression rank (null: uncompressed)")
    moe_layers: PositiveInt | None = Field(
        None, description="layers with routed experts (DeepSeek: layers - first_k_dense_replace); null: all"
    )
    shared_experts: NonNegativeInt = Field(
        0, description="experts every token goes through beside the routed ones (DeepSeek: n_shared_experts 1)"
    )
    sliding_window: PositiveInt | None = Field(None, description="window of the sliding-window layers, tokens")
    sliding_window_layers: PositiveInt | None = Field(
        None, description="layers attending only to the last `sliding_window` tokens (gpt-oss: every other)"
    )
    sglang_hybrid_swa: bool = Field(
        False,
        description="whether SGLang v0.5.5 gives the sliding-window layers a KV pool of their own (hybrid SWA "
        "memory); its model_specific_adjustments turn that off for gpt-oss, Gemma 2/3 and OLMo 2, whose every layer "
        "then holds the whole context (server_args.py: disable_hybrid_swa_memory = True)",
    )
    fp4_checkpoint: Literal["nvfp4", "nvfp4-ffn", "mxfp4-experts"] = Field(
        "nvfp4",
        description="what `precision: fp4` stores: nvfp4 (every linear weight in NVFP4: NVIDIA ModelOpt's Llama and "
        "Qwen3 checkpoints), nvfp4-ffn (the feed-forward weights in NVFP4: routed and shared experts and the dense "
        "layers' feed-forward; attention, router, embeddings and LM head BF16, and computed in BF16: NVIDIA ModelOpt's "
        "DeepSeek-R1/V3 checkpoints) or mxfp4-experts (routed experts in MXFP4, the rest BF16: gpt-oss)",
    )
    fp8_scales: Literal["tensor", "channel", "block"] = Field(
        "tensor",
        description="how the FP8 checkpoint scales its weights: tensor (one scale per tensor, the activations' "
        "static: NVIDIA ModelOpt, AMD Quark), channel (one scale per output channel of the weights and per token of "
        "the activations, computed at run time: Meta's FBGEMM checkpoints) or block (one scale per 128 x 128 weight "
        "block and per 1 x 128 activation group: DeepSeek-V3/R1, Qwen3's FP8 releases), whose GEMMs run slower",
    )
    fp8_checkpoint: Literal["all", "ffn-only"] = Field(
        "all",
        description="what `precision: fp8` stores: all (every linear weight in FP8) or ffn-only (Meta's FBGEMM "
        "recipe for Llama 3.1: the feed-forward weights of every layer but the first and the last in FP8; attention, "
        "those two layers' feed-forward, embeddings and LM head in BF16, and computed in BF16)",
    )

    @model_validator(mode="before")
    @classmethod
    def _window_given(cls, data: Any) -> Any:
        # Every model needs its context window (a call over it is rejected or compacted): say so plainly
        # rather than with pydantic's bare "Field required".
        if isinstance(data, dict):
            missing = [k for k in ("max_context_tokens", "max_context_source") if k not in data]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} required: the model's context window in tokens (its config.json "
                    "max_position_embeddings) and where that number comes from"
                )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelArch:
        if (self.sliding_window is None) != (self.sliding_window_layers is None):
            raise ValueError("sliding_window and sliding_window_layers go together: give both or neither")
        if self.sglang_hybrid_swa and self.sliding_window is None:
            raise ValueError("sglang_hybrid_swa describes a model with sliding-window layers (sliding_window)")
        if self.sliding_window_layers is not None and self.sliding_window_layers >= self.layers:
            raise ValueError(
                f"sliding_window_layers ({self.sliding_window_layers}) must leave at least one of the "
                f"{self.layers} layers with full attention"
            )
        if self.moe_layers is not None and (self.experts == 0 or self.moe_layers > self.layers):
            raise ValueError(f"moe_layers ({self.moe_layers}) needs experts and at most {self.layers} layers")
        if self.shared_experts and self.experts == 0:
            raise ValueError(f"shared_experts ({self.shared_experts}) sit beside routed experts: this model has none")
        if self.active_params_b > self.params_b:
            raise ValueError(f"active_params_b ({self.active_params_b}) exceeds params_b ({self.params_b})")
        if self.experts == 0:
            if self.experts_per_token != 0:
                raise ValueError("a dense model (experts: 0) must have experts_per_token: 0")
            if self.active_params_b != self.params_b:
                raise ValueError("a dense model must have active_params_b == params_b")
        elif not 1 <= self.experts_per_token < self.experts:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) must be in [1, experts ({self.experts}))")
        elif self.active_params_b == self.params_b:
            raise ValueError("a mixture-of-experts model must have active_params_b < params_b")
        if self.fp8_checkpoint == "ffn-only" and (self.is_moe or self.layers < 3):
            raise ValueError("fp8_checkpoint: ffn-only describes a dense model of at least three layers")
        if self.fp4_checkpoint == "nvfp4-ffn" and not 0.0 < self.ffn_params_b < self.params_b:
            raise ValueError(
                f"fp4_checkpoint: nvfp4-ffn keeps the weights outside the feed-forward blocks in BF16, but the shapes "
                f"give {self.ffn_params_b:.1f}B feed-forward parameters of params_b {self.params_b}B"
            )
        if self.fp4_checkpoint == "mxfp4-experts" and not self.is_moe:
            raise ValueError("fp4_checkpoint: mxfp4-experts describes a mixture-of-experts model (experts > 0)")
        if self.attention == "mla":
            if self.kv_lora_rank is None or self.qk_rope_head_dim is None:
                raise ValueError("attention: mla needs kv_lora_rank and qk_rope_head_dim")
        elif self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.is_moe:
            # The experts' size comes from the shapes (expert_params_b); totals that cannot hold them are a typo
            # in one of the two, and would give negative dense weights or FLOPs.
            routed = self.routed_params_b
            if routed >= self.params_b or self.experts_per_token * self.expert_params_b >= self.active_params_b:
                raise ValueError(
                    f"the shapes give {self.expert_params_b:.3f}B parameters an expert (3 x hidden_size "
                    f"{self.hidden_size} x {self.expert_intermediate_size} x {self.n_moe_layers} MoE layers): "
                    f"{routed:.1f}B for {self.experts} experts and "
                    f"{self.experts_per_token * self.expert_params_b:.2f}B for {self.experts_per_token} a token, "
                    f"which params_b ({self.params_b}) and active_params_b ({self.active_params_b}) must exceed"
                )
            if self.params_b - routed < self.attention_params_b:
                raise ValueError(
                    f"params_b ({self.params_b}) leaves {self.params_b - routed:.2f}B beside the {self.experts} "
                    f"experts of {self.expert_params_b:.3f}B its shapes give, less than its attention "
                    f"({self.attention_params_b:.2f}B)"
                )
        return self

    @property
    def is_moe(self) -> bool:
        """Whether the model routes tokens to a subset of experts."""
        return self.experts > 0

    @property
    def expert_params_b(self) -> float:
        """Parameters of *one* routed expert summed over all MoE layers, billions (0 for dense models), from the
        config's shapes: a gate, an up and a down projection of ``hidden x expert_intermediate_size`` in each of
        the :attr:`n_moe_layers` (biases, gpt-oss's 3 x 2,880 an expert and layer, stay with the rest: BF16 in its
        checkpoint).

        Not ``(params - active) / (experts - k)`` from the card's two counts: that rule is exact only when the
        active count is every non-expert weight plus ``k`` experts, and gpt-oss's active count leaves out the
        input embedding (a lookup), which puts 0.64B parameters of BF16 weights into its MXFP4 experts."""
        if not self.is_moe:
            return 0.0
        return 3 * self.hidden_size * self.expert_intermediate_size * self.n_moe_layers / 1e9

    @property
    def routed_params_b(self) -> float:
        """Parameters of all routed experts, billions (0 for dense models)."""
        return self.experts * self.expert_params_b

    @property
    def unmultiplied_params_b(self) -> float:
        """Weights of :attr:`dense_params_b` that no token multiplies, billions: those the card's active count
        leaves out beside the ``k`` experts a token reads (gpt-oss's input embedding, a lookup); 0 when the card
        counts every non-expert weight."""
        return max(0.0, self.dense_params_b - (self.active_params_b - self.experts_per_token * self.expert_params_b))

    @property
    def dense_params_b(self) -> float:
        """Parameters every token reads (all of a dense model), billions."""
        return self.params_b - self.routed_params_b

    @property
    def n_moe_layers(self) -> int:
        """Layers with routed experts (0 for dense models)."""
        if not self.is_moe:
            return 0
        return self.moe_layers if self.moe_layers is not None else self.layers

    @property
    def fp8_params_b(self) -> float:
        """Parameters an FP8 deployment stores in FP8, billions: all of them (``fp8_checkpoint: all``), or the
        gate, up and down projections of layers 1 .. ``layers - 2`` (``ffn-only``: ``(layers - 2) * 3 * hidden *
        intermediate``)."""
        if self.fp8_checkpoint == "all":
            return self.params_b
        return (self.layers - 2) * 3 * self.hidden_size * self.intermediate_size / 1e9

    @property
    def expert_intermediate_size(self) -> int:
        """Width of one routed (or shared) expert's feed-forward: ``moe_intermediate_size``, else the dense one."""
        return self.moe_intermediate_size or self.intermediate_size

    @property
    def ffn_params_b(self) -> float:
        """Parameters of the feed-forward blocks, billions: every routed expert, the shared experts and the dense
        layers' feed-forward (gate, up and down projections: ``3 * hidden * width`` a layer)."""
        h = self.hidden_size
        dense_layers = self.layers - self.n_moe_layers
        shared = self.n_moe_layers * self.shared_experts * 3 * h * self.expert_intermediate_size
        return self.routed_params_b + (dense_layers * 3 * h * self.intermediate_size + shared) / 1e9

    @property
    def fp4_params_b(self) -> float:
        """Parameters an FP4 deployment stores in FP4, billions: all of them (``fp4_checkpoint: nvfp4``), the
        feed-forward blocks' (``nvfp4-ffn``: :attr:`ffn_params_b`) or the routed experts' (``mxfp4-experts``)."""
        if self.fp4_checkpoint == "nvfp4":
            return self.params_b
        if self.fp4_checkpoint == "nvfp4-ffn":
            return self.ffn_params_b
        return self.routed_params_b

    @property
    def full_attention_layers(self) -> int:
        """Layers whose attention reads the whole context (all but the sliding-window layers)."""
        return self.layers - (self.sliding_window_layers or 0)

    @property
    def qk_head_dim(self) -> int:
        """Query/key dimension per head: ``head_dim`` (GQA) or ``head_dim + qk_rope_head_dim`` (MLA)."""
        if self.attention == "mla" and self.qk_rope_head_dim is not None:
            return self.head_dim + self.qk_rope_head_dim
        return self.head_dim

    @property
    def attention_params_b(self) -> float:
        """Parameters of the attention blocks of all layers, billions (from the shapes; biases and norms
        ignored). GQA: Q and O projections of ``heads * head_dim`` plus K and V of ``kv_heads * head_dim``.
        MLA: query (through ``q_lora_rank`` when set), the joint KV down-projection to ``kv_lora_rank +
        qk_rope_head_dim``, its up-projection to per-head keys and values, and the output projection."""
        h = self.hidden_size
        if self.attention == "mla":
            assert self.kv_lora_rank is not None and self.qk_rope_head_dim is not None  # checked above
            q_out = self.heads * self.qk_head_dim
            q = h * q_out if self.q_lora_rank is None else h * self.q_lora_rank + self.q_lora_rank * q_out
            kv_down = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_up = self.kv_lora_rank * self.heads * 2 * self.head_dim
            per_layer = q + kv_down + kv_up + self.heads * self.head_dim * h
        else:
            per_layer = h * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        return self.layers * per_layer / 1e9


# --------------------------------------------------------------------------- prices


class TierPrices(Strict):
    """A price per hour for each pricing tier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rental_3y: PositiveFloat
    own_hyperscaler: PositiveFloat
    own_neocloud: PositiveFloat

    def get(self, tier: PriceTier) -> float:
        """The price of ``tier``."""
        value: float = getattr(self, tier)
        return value


class Price(Entry):
    """Fully loaded $/GPU-hour per tier and the all-in provisioned kW per GPU (host, network, facility share;
    before PUE)."""

    kw_all_in: PositiveFloat
    usd_per_gpu_hour: TierPrices

    def usd_per_hour(self, tier: PriceTier) -> float:
        """$/GPU-hour in ``tier``."""
        return self.usd_per_gpu_hour.get(tier)


class CpuPrice(Entry):
    """$/core-hour per tier for tool CPUs and the all-in kW per core."""

    kw_all_in_per_core: PositiveFloat
    usd_per_core_hour: TierPrices

    def usd_per_hour(self, tier: PriceTier) -> float:
        """$/core-hour in ``tier``."""
        return self.usd_per_core_hour.get(tier)


# --------------------------------------------------------------------------- the catalog

_E = TypeVar("_E", bound=Entry)

_ENTRY_TYPES: Mapping[str, type[Entry]] = MappingProxyType(
    {"hardware": Hardware, "cpus": Cpu, "models": ModelArch, "prices": Price, "cpu_prices": CpuPrice}
)


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, eq=False)
class Catalog:
    """Read-only tables of catalog entries keyed by lowercase id. Build one with :func:`load_catalog`."""

    hardware: Mapping[str, Hardware] = field(default_factory=_empty)
    models: Mapping[str, ModelArch] = field(default_factory=_empty)
    prices: Mapping[str, Price] = field(default_factory=_empty)
    cpus: Mapping[str, Cpu] = field(default_factory=_empty)
    cpu_prices: Mapping[str, CpuPrice] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        # Copy into read-only views so that neither the caller's dicts nor anyone holding this catalog can
        # change it (the packaged catalog is cached and shared).
        for name in SECTIONS:
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def __reduce__(self) -> tuple[Any, tuple[dict[str, dict[str, Any]]]]:
        # The read-only views do not pickle; their contents do, and a worker process rebuilds the same catalog
        # (an in-memory one included, which catalog files could not carry).
        return _catalog_from_tables, ({name: dict(getattr(self, name)) for name in SECTIONS},)

    def get_hardware(self, hardware_id: str) -> Hardware:
        """The accelerator ``hardware_id``; :class:`CatalogError` listing the known ids if absent."""
        return _lookup(self.hardware, "hardware", hardware_id)

    def get_model(self, model_id: str) -> ModelArch:
        """The model architecture ``model_id``."""
        return _lookup(self.models, "model", model_id)

    def get_price(self, hardware_id: str) -> Price:
        """The price entry of accelerator ``hardware_id``."""
        return _lookup(self.prices, "price for hardware", hardware_id)

    def get_cpu(self, cpu_id: str) -> Cpu:
        """The tool CPU ``cpu_id``."""
        return _lookup(self.cpus, "cpu", cpu_id)

    def get_cpu_price(self, cpu_id: str) -> CpuPrice:
        """The price entry of tool CPU ``cpu_id``."""
        return _lookup(self.cpu_prices, "price for cpu", cpu_id)

    def merged(self, other: Catalog) -> Catalog:
        """A catalog with ``other``'s entries added, replacing entries of the same id whole."""
        tables = {name: {**getattr(self, name), **getattr(other, name)} for name in SECTIONS}
        return Catalog(**tables)


def _catalog_from_tables(tables: dict[str, dict[str, Any]]) -> Catalog:
    """A :class:`Catalog` from its sections' entries (what :meth:`Catalog.__reduce__` pickles)."""
    return Catalog(**tables)


def _lookup(table: Mapping[str, _E], kind: str, key: str) -> _E:
    entry = table.get(key.lower())
    if entry is None:
        known = ", ".join(sorted(table)) or "(none)"
        raise CatalogError(f"unknown {kind} {key!r}{did_you_mean(key.lower(), table)}; known: {known}")
    return entry


def _entry_errors(
    err: ValidationError, model: type[BaseModel], raw: Any, origin: str, text: str | None, where: list[str | int]
) -> str:
    """One line per problem of a catalog entry: ``file:line: section.id.field: reason`` (did-you-mean included)."""
    lines = []
    for path, msg in field_errors(err, model, raw):
        full = [*where, *parse_path(path)] if path else where
        line = line_of(text, full) if text is not None else None
        lines.append(f"{origin}{f':{line}' if line else ''}: {format_path(full)}: {msg}")
    return "\n".join(lines)


def _parse(document: object, origin: str, text: str | None = None) -> Catalog:
    """Validate one YAML document (already parsed) into a catalog; ``origin`` names it in errors."""
    if document is None:
        return Catalog()
    if not isinstance(document, dict):
        raise CatalogFileError(f"{origin}: expected a mapping with keys {', '.join(SECTIONS)}")
    unknown = sorted(str(k) for k in document if k not in _ENTRY_TYPES)
    if unknown:
        raise CatalogFileError(
            f"{origin}: unknown top-level key(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}"
        )
    tables: dict[str, Any] = {}
    for section, entries in document.items():
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise CatalogFileError(f"{origin}: {section}: expected a mapping of id to entry")
        table: dict[str, Entry] = {}
        for key, raw in entries.items():
            if not isinstance(key, str) or not key or key != key.lower():
                raise CatalogFileError(f"{origin}: {section}: id {key!r} must be a lowercase string")
            try:
                table[key] = _ENTRY_TYPES[section].model_validate(raw)
            except ValidationError as err:
                problems = _entry_errors(err, _ENTRY_TYPES[section], raw, origin, text, [section, key])
                raise CatalogFileError(problems) from None
        tables[section] = table
    return Catalog(**tables)


def _read_yaml(text: str, origin: str) -> Catalog:
    try:
        document = loads(text)
    except yaml.YAMLError as err:
        raise CatalogFileError(f"{origin}: not valid YAML: {err}") from None
    return _parse(document, origin, text)


@functools.lru_cache(maxsize=1)
def _packaged() -> Catalog:
    """The catalog shipped with the package (read once per process; immutable, so safe to share)."""
    catalog = Catalog()
    package = resources.files(__name__)
    for filename in PACKAGED_FILES:
        text = package.joinpath(filename).read_text(encoding="utf-8")
        catalog = catalog.merged(_read_yaml(text, f"agentsim/catalog/{filename}"))
    return catalog


def load_catalog(extra: Sequence[Path | str] = ()) -> Catalog:
    """The packaged catalog, extended (and overridden entry by entry) by the user YAML files in ``extra``,
    applied in order. A user file may hold any of the top-level keys ``hardware``, ``cpus``, ``models``,
    ``prices``, ``cpu_prices``."""
    return _packaged().merged(load_files(extra)) if extra else _packaged()


def scenario_catalog(scenario: Any, base: Catalog | None = None) -> Catalog:
    """``base`` (default: the packaged catalog) extended by the user files a scenario names in its ``catalog``
    list, applied in order. A file that cannot be read or does not validate raises
    :class:`agentsim.errors.ScenarioError` at the path ``catalog[i]``, so the CLI reports it like any field."""
    from agentsim.errors import ScenarioError

    catalog = base if base is not None else _packaged()
    for i, path in enumerate(getattr(scenario, "catalog", None) or []):
        try:
            catalog = catalog.merged(load_files([path]))
        except CatalogFileError as e:
            raise ScenarioError([(f"catalog[{i}]", str(e))], getattr(scenario, "name", "scenario")) from None
    return catalog


def load_files(paths: Sequence[Path | str]) -> Catalog:
    """Only the entries of the user YAML files ``paths`` (later files replace earlier entries of the same id)."""
    catalog = Catalog()
    for path in paths:
        p = Path(path)
        try:
            text = read_text(p)
        except TextFileError as err:
            raise CatalogFileError(f"cannot read catalog file {err}") from None
        catalog = catalog.merged(_read_yaml(text, str(p)))
    return catalog
