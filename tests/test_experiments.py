"""Every script in ``experiments/`` runs at toy scale (``--quick``) in a subprocess and prints its table.

One worker process each (``--workers 1``): the scripts' own parallelism is tested in ``test_sweep.py``; here
two scripts running side by side on a 2-core machine would only slow each other down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("gpu_comparison.py", ["$/Mtok out", "$/task", "h100", "h200", "b200", "mi300x"]),
        ("router_comparison.py", ["hit rate", "round-robin", "session-affinity", "prefix-aware", "$/Mtok out"]),
        ("flops_vs_token_cost.py", ["rank FLOPS/$", "rank $/tok", "where the rankings disagree", "mi300x"]),
        ("hybrid_vs_gpu.py", ["gpu-unified", "gpu-disagg", "hybrid", "best hybrid", "$/Mtok"]),
        ("fidelity/run.py", ["tok/s MAPE", "TPOT MAPE", "dense_hopper", "blackwell", "amd", "moe"]),
        ("fidelity/fit_seq_overhead.py", ["leave-one-deployment-out", "held-out (CV)", "dense_hopper", "moe"]),
        ("fidelity/fit_serving_shares.py", ["fitted on all", "pair fitted without it", "held-out rows", "Qwen3"]),
    ],
)
def test_experiment_runs_quick(script: str, expected: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / script), "--quick", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for text in expected:
        assert text in proc.stdout, (text, proc.stdout)


@pytest.mark.parametrize(
    "script",
    [
        "gpu_comparison.py",
        "router_comparison.py",
        "flops_vs_token_cost.py",
        "hybrid_vs_gpu.py",
        "fidelity/run.py",
        "fidelity/fit_seq_overhead.py",
        "fidelity/fit_serving_shares.py",
    ],
)
def test_experiment_is_documented(script: str) -> None:
    assert f"`{script}`" in (EXPERIMENTS / "README.md").read_text()
