"""Attention kernels reach less of the peak than GEMMs, the less the smaller the head (cause 14 in
docs/FIDELITY.md): FlashAttention-3's causal forward pass on H100 SXM5 in BF16 at 16k tokens runs 473, 616 and 642
TFLOPS at head dimensions 64, 128 and 256 (Shah et al. 2024, Figure 5), and FlashMLA's absorbed decode 660 TFLOPS
on H800; the roofline times attention at those rates' shares of H100's best-shape BF16 matmul (794.5 TFLOPS)."""

from __future__ import annotations

import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf.roofline import RooflinePerfModel, attention_kernel_ratio

CATALOG = load_catalog()


def test_the_ratio_by_head_dimension() -> None:
    assert attention_kernel_ratio(64) == pytest.approx(473 / 794.5, rel=1e-12)
    assert attention_kernel_ratio(128) == pytest.approx(616 / 794.5, rel=1e-12)
    assert attention_kernel_ratio(256) == pytest.approx(642 / 794.5, rel=1e-12)
    assert attention_kernel_ratio(32) == attention_kernel_ratio(64)  # flat outside the measured heads
    assert attention_kernel_ratio(512) == attention_kernel_ratio(256)
    assert attention_kernel_ratio(64) < attention_kernel_ratio(96) < attention_kernel_ratio(128)


def test_gpt_oss_attention_by_hand() -> None:
    """gpt-oss-120b (18 full-attention layers, 64 heads of 64) on one H100 in BF16 attention at mfu 0.5: a
    query-key pair costs 18 x 2 x 64 x (64 + 64) FLOPs at 0.5 x 989.4 TFLOPS x 473 / 794.5; its sliding-window
    layers' 128 pairs a token the same."""
    dep = spec.Deployment(model="gpt-oss-120b", hardware="h100", precision="fp4", kv_precision="bf16")
    perf = RooflinePerfModel(
        CATALOG.get_hardware("h100"), CATALOG.get_model("gpt-oss-120b"), dep, spec.RooflinePerf(mfu=0.5)
    )
    rate = 0.5 * 989.4e12 * 473 / 794.5
    assert perf.pair_prefill_s == pytest.approx(18 * 2 * 64 * 128 / rate, rel=1e-12)
    assert perf.pair_decode_s == perf.pair_prefill_s
    assert perf.window_s_per_token == pytest.approx(18 * 2 * 64 * 128 * 128 / rate, rel=1e-12)
