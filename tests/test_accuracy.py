"""A run says how sure its step times are (``agentsim.analysis.accuracy``): each pool on the default roofline gets
the public-data MAPE of its class of deployment, and a warning where that misses the goal, was never measured, or
no class covers it; pools on the scenario's own numbers claim nothing.

The packaged figures (``catalog/accuracy.yaml``) are recomputed here from the public rows of
``experiments/fidelity/data`` through the fidelity harness, so a model change that moves them fails until the
file is rewritten (``python experiments/fidelity/run.py --jobs 2 --accuracy``) and docs/FIDELITY.md follows."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import agentsim
from agentsim.analysis.accuracy import (
    GOAL_PCT,
    AccuracyTable,
    accuracy_cell,
    accuracy_warnings,
    find_class,
    load_accuracy,
    pool_accuracy,
)
from agentsim.resolve import resolve
from helpers import TINY, experiment_script


def _run_script() -> ModuleType:
    """The fidelity experiment's script: its groups, its reports and its writer (one definition of each)."""
    return experiment_script("fidelity/run.py")


def test_packaged_figures_are_what_the_model_gives_on_the_public_rows() -> None:
    """Every class's rows, hardware, models, engines and MAPEs equal a fresh fidelity run's (MAPEs to the file's
    one decimal); one class per group of the public data, none left out."""
    script = _run_script()
    packaged = load_accuracy()
    assert sorted(c.id for c in packaged.classes) == sorted(script.GROUPS)
    fresh = script.accuracy_table(script.default_reports(jobs=1), packaged)
    for old, new in zip(packaged.classes, fresh.classes, strict=True):
        a, b = old.measured, new.measured
        hint = "rerun: python experiments/fidelity/run.py --jobs 2 --accuracy"
        assert a.model_dump(exclude={"mape_pct"}) == b.model_dump(exclude={"mape_pct"}), (old.id, hint)
        for metric, value in b.mape_pct.items():
            was = a.mape_pct.get(metric)
            assert (value is None) == (was is None), (old.id, metric, hint)
            if value is not None and was is not None:
                assert abs(value - was) <= 0.051, (old.id, metric, was, value, hint)


def test_the_writer_keeps_the_hand_edited_fields(tmp_path: Path) -> None:
    """``--accuracy`` replaces the measured blocks only, and the file it writes reads back as the same table."""
    script = _run_script()
    packaged = load_accuracy()
    changed = packaged.classes[0].measured.model_copy(update={"rows": 999})
    table = packaged.model_copy(update={"classes": [packaged.classes[0].model_copy(update={"measured": changed}),
                                                    *packaged.classes[1:]]})  # fmt: skip
    out = tmp_path / "accuracy.yaml"
    script.write_accuracy(table, out)
    back = AccuracyTable.model_validate(agentsim.yamlio.loads(out.read_text(encoding="utf-8")))
    assert back == table
    assert back.classes[0].label == packaged.classes[0].label and back.classes[0].measured.rows == 999


def _pool(**deployment: Any) -> Any:
    """The resolved pool of TINY with ``deployment`` fields (and ``perf``) changed."""
    data = {**TINY, "cluster": {"pools": [dict(TINY["cluster"]["pools"][0])]}}
    pool = data["cluster"]["pools"][0]
    perf = deployment.pop("perf", None)
    pool["deployment"] = {**pool["deployment"], **deployment}
    if perf is not None:
        pool["perf"] = perf
    (resolved,) = resolve(agentsim.load_scenario(data)).pools
    return resolved


def _table(tok: float | None, tpot: float | None, *, moe: bool | None = False) -> AccuracyTable:
    """A one-class table over H100 with these MAPEs (rows on H100 at fp8, dense models)."""
    n = {"output_tok_s": 0 if tok is None else 10, "tpot_s": 0 if tpot is None else 10, "ttft_s": 0}
    return AccuracyTable.model_validate({
        "about": "test", "goal_pct": GOAL_PCT, "source": "test",
        "classes": [{"id": "c", "label": "class c", "moe": moe, "hardware": ["h100", "h200"],
                     "measured": {"rows": 10, "hardware": ["h100"], "precisions": ["fp8"], "models": ["m"],
                                  "kinds": ["dense"], "engines": ["vllm"],
                                  "mape_pct": {"output_tok_s": tok, "tpot_s": tpot, "ttft_s": None}, "n": n}}],
    })  # fmt: skip


