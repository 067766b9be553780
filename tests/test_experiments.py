"""Every script in ``experiments/`` runs at toy scale (``--quick``) in a subprocess and prints its table
(``fidelity/splitwise.py``, which simulates nothing, runs whole).

One worker process each (``--workers 1``): the scripts' own parallelism is tested in ``test_sweep.py``; here
two scripts running side by side on a 2-core machine would only slow each other down.
"""

from __future__ import annotations

import re
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
        ("fidelity/run.py", ["tok/s MAPE", "TPOT MAPE", "dense_hopper", "blackwell", "amd", "moe", "ampere"]),
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


def test_splitwise_comparison_runs_whole() -> None:
    """``fidelity/splitwise.py`` has no toy scale: the whole profile takes about a second."""
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "fidelity/splitwise.py")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for text in ["prefill MAPE", "decode MAPE", "H100/A100 prefill measured model"]:
        assert text in proc.stdout, (text, proc.stdout)
    # a figures line per GPU and TP: 19 conditions each, less the three TP2 batches that ran in waves
    table = re.findall(r"^(a100|h100)\s+(\d)\s+(\d+)\s", proc.stdout, flags=re.M)
    assert table == [("a100", "2", "17"), ("a100", "4", "19"), ("a100", "8", "19"),
                     ("h100", "2", "18"), ("h100", "4", "19"), ("h100", "8", "19")]  # fmt: skip


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
        "fidelity/splitwise.py",
    ],
)
def test_experiment_is_documented(script: str) -> None:
    assert f"`{script}`" in (EXPERIMENTS / "README.md").read_text()


def test_fidelity_run_refuses_existing_csv_before_simulating(tmp_path: Path) -> None:
    """An earlier run's CSV is never overwritten by accident, and the refusal comes before any simulation (exit 2,
    a message naming the file, no traceback); ``--overwrite`` replaces it."""
    earlier = tmp_path / "a_blackwell_default.csv"
    earlier.write_text("earlier results\n")
    cmd = [sys.executable, str(EXPERIMENTS / "fidelity/run.py"), "--quick", "--group", "blackwell"]
    proc = subprocess.run([*cmd, "--csv", str(tmp_path / "a.csv")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{earlier} already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr and "MAPE" not in proc.stdout  # refused before the table
    assert earlier.read_text() == "earlier results\n"
    proc = subprocess.run(
        [*cmd, "--csv", str(tmp_path / "a.csv"), "--overwrite"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert earlier.read_text().startswith("group,isl,osl")


@pytest.mark.parametrize(
    ("script", "args", "said"),
    [
        ("fidelity/run.py", ["--jobs", "0"], "--jobs must be at least 1, got 0"),
        ("fidelity/run.py", ["--holdout", "-3"], "--holdout must be at least 0, got -3"),
        ("fidelity/fit_serving_shares.py", ["--hbm", "0.6,1.2"], "--hbm: a serving share lies in (0, 1], got 1.2"),
        ("fidelity/fit_serving_shares.py", ["--gemm", "x"], "--gemm: 'x' is not a number"),
    ],
)
def test_a_fidelity_script_refuses_its_bad_options_before_simulating(script: str, args: list[str], said: str) -> None:
    """Exit 2 naming the option, before any simulation (nothing printed to stdout), no traceback."""
    command = [sys.executable, str(EXPERIMENTS / script), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "MAPE" not in proc.stdout
