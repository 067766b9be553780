"""Blackwell's serving shares are the fit they claim to be (docs/FIDELITY.md, cause 24): on the 40 dense FP4 rows of
NVIDIA's TensorRT-LLM tables on B200 and GB200 (``../shared/data/perf``), the catalog's pair gives the throughput
MAPE the documentation reports and no step of the fit's grid around it does clearly better. A model change that
moves the optimum fails here, so the documented fit cannot silently stop being one: rerun
``experiments/fidelity/fit_serving_shares.py`` and update the catalog and the docs."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agentsim.catalog import load_catalog
from agentsim.perf.efficiency import SERVING_GEMM_SHARE, SERVING_HBM_SHARE, serving_shares
from agentsim.planning.fidelity import run_fidelity, with_serving_shares
from helpers import experiment_script
from shared_data import SHARED_DATA

TABLES = SHARED_DATA / "perf" / "trtllm_max_throughput.csv"
STEP = 0.05  # the fit's grid


def _fit_script() -> ModuleType:
    """The fit's own script, for its row selection and the GPUs it fits (one definition of both)."""
    return experiment_script("fidelity/fit_serving_shares.py")


@pytest.mark.skipif(not TABLES.exists(), reason="../shared/data is not beside the repository")
def test_the_catalog_pair_is_the_fit_on_the_blackwell_tables() -> None:
    fit = _fit_script()
    catalog = load_catalog()
    rows, _ = fit.fit_rows(TABLES, catalog)
    assert len(rows) == 40  # Llama-3.3-70B TP1 and Llama-3.1-405B TP4 on B200 and GB200, 10 ISL/OSL pairs each
    gemm, hbm = serving_shares(catalog.get_hardware("b200"))
    assert all(serving_shares(catalog.get_hardware(h)) == (gemm, hbm) for h in fit.BLACKWELL)

    def mape(g: float, h: float) -> float:
        report = run_fidelity(rows, catalog=with_serving_shares(catalog, fit.BLACKWELL, g, h))
        assert not report.failures()
        value = report.mape("output_tok_s")
        assert value is not None
        return value

    at_catalog = mape(gemm, hbm)
    # issue 14's goal, and the fit's reason to exist: well under the error at the Hopper-fitted shares (documented:
    # 10.4% against 40.3%)
    assert at_catalog <= 15.0 and at_catalog < 0.5 * mape(SERVING_GEMM_SHARE, SERVING_HBM_SHARE)
    neighbours = [mape(gemm + dg, hbm + dh) for dg, dh in ((STEP, 0), (-STEP, 0), (0, STEP), (0, -STEP))]
    # the fit's ridge (GEMM against HBM) leaves neighbours within half a point: a clear improvement means a refit
    assert at_catalog <= min(neighbours) + 0.5


def test_shares_outside_a_fraction_are_refused() -> None:
    with pytest.raises(ValueError, match="serving_gemm_share"):
        with_serving_shares(load_catalog(), ("b200",), 1.2, 0.6)


def test_worker_processes_simulate_on_the_in_memory_catalog(tmp_path: Path) -> None:
    """A fit's candidate catalog reaches the worker processes whole: two B200 rows predicted in two processes on
    halved serving shares equal the one-process predictions, and differ from the packaged catalog's (workers that
    loaded the packaged catalog would give those)."""
    from agentsim.planning.calibrate.measurements import read_measurements

    head = "isl,osl,concurrency,output_tok_s,load,num_requests,hardware,model,n_gpus,tp,precision,engine\n"
    rows = "".join(f"{isl},256,{c},500,closed,{4 * c},B200,Llama-3.3-70B,1,1,fp4,vLLM\n" for isl, c in ((1024, 4),
                                                                                                    (2048, 8)))
    (tmp_path / "m.csv").write_text(head + rows)
    ms = read_measurements(tmp_path / "m.csv")
    packaged = load_catalog()
    halved = with_serving_shares(packaged, ["b200"], *(s / 2 for s in serving_shares(packaged.get_hardware("b200"))))

    def predicted(catalog: Any, jobs: int) -> list[Any]:
        return [r.predicted["output_tok_s"] for r in run_fidelity(ms, catalog=catalog, jobs=jobs).rows]

    one, two = predicted(halved, 1), predicted(halved, 2)
    assert one == two and all(v is not None for v in one)
    assert all(h < p for h, p in zip(one, predicted(packaged, 1), strict=True))  # halved shares: slower steps