def test_a_default_roofline_pool_gets_its_class_and_whether_public_rows_ran_it() -> None:
    """H100 at fp8 is in the class's rows; H200 shares its family (figures carried over, and said so); an MoE
    model or an accelerator outside every class has no class."""
    table = _table(10.0, 12.0)
    e = pool_accuracy(_pool(), table)
    assert (e["basis"], e["class"], e["in_rows"], e["rows"]) == ("roofline", "c", True, 10)
    assert e["mape_pct"]["output_tok_s"] == 10.0 and accuracy_cell(e) == "10.0% / 12.0% (10)"
    h200 = pool_accuracy(_pool(hardware="h200"), table)
    assert h200["class"] == "c" and not h200["in_rows"] and "carried over" in h200["note"]
    assert accuracy_cell(h200).endswith("(10*)")
    bf16 = pool_accuracy(_pool(precision="bf16"), table)
    assert not bf16["in_rows"]  # the rows ran fp8 only
    assert pool_accuracy(_pool(model="gpt-oss-20b", precision="fp4"), table)["class"] is None
    gaudi = pool_accuracy(_pool(hardware="gaudi3"), table)
    assert gaudi["class"] is None and accuracy_cell(gaudi) == "not measured"


@pytest.mark.parametrize(
    ("tok", "tpot", "warned"),
    [(14.9, 15.0, False), (15.1, 10.0, True), (10.0, 15.1, True), (10.0, None, True), (None, 10.0, True)],
)
def test_the_warning_fires_past_the_goal_or_where_a_key_metric_was_never_measured(
    tok: float | None, tpot: float | None, warned: bool
) -> None:
    """The goal is inclusive (15.0% passes, 15.1% does not), on throughput and TPOT alike; a class that never
    measured one of them cannot vouch for it."""
    entry = pool_accuracy(_pool(), _table(tok, tpot))
    out = accuracy_warnings({"p": entry})
    assert bool(out) == warned
    if warned:
        assert out[0]["code"] == "model_accuracy" and out[0]["message"].startswith("pool p:")
        assert ("never measured" in out[0]["message"]) == (tok is None or tpot is None)


def test_a_pool_no_class_covers_is_warned_and_own_numbers_are_not() -> None:
    """No class: a warning that nothing public measured it. Efficiencies set in the scenario, or a linear model:
    their accuracy is their source's, so no public figure is claimed and nothing is warned."""
    table = _table(50.0, 50.0)
    (w,) = accuracy_warnings({"g": pool_accuracy(_pool(hardware="gaudi3"), table)})
    assert "no public measurement of a dense model on gaudi3" in w["message"]
    set_ = pool_accuracy(_pool(perf={"kind": "roofline", "mbu": 0.7}), table)
    linear = pool_accuracy(_pool(perf={"kind": "linear", "alpha_s": 0.01}), table)
    assert (set_["basis"], linear["basis"]) == ("roofline-set", "linear")
    assert set_["class"] is None and accuracy_warnings({"a": set_, "b": linear}) == []
    assert accuracy_cell(set_) == "mfu/mbu set: not measured" and accuracy_cell(linear) == "linear: from your data"


def test_the_packaged_classes_place_the_catalogs_accelerators() -> None:
    """The order of the packaged classes: Blackwell takes any model on its GPUs, MoE on anything else goes to the
    MoE class, dense models go to their vendor's family; Gaudi and CPUs are in none."""
    table = load_accuracy()
    assert find_class(table, "b200", moe=False).id == find_class(table, "gb200", moe=True).id == "blackwell"
    assert find_class(table, "h100", moe=True).id == find_class(table, "mi300x", moe=True).id == "moe"
    assert find_class(table, "H200", moe=False).id == "dense_hopper"
    assert find_class(table, "mi355x", moe=False).id == "amd"
    assert find_class(table, "gaudi3", moe=False) is None


def test_a_run_summary_carries_each_pools_accuracy() -> None:
    """The run's summary holds the entry of each pool and the warnings its class calls for."""
    s = agentsim.load_scenario({**TINY, "horizon_s": 2})
    result = agentsim.api.run(s)
    entry = result.summary["accuracy"]["p"]
    assert entry == pool_accuracy(resolve(s).pools[0])
    codes = [w["code"] for w in result.summary["warnings"]]
    assert ("model_accuracy" in codes) == bool(accuracy_warnings({"p": entry}))


