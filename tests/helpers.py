"""What the command-line tests share: running ``agentsim`` in-process, the check that bad input is refused, and
the tiny one-pool scenario their runs use (a few simulated seconds, so the files stay fast)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from typer.testing import CliRunner

from agentsim.cli import app

runner = CliRunner()

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 1,
    "horizon_s": 5,
    "workload": [{"profile": "chat", "arrivals": {"kind": "poisson", "rate_per_s": 2}}],
    "cluster": {
        "pools": [
            {
                "name": "p",
                "deployment": {"model": "llama-3.1-8b", "hardware": "h100", "tp": 1, "precision": "fp8"},
                "replicas": 1,
            }
        ]
    },
}
"""A one-pool scenario of 5 simulated seconds: chat on one H100 (copy it before changing it)."""


def invoke(*args: str | Path) -> Any:
    """``agentsim ARGS...`` in this process: the click result (exit code, stdout, stderr)."""
    return runner.invoke(app, [str(a) for a in args])


def refused(result: Any, *needles: str) -> str:
    """Exit 2, no traceback, every needle in the error text; return the error text."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    err: str = result.stderr
    assert err.startswith("error:"), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def experiment_script(relpath: str) -> ModuleType:
    """The module of a script under ``experiments/`` (``relpath`` from there), for tests that reuse its own
    definitions (row selections, groups, writers) rather than restating them."""
    path = Path(__file__).resolve().parents[1] / "experiments" / relpath
    name = "experiments." + relpath.removesuffix(".py").replace("/", ".")
    spec_ = importlib.util.spec_from_file_location(name, path)
    assert spec_ is not None and spec_.loader is not None
    module = importlib.util.module_from_spec(spec_)
    sys.modules[name] = module  # dataclasses look their module up while the script runs
    try:
        spec_.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def native_sampler(deployment: Any) -> Any:
    """``deployment`` (a filled vLLM one) as a source or ``pip`` install without FlashInfer runs it: its profiling
    run's sampler sorts, 9.5 FP32 copies (``serving.presets.VLLM_NATIVE_SAMPLER_FP32_COPIES``)."""
    from agentsim.catalog import load_catalog
    from agentsim.serving.presets import VLLM_NATIVE_SAMPLER_FP32_COPIES, vllm_activation_reserve_gb

    e = deployment.engine
    assert e.max_num_seqs is not None and e.max_batched_tokens is not None
    model = load_catalog().get_model(deployment.model)
    reserve = vllm_activation_reserve_gb(
        model, deployment, e.max_num_seqs, e.max_batched_tokens, copies=VLLM_NATIVE_SAMPLER_FP32_COPIES
    )
    return deployment.model_copy(update={"engine": e.model_copy(update={"activation_reserve_gb": reserve})})


def packaged_figures(class_id: str, ratio: float | None) -> Any:
    """The packaged accuracy figures (``catalog/accuracy.yaml``) a run of class ``class_id`` is judged on at
    ``ratio`` prompt tokens computed per output token, written out from the rule docs/FIDELITY.md states: its
    regime's figures where at least ``REGIME_MIN_ROWS`` (5) public rows ran that regime, else the class's."""
    from agentsim.analysis.accuracy import REGIME_MIN_ROWS, load_accuracy, regime_of

    (measured,) = [c.measured for c in load_accuracy().classes if c.id == class_id]
    own = measured.regimes.get(regime_of(ratio)) if ratio is not None else None
    return own if own is not None and own.rows >= REGIME_MIN_ROWS else measured
