"""``decode_total`` (closed forms) equals the last element of ``decode_segment`` and the sum of scalar steps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf import LinearPerfModel, RooflinePerfModel

CATALOG = load_catalog()
DEPLOYMENTS = [
    spec.Deployment(model="llama-3.3-70b", hardware="h200", tp=4, precision="fp8"),
    spec.Deployment(model="llama-3.1-8b", hardware="h100"),
    spec.Deployment(model="qwen3-235b-a22b", hardware="b200", tp=8, precision="fp8"),
    spec.Deployment(model="deepseek-r1", hardware="b200", tp=8, precision="fp8"),
]


@settings(max_examples=150, deadline=None)
@given(
    which=st.integers(0, len(DEPLOYMENTS) - 1),
    d=st.integers(1, 512),
    c0=st.floats(0, 5e7),
    k=st.integers(1, 3000),
    mfu=st.floats(0.05, 1.0),
    mbu=st.floats(0.05, 1.0),
)
def test_roofline_closed_form_segment(which: int, d: int, c0: float, k: int, mfu: float, mbu: float) -> None:
    dep = DEPLOYMENTS[which]
    m = RooflinePerfModel(
        CATALOG.get_hardware(dep.hardware), CATALOG.get_model(dep.model), dep, spec.RooflinePerf(mfu=mfu, mbu=mbu)
    )
    seq = 0.0
    for j in range(min(k, 50)):
        seq += m.step_time(0, d, c0 + d * j)
    assert float(m.decode_segment(d, c0, min(k, 50))[-1]) == pytest.approx(seq, rel=1e-12)
    assert m.decode_total(d, c0, k) == pytest.approx(float(m.decode_segment(d, c0, k)[-1]), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    a=st.floats(0, 1),
    b=st.floats(0, 1e-3),
    g=st.floats(0, 1e-6),
    dl=st.floats(0, 1e-2),
    d=st.integers(1, 512),
    c0=st.floats(0, 1e7),
    k=st.integers(1, 5000),
)
def test_linear_closed_form_total(a: float, b: float, g: float, dl: float, d: int, c0: float, k: int) -> None:
    m = LinearPerfModel(
        spec.LinearPerf(alpha_s=a, beta_s_per_prefill_token=b, gamma_s_per_context_token=g, delta_s_per_seq=dl)
    )
    assert m.decode_total(d, c0, k) == pytest.approx(float(m.decode_segment(d, c0, k)[-1]), rel=1e-9, abs=1e-15)
