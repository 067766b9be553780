"""Achieved efficiencies: what fraction of an accelerator's peak FLOPS and bandwidth serving kernels reach.

A roofline needs two numbers per accelerator besides its peaks: the fraction of the dense matrix peak its GEMMs
reach (``mfu``) and the fraction of peak HBM bandwidth its memory-bound kernels reach (``mbu``). They differ by
generation and precision: a sustained FP8 GEMM reaches 0.70 of the peak on H100 but 0.44 on MI300X, and STREAM
0.89 of H100's HBM bandwidth but 0.78 of MI300X's (the catalog's ``efficiency`` entries, each with its source).
One ``mfu``/``mbu`` for all hardware makes every comparison across vendors wrong by that ratio.

The default of a deployment is a *microbenchmark fraction times a serving share*::

    mfu = efficiency.gemm(precision) * serving GEMM share     (SERVING_GEMM_SHARE unless the entry has its own)
    mbu = efficiency.hbm              * serving HBM share      (SERVING_HBM_SHARE)

The microbenchmark fraction carries what differs between accelerators; the two serving shares carry what a whole
serving step loses against an isolated GEMM or STREAM kernel (norms, activations, quantization, launches, shapes
smaller than the benchmark's). They are a documented fit: the ratio of the end-to-end efficiencies fitted per
group to NVIDIA's TensorRT-LLM max-throughput tables (``docs/FIDELITY.md``, 17 dense FP8 groups on H100/H200:
mean fitted ``mfu`` 0.594; the 7 single-GPU groups: median fitted ``mbu`` 0.77) over the catalog's
microbenchmark fractions of the same GPUs (FP8 GEMM 0.70/0.69, STREAM 0.89/0.86). A hardware entry whose own
serving rows give another pair carries it (``efficiency.serving_gemm_share``, ``serving_hbm_share``;
:func:`serving_shares`): Blackwell's 0.60 / 0.60, fitted on the same tables' FP4 rows
(``experiments/fidelity/fit_serving_shares.py``, ``docs/FIDELITY.md`` cause 24). The others take the Hopper pair.

Precedence, per parameter: a number in the scenario's ``perf`` (``mfu: 0.55``) > the hardware catalog's
measured fraction for the precision (the nearest measured precision when that one is not measured,
:meth:`agentsim.catalog.Efficiency.gemm`) times the serving share > :data:`FALLBACK_MFU` / :data:`FALLBACK_MBU`
for hardware without measurements. Linear layers and experts use the precision their math runs in (the
weights', or BF16 for FP4 or FP8 weights on hardware without such units: ``Hardware.math_precision``), attention
the KV cache's.

**Block-scaled FP8.** DeepSeek's and Qwen3's FP8 checkpoints scale every 128 x 128 weight block (and every 1 x 128
activation group) separately (``ModelArch.fp8_scales: block``); their GEMMs apply the scales inside the main loop
and run slower than per-tensor FP8 at the same shapes. Where the catalog measures such kernels
(``efficiency.gemm_fp8_block``, ``hbm_fp8_block``: DeepGEMM's on Hopper, at prefill-sized and decode-sized M), the
dense linear layers of a block-scaled FP8 deployment take the lower of the serving default and the kernel's own
fraction (:func:`dense_efficiencies`): the serving defaults are what a whole step reaches with per-tensor kernels,
and a layer cannot run faster than its kernel does alone. Routed experts keep the defaults: their grouped-GEMM
efficiency is already DeepGEMM's (:func:`agentsim.perf.roofline.grouped_gemm_efficiency`). A number in the
scenario's ``perf`` (or a calibration's) scales these layers by the same measured ratio, ``fraction / default``,
so that a calibration starting from the defaults starts from this model and a fit of other coefficients keeps it.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from agentsim import spec
from agentsim.catalog import Hardware, ModelArch

__all__ = [
    "FALLBACK_MBU",
    "FALLBACK_MFU",
    "SERVING_GEMM_SHARE",
    "SERVING_HBM_SHARE",
    "Efficiencies",
    "block_scaled_fp8",
    "dense_efficiencies",
    "dynamic_fp8_activations",
    "efficiencies",
    "fp8_scales",
    "resolved_roofline",
    "serving_shares",
    "unfused_fp8_dequant",
]

SERVING_GEMM_SHARE: Final = 0.86
"""End-to-end serving ``mfu`` over the sustained-GEMM microbenchmark fraction: 0.594 / 0.694 (module docstring)."""

SERVING_HBM_SHARE: Final = 0.88
"""End-to-end serving ``mbu`` over the STREAM fraction: 0.77 / 0.875 (module docstring)."""

FALLBACK_MFU: Final = 0.5
"""``mfu`` of hardware whose catalog entry has no measured GEMM fraction (docs/FIDELITY.md: the prior)."""

FALLBACK_MBU: Final = 0.7
"""``mbu`` of hardware whose catalog entry has no measured bandwidth fraction."""


class Efficiencies(NamedTuple):
    """The efficiencies a roofline uses: linear layers and experts, attention, memory."""

    mfu: float
    mfu_attention: float
    mbu: float


def fp8_scales(model: ModelArch, deployment: spec.Deployment) -> str | None:
    """How ``deployment``'s FP8 weights are scaled (``tensor``, ``channel``, ``block``): the deployment's
    ``fp8_scales``, else the model's checkpoint's; None when the weights are not FP8."""
    return (deployment.fp8_scales or model.fp8_scales) if deployment.precision == "fp8" else None


def block_scaled_fp8(model: ModelArch, deployment: spec.Deployment) -> bool:
    """Whether ``deployment`` serves a block-scaled FP8 checkpoint (one scale per 128 x 128 weight block). The one
    rule for its GEMM fractions, its KV dtype under TensorRT-LLM (``serving.presets``) and, with
    :func:`dynamic_fp8_activations`, its quantization kernels (``perf.roofline.forward_kernels``)."""
    return fp8_scales(model, deployment) == "block"


def _weight_only(deployment: spec.Deployment, hardware: Hardware | None) -> bool:
    """Whether ``hardware`` has no units of the weights' precision, so the kernels dequantize the weights to the
    16-bit activations and touch no FP8 activation (``Hardware.math_precision``; vLLM's Marlin W8A16 on Ampere:
    "Activations not quantized for marlin", ``quantization/fp8.py``). False without ``hardware``."""
    return hardware is not None and hardware.math_precision(deployment.precision) != deployment.precision


def dynamic_fp8_activations(model: ModelArch, deployment: spec.Deployment, hardware: Hardware | None = None) -> bool:
    """Whether each FP8 linear layer quantizes its input at run time in a kernel of its own: block scales (one per
    1 x 128 activation group) and channel scales (one per token) are computed from the activations; a per-tensor
    checkpoint's static scale is fused into the preceding norm or the GEMM. Never on ``hardware`` whose kernels
    are weight-only (:func:`_weight_only`)."""
    return fp8_scales(model, deployment) in ("block", "channel") and not _weight_only(deployment, hardware)


def unfused_fp8_dequant(model: ModelArch, deployment: spec.Deployment, hardware: Hardware | None = None) -> bool:
    """Whether the engine dequantizes channel-scaled FP8 GEMMs in kernels of their own (``engine.fp8_dequant:
    unfused``: vLLM before 0.8 on ROCm); never where the kernels are weight-only, which dequantize inside the
    GEMM (:func:`_weight_only`)."""
    return (
        fp8_scales(model, deployment) == "channel"
        and deployment.engine.fp8_dequant == "unfused"
        and not _weight_only(deployment, hardware)
    )


def serving_shares(hardware: Hardware) -> tuple[float, float]:
    """The serving shares of ``hardware``'s GEMM and HBM fractions: its catalog entry's own fit where it has one
    (``efficiency.serving_gemm_share``, ``serving_hbm_share``), else :data:`SERVING_GEMM_SHARE` and
    :data:`SERVING_HBM_SHARE` (module docstring)."""
    measured = hardware.efficiency
    gemm = measured.serving_gemm_share if measured is not None else None
    hbm = measured.serving_hbm_share if measured is not None else None
    return (SERVING_GEMM_SHARE if gemm is None else gemm, SERVING_HBM_SHARE if hbm is None else hbm)


def _mfu(hardware: Hardware, precision: spec.Precision) -> float:
    math = hardware.math_precision(precision)  # FP4 / FP8 weights without such units compute in BF16
    gemm = hardware.efficiency.gemm(math) if hardware.efficiency is not None else None
    return FALLBACK_MFU if gemm is None else gemm * serving_shares(hardware)[0]


def _mbu(hardware: Hardware) -> float:
    hbm = hardware.efficiency.hbm if hardware.efficiency is not None else None
    return FALLBACK_MBU if hbm is None else hbm * serving_shares(hardware)[1]


def efficiencies(
    hardware: Hardware, precision: spec.Precision, kv_precision: spec.Precision, perf: spec.RooflinePerf
) -> Efficiencies:
    """The efficiencies of a deployment in ``precision`` (weights) and ``kv_precision`` (attention math) on
    ``hardware``: ``perf``'s numbers where given, else the catalog-derived defaults (module docstring)."""
    if perf.mfu is not None:
        mfu = mfu_att = perf.mfu
    else:
        mfu, mfu_att = _mfu(hardware, precision), _mfu(hardware, kv_precision)
    mbu = perf.mbu if perf.mbu is not None else _mbu(hardware)
    return Efficiencies(mfu, mfu_att, mbu)