def _row(label: str, usd: float, cls: str | None, tok: float | None, tpot: float | None = None) -> Any:
    """A candidate that meets the SLOs at ``usd`` $/hour, on a pool of class ``cls`` with these MAPEs."""
    from agentsim.planning.plan.result import PlanRow

    entry: dict[str, Any] = {"basis": "roofline", "class": cls, "note": f"{cls} rows"}
    if cls is not None:
        entry |= {"label": cls, "in_rows": True, "rows": 10, "n": {"output_tok_s": 10, "tpot_s": 10},
                  "mape_pct": {"output_tok_s": tok, "tpot_s": tok if tpot is None else tpot}}  # fmt: skip
    return PlanRow(label, "m", "h", 1, 1, "tp", "fp8", None, None, "vllm", "aggregated", 1, "meets",
                   usd_per_hour=usd, usd_per_mtok_output=usd, accuracy=[entry])  # fmt: skip


def test_a_plan_warns_when_its_ranking_is_inside_the_step_time_models_error() -> None:
    """The runner-up of another class costing less more than the larger of the two classes' errors may swap
    places with the answer; a wider lead, or two candidates of one class (shared errors), does not warn. The
    answer's own class warns as a run's pool would."""
    from agentsim.planning.plan.result import ranking_warnings

    a, b = _row("a", 10.0, "x", 12.0), _row("b", 11.0, "y", 8.0, tpot=9.0)  # b 10% dearer, errors 12% and 9%
    (w,) = ranking_warnings([a, b])
    assert "costs 10.0% more" in w["message"] and "a: 12.0%, b: 9.0%" in w["message"]
    assert ranking_warnings([a, _row("b", 13.0, "y", 8.0)]) == []  # 30% dearer: outside 12%
    assert ranking_warnings([a, _row("b", 11.0, "x", 8.0)]) == []  # same class
    (u,) = ranking_warnings([a, _row("b", 11.0, None, None)])
    assert "no public figure bounds the step-time error of b" in u["message"]
    own = ranking_warnings([_row("a", 10.0, "x", 40.0), _row("b", 100.0, "y", 8.0)])
    assert [w["message"].startswith("answer a: pool #0:") for w in own] == [True]
    assert a.model_error_pct == 12.0 and b.model_error_pct == 9.0 and _row("c", 1, None, None).model_error_pct is None


def test_a_plan_row_carries_its_pools_accuracy_through_the_saved_plan(tmp_path: Path) -> None:
    """The search puts each candidate's pool entry on its row, its table has the class and the error, and a
    saved plan reads back with both, and with the warnings."""
    from agentsim.planning.plan import plan
    from agentsim.planning.plan.result import PlanResult

    data = {**TINY, "horizon_s": 20, "warmup_s": 2}
    result = plan(data, {"ttft_p50_s": 60.0}, hardware=["h100"], tp=[1], replications=2, max_replications=2,
                  max_replicas=2, workers=1)  # fmt: skip
    (row,) = result.rows
    assert row.accuracy == [{"pool": "p", **pool_accuracy(resolve(agentsim.load_scenario(data)).pools[0])}]
    table = result.to_table()
    assert table.column("model_class").to_pylist() == [row.model_class]
    assert table.column("model_error_pct").to_pylist() == [row.model_error_pct]
    back = PlanResult.load(result.save(tmp_path / "p.json"))
    assert back.rows[0].accuracy == row.accuracy and back.warnings == result.warnings


def test_the_plan_report_shows_the_warnings_and_each_candidates_model_error(tmp_path: Path) -> None:
    """``agentsim report plan.json``: the plan's warnings, and a model-error cell per candidate."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("jinja2")
    from markupsafe import escape

    from agentsim.planning.plan.result import PlanResult
    from agentsim.report.plan import write_plan_report

    a, b = _row("a", 10.0, "x", 12.0), _row("b", 11.0, "y", 8.0, tpot=9.0)
    b.replicas = a.replicas = 1
    result = PlanResult(slos={}, attainment=0.9, replications=2, max_replications=2, max_replicas=2, seeds=[1, 2],
                        rows=[a, b], warnings=[{"code": "model_accuracy", "message": "it's close"}])  # fmt: skip
    page = write_plan_report(result.save(tmp_path / "p.json"), tmp_path).read_text()
    assert "<h2>Warnings</h2>" in page and str(escape("it's close")) in page
    assert "12.0% (x)" in page and "9.0% (y)" in page