def dense_efficiencies(
    hardware: Hardware, precision: spec.Precision, block_scaled: bool, eff: Efficiencies, perf: spec.RooflinePerf
) -> Efficiencies:
    """The efficiencies of the dense (non-expert) linear layers: ``eff``, except that block-scaled FP8 weights
    (``block_scaled`` and ``precision`` fp8) on hardware with measured block-scaled kernels take the lower of the
    default and the kernel's fraction, or, where the scenario's ``perf`` sets ``mfu`` / ``mbu``, that number times
    the same ratio (module docstring)."""
    measured = hardware.efficiency
    if not block_scaled or precision != "fp8" or measured is None:
        return eff

    def capped(value: float, given: float | None, cap: float | None, default: float) -> float:
        if cap is None:
            return value
        return min(value, cap) if given is None else value * min(1.0, cap / default)

    mfu = capped(eff.mfu, perf.mfu, measured.gemm_fp8_block, _mfu(hardware, precision))
    mbu = capped(eff.mbu, perf.mbu, measured.hbm_fp8_block, _mbu(hardware))
    return Efficiencies(mfu, eff.mfu_attention, mbu)


def resolved_roofline(perf: spec.RooflinePerf, hardware: Hardware, deployment: spec.Deployment) -> spec.RooflinePerf:
    """``perf`` with ``mfu`` and ``mbu`` filled in from the catalog where null (the weights' precision for
    ``mfu``): a concrete starting point for calibration."""
    eff = efficiencies(hardware, deployment.precision, deployment.precision, perf)
    return perf.model_copy(update={"mfu": eff.mfu, "mbu": eff.mbu})
