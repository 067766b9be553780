"""A run says how sure its step times are (``agentsim.analysis.accuracy``): each pool on the default roofline gets
the public-data MAPE of its class of deployment, and a warning where that misses the goal, was never measured, or
no class covers it; pools on the scenario's own numbers claim nothing.

The packaged figures (``catalog/accuracy.yaml``) are recomputed here from the public rows of
``experiments/fidelity/data`` through the fidelity harness, so a model change that moves them fails until the
file is rewritten (``python experiments/fidelity/run.py --jobs 2 --accuracy``) and docs/FIDELITY.md follows."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import agentsim
from agentsim.analysis.accuracy import (
    METRICS,
    REGIMES,
    AccuracyTable,
    accuracy_cell,
    accuracy_warnings,
    figures_of,
    find_class,
    load_accuracy,
    pool_accuracy,
    prompt_per_output,
    regime_of,
)
from agentsim.resolve import resolve
from helpers import TINY, experiment_script, packaged_figures


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
    hint = "rerun: python experiments/fidelity/run.py --jobs 2 --accuracy"

    def same(cls: str, a: Any, b: Any) -> None:  # counts exactly, percentages to the file's one decimal
        assert (a.rows, a.n) == (b.rows, b.n), (cls, hint)
        for name in ("mape_pct", "bias_pct"):
            for metric, value in getattr(b, name).items():
                was = getattr(a, name).get(metric)
                assert (value is None) == (was is None), (cls, name, metric, hint)
                if value is not None and was is not None:
                    assert abs(value - was) <= 0.051, (cls, name, metric, was, value, hint)

    for old, new in zip(packaged.classes, fresh.classes, strict=True):
        a, b = old.measured, new.measured
        figures = {"rows", "n", "mape_pct", "bias_pct", "regimes"}
        assert a.model_dump(exclude=figures) == b.model_dump(exclude=figures), (old.id, hint)
        same(old.id, a, b)
        assert sorted(a.regimes) == sorted(b.regimes), (old.id, hint)
        for regime, part in b.regimes.items():
            same(f"{old.id} {regime}", a.regimes[regime], part)


def test_the_writer_keeps_the_hand_edited_fields(tmp_path: Path) -> None:
    """``--accuracy`` replaces the measured blocks only, and the file it writes reads back as the same table."""
    script = _run_script()
    packaged = load_accuracy()
    changed = packaged.classes[0].measured.model_copy(update={"engines": ["sglang", "trtllm", "vllm"]})
    table = packaged.model_copy(update={"classes": [packaged.classes[0].model_copy(update={"measured": changed}),
                                                    *packaged.classes[1:]]})  # fmt: skip
    out = tmp_path / "accuracy.yaml"
    script.write_accuracy(table, out)
    back = AccuracyTable.model_validate(agentsim.yamlio.loads(out.read_text(encoding="utf-8")))
    assert back == table
    assert back.classes[0].label == packaged.classes[0].label
    assert back.classes[0].measured.engines == ["sglang", "trtllm", "vllm"]


def _pool(**changes: Any) -> tuple[Any, Any]:
    """TINY's pool with ``changes`` (deployment fields; ``perf``, ``engine`` and ``catalog`` apart): the resolved
    pool and the pool as written."""
    perf, engine, catalog = (changes.pop(k, None) for k in ("perf", "engine", "catalog"))
    data: dict[str, Any] = {**TINY, "cluster": {"pools": [dict(TINY["cluster"]["pools"][0])]}}
    pool = data["cluster"]["pools"][0]
    pool["deployment"] = {**pool["deployment"], **changes, **({"engine": engine} if engine else {})}
    if perf is not None:
        pool["perf"] = perf
    if catalog is not None:
        data["catalog"] = [str(catalog)]
    scenario = agentsim.load_scenario(data)
    (resolved,) = resolve(scenario).pools
    return resolved, scenario.cluster.pools[0]


def _accuracy(table: AccuracyTable | None = None, **changes: Any) -> dict[str, Any]:
    return pool_accuracy(*_pool(**changes), table)


def _table(tok: float | None, tpot: float | None, ttft: float | None = None, *, moe: bool | None = False,
           deployments: tuple[tuple[str, str, str], ...] = (("dense", "h100", "fp8"),)) -> AccuracyTable:
    """A one-class table over H100 and H200 with these MAPEs (its rows: ``deployments``)."""
    mape = {"output_tok_s": tok, "tpot_s": tpot, "ttft_s": ttft}
    n = {k: 0 if v is None else 10 for k, v in mape.items()}
    return AccuracyTable.model_validate(_table_data(mape, n, moe, deployments))


def _figures(rows: int, tok: float, bias: float | None = None) -> dict[str, Any]:
    """A regime's figures: ``rows`` rows, each measuring throughput and TPOT at MAPE ``tok``."""
    return {"rows": rows, "mape_pct": {"output_tok_s": tok, "tpot_s": tok, "ttft_s": None},
            "n": {"output_tok_s": rows, "tpot_s": rows, "ttft_s": 0},
            "bias_pct": {"output_tok_s": bias, "tpot_s": None, "ttft_s": None}}  # fmt: skip


def _table_data(mape: dict[str, Any], n: dict[str, Any], moe: bool | None = False,
                deployments: tuple[tuple[str, str, str], ...] = (("dense", "h100", "fp8"),)) -> dict[str, Any]:
    return {
        "about": "test", "goal_pct": 15.0, "source": "test",
        "classes": [{"id": "c", "label": "class c", "moe": moe, "hardware": ["h100", "h200"],
                     "measured": {"rows": 10, "deployments": [list(d) for d in deployments], "models": ["llama-3.1-8b"],
                                  "engines": ["vllm"], "mape_pct": mape, "n": n}}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["classes"][0]["measured"]["mape_pct"].pop("ttft_s"), "mape_pct needs exactly"),
        (lambda d: d["classes"][0]["measured"]["n"].update(tpot=3), r"measured\.n\.tpot\.\[key\]"),  # misspelt
        (lambda d: d["classes"][0]["measured"]["n"].update(tpot_s=0), "tpot_s: a MAPE comes from the rows"),
        (lambda d: d["classes"][0]["measured"]["n"].update(output_tok_s=11), "output_tok_s: a MAPE comes"),
        (lambda d: d["classes"].append(d["classes"][0]), "class ids must be unique"),
        (lambda d: d["classes"][0]["hardware"].append("h1000"), "hardware h1000 not in the catalog"),
        (lambda d: d["classes"][0].update(hardware=["h200"]), "its rows ran on h100, outside its hardware"),
        (lambda d: d["classes"][0].update(moe=True), "its rows ran dense models"),
        (lambda d: d["classes"][0]["measured"].update(regimes={"prompt-heavy": _figures(4, 30.0)}),
         "regimes: each row is in one regime"),
        (lambda d: d["classes"][0]["measured"].update(regimes={"busy": _figures(10, 30.0)}), r"regimes\.busy"),
        (lambda d: d["classes"][0]["measured"].update(deployments=[["dense", "h100", "FP8 "]]),
         r"measured\.deployments\.0\.2"),  # a precision that would never match a pool's
        (lambda d: d["classes"][0]["measured"].update(engines=["vlm"]), r"measured\.engines\.0"),
        (lambda d: d["classes"][0]["measured"].update(models=["no-such-model"]),
         "model no-such-model not in the catalog"),
        (lambda d: d.update(goal_pct=1e9), r"goal_pct\n.*less than or equal to 100"),  # a goal no MAPE misses
        (lambda d: d["classes"][0]["measured"].update(regimes={"prompt-heavy": _figures(6, 30.0),
                                                               "output-heavy": _figures(4, 30.0)}),
         "regimes: their output_tok_s mape_pct averages to 30.00 over their rows, not the class's 10.0"),
        (lambda d: d["classes"][0]["measured"].update(bias_pct={"output_tok_s": 11.0, "tpot_s": 1.0, "ttft_s": None}),
         "output_tok_s: a mean signed error within its MAPE"),
    ],
)
def test_a_hand_edit_of_the_table_that_breaks_it_is_refused_by_name(change: Any, named: str) -> None:
    """Every metric once in both maps, a MAPE exactly where rows measured it (at most the class's rows), unique
    ids, hardware the catalog knows, rows inside their class's hardware and kind of model."""
    data = _table_data({"output_tok_s": 10.0, "tpot_s": 12.0, "ttft_s": None},
                       {"output_tok_s": 10, "tpot_s": 10, "ttft_s": 0})  # fmt: skip
    AccuracyTable.model_validate(data)  # as given: valid
    change(data)
    with pytest.raises(ValidationError, match=named):
        AccuracyTable.model_validate(data)


def test_a_default_roofline_pool_gets_its_class_and_whether_a_public_row_ran_it() -> None:
    """H100 at fp8 is in the class's rows; H200 shares its family (figures carried over, and said so); bf16 was
    not measured; an MoE model or an accelerator outside every class has no class."""
    table = _table(10.0, 12.0)
    e = _accuracy(table)
    assert (e["basis"], e["class"], e["in_rows"], e["rows"]) == ("roofline", "c", True, 10)
    assert e["mape_pct"]["output_tok_s"] == 10.0 and accuracy_cell(e) == "10.0% / 12.0% (10)"
    h200 = _accuracy(table, hardware="h200")
    assert h200["class"] == "c" and not h200["in_rows"] and "carried over" in h200["note"]
    assert accuracy_cell(h200).endswith("(10*)")
    assert not _accuracy(table, precision="bf16")["in_rows"]
    assert _accuracy(table, model="gpt-oss-20b", precision="fp4")["class"] is None
    gaudi = _accuracy(table, hardware="gaudi3")
    assert gaudi["class"] is None and accuracy_cell(gaudi) == "not measured"


def test_in_rows_needs_one_row_with_the_kind_the_hardware_and_the_precision() -> None:
    """A dense model on H200 at bf16 is not in rows that ran dense on H100 at fp8 and MoE on H200 at bf16, though
    each of the three appears in some row."""
    table = _table(10.0, 12.0, moe=None, deployments=(("dense", "h100", "fp8"), ("moe", "h200", "bf16")))
    assert not _accuracy(table, hardware="h200", precision="bf16")["in_rows"]
    assert _accuracy(table, model="gpt-oss-20b", hardware="h200", precision="bf16")["in_rows"]


@pytest.mark.parametrize(
    ("tok", "tpot", "warned"),
    [(14.9, 15.0, False), (15.1, 10.0, True), (10.0, 15.1, True), (10.0, None, True), (None, 10.0, True)],
)
def test_the_warning_fires_past_the_goal_or_where_a_key_metric_was_never_measured(
    tok: float | None, tpot: float | None, warned: bool
) -> None:
    """The goal is inclusive (15.0% passes, 15.1% does not), on throughput and TPOT alike; a class that never
    measured one of them cannot vouch for it."""
    out = accuracy_warnings({"p": _accuracy(_table(tok, tpot))}, goal_pct=15.0)
    assert bool(out) == warned
    if warned:
        assert out[0]["code"] == "model_accuracy" and out[0]["message"].startswith("pool p:")
        assert ("never measured" in out[0]["message"]) == (tok is None or tpot is None)


def test_ttft_counts_where_a_ttft_target_rests_on_it() -> None:
    """A class within the goal on throughput and TPOT but not on TTFT warns only when TTFT decides a verdict."""
    entry = _accuracy(_table(10.0, 10.0, 120.0))
    assert accuracy_warnings({"p": entry}, goal_pct=15.0) == []
    (w,) = accuracy_warnings({"p": entry}, ttft=True, goal_pct=15.0)
    assert "TTFT 120.0%" in w["message"]


EAGLE = {"method": "eagle", "draft_tokens": 3, "acceptance": 0.7}


def test_a_pool_no_class_covers_is_warned_and_own_inputs_are_not(tmp_path: Path) -> None:
    """No class: a warning that nothing public measured it. Any step-time input of the scenario's own (a perf
    field, an engine overhead, a catalog file replacing the hardware's entry, a linear model): its accuracy is
    its source's, so no public figure is claimed and nothing is warned. ``perf: {kind: roofline}`` alone is the
    default."""
    table = _table(50.0, 50.0)
    (w,) = accuracy_warnings({"g": _accuracy(table, hardware="gaudi3")}, goal_pct=15.0)
    assert "no public measurement of a dense model on gaudi3" in w["message"]
    h100 = agentsim.catalog.load_catalog().get_hardware("h100").model_dump(mode="json", exclude_none=True)
    faster = tmp_path / "hw.yaml"
    faster.write_text(yaml.safe_dump({"hardware": {"h100": {**h100, "hbm_tb_s": 4.0}}}))
    own = {
        "mbu": _accuracy(table, perf={"kind": "roofline", "mbu": 0.7}),
        "overhead": _accuracy(table, perf={"kind": "roofline", "overhead_s": 0.01}),
        "engine": _accuracy(table, engine={"step_overhead_s": 0.01}),
        "frontend": _accuracy(table, engine={"frontend_s": 0.03}),
        "speculative": _accuracy(table, engine={"speculative": EAGLE}),
        "catalog": _accuracy(table, catalog=faster),
    }
    for name, e in own.items():
        assert (e["basis"], e["class"]) == ("roofline-set", None), name
        assert accuracy_cell(e) == "own inputs: not measured"
    assert "perf.mbu" in own["mbu"]["note"] and "catalog hardware h100" in own["catalog"]["note"]
    linear = _accuracy(table, perf={"kind": "linear", "alpha_s": 0.01})
    assert linear["basis"] == "linear" and accuracy_cell(linear) == "linear: from your data"
    assert accuracy_warnings({**own, "b": linear}, goal_pct=15.0) == []
    assert _accuracy(table, perf={"kind": "roofline"})["basis"] == "roofline"
    assert _accuracy(table, perf={"kind": "roofline", "comm_efficiency": 0.8})["basis"] == "roofline"  # its default
    assert _accuracy(table, engine={"cuda_graphs": False})["basis"] == "roofline"  # physics the rows exercised


def test_a_scenario_dumped_and_validated_again_keeps_its_claim() -> None:
    """--seed, --set and sweep points dump the scenario and validate it again, which names every field at its
    default: the default roofline is still the default roofline."""
    from agentsim.planning.sweep import apply_values

    base = agentsim.load_scenario(TINY)
    for s in (agentsim.load_scenario(base, ["seed=3"]), apply_values(base, {"cluster.pools[0].replicas": 2})):
        (rp,) = resolve(s).pools
        e = pool_accuracy(rp, s.cluster.pools[0])
        assert (e["basis"], e["class"]) == ("roofline", "dense_hopper"), e["note"]


def test_the_packaged_classes_place_the_catalogs_accelerators() -> None:
    """The order of the packaged classes: Blackwell takes any model on its GPUs, MoE on Hopper goes to the MoE
    class, dense models to their vendor's family, any model on an A100 to Ampere's; MoE off Hopper, Blackwell and
    Ampere, Gaudi and CPUs are in none."""
    table = load_accuracy()
    assert find_class(table, "b200", moe=False).id == find_class(table, "gb200", moe=True).id == "blackwell"
    assert find_class(table, "h100", moe=True).id == find_class(table, "h200", moe=True).id == "moe"
    assert find_class(table, "H200", moe=False).id == "dense_hopper"
    assert find_class(table, "mi355x", moe=False).id == "amd"
    assert find_class(table, "a100", moe=True).id == find_class(table, "a100", moe=False).id == "ampere"
    for hw, moe in (("mi300x", True), ("gaudi3", True), ("gaudi3", False), ("sn40l", False)):
        assert find_class(table, hw, moe=moe) is None, (hw, moe)


def test_the_docs_table_is_the_packaged_figures() -> None:
    """docs/FIDELITY.md's class and regime tables quote each class's rows and MAPEs (and each regime's bias) as
    catalog/accuracy.yaml has them."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "FIDELITY.md").read_text(encoding="utf-8")
    for c in load_accuracy().classes:
        regime_rows = tuple(f"| `{c.id}` | {r} |" for r in REGIMES)
        (line,) = [x for x in doc.splitlines() if x.startswith(f"| `{c.id}` |") and not x.startswith(regime_rows)]
        m, n = c.measured.mape_pct, c.measured.n
        cells = [("-" if m.get(k) is None else f"{m[k]:.1f}% ({n[k]})") for k in ("output_tok_s", "tpot_s", "ttft_s")]
        assert line.rstrip().endswith(f"| {' / '.join(cells)} |"), (c.id, line)
        for name, f in c.measured.regimes.items():  # the regime table: rows, MAPEs and the throughput's bias
            (line,) = [x for x in doc.splitlines() if x.startswith(f"| `{c.id}` | {name} |")]
            m, n, bias = f.mape_pct, f.n, f.bias_pct["output_tok_s"]
            cells = [("-" if m.get(k) is None else f"{m[k]:.1f}% ({n[k]})") for k in METRICS]
            assert line.rstrip() == f"| `{c.id}` | {name} | {f.rows} | {' / '.join(cells)} | {bias:+.1f}% |", line


def test_a_run_summary_carries_each_pools_accuracy_and_warns_of_its_class() -> None:
    """The run's summary holds each pool's entry and warns exactly when the packaged class misses the goal on
    throughput or TPOT, and on TTFT too once a TTFT target rests on it."""
    table = load_accuracy()
    for hardware, slo in (("h100", {}), ("mi300x", {}), ("h100", {"ttft_s": 1.0})):
        data = {**TINY, "horizon_s": 2, "cluster": {"pools": [dict(TINY["cluster"]["pools"][0])]},
                "workload": [{**TINY["workload"][0], "slo": slo}]}  # fmt: skip
        data["cluster"]["pools"][0]["deployment"] = {**data["cluster"]["pools"][0]["deployment"], "hardware": hardware}
        result = agentsim.api.run(agentsim.load_scenario(data))
        entry = result.summary["accuracy"]["p"]
        cls = find_class(table, hardware, moe=False)
        assert cls is not None and entry["class"] == cls.id
        metrics = ("output_tok_s", "tpot_s", "ttft_s") if slo else ("output_tok_s", "tpot_s")
        # the run's regime speaks where the class has enough rows of it, else the class (chat computes ~3-5 prompt
        # tokens per output token: mixed, where no public row ran)
        regime = entry["regime"]
        own = cls.measured.regimes.get(regime["name"])
        assert regime["rows"] == (own.rows if own is not None else 0)
        figures = own if own is not None and regime["applies"] else cls.measured
        mape = figures.mape_pct
        assert figures_of(entry).mape_pct == mape
        expected = any(mape.get(k) is None or mape[k] > table.goal_pct for k in metrics)
        said = [w["message"] for w in result.summary["warnings"] if w["code"] == "model_accuracy"]
        assert bool(said) == expected, (hardware, slo)
        if slo and mape["ttft_s"] is not None and mape["ttft_s"] > table.goal_pct:
            assert f"TTFT {mape['ttft_s']:.1f}%" in said[0]


def test_the_regime_is_the_prompt_tokens_computed_per_output_token() -> None:
    """From 10 prompt tokens computed per output token a workload is prompt-heavy (the public prefill benchmarks run
    16-853), below 3 output-heavy (chat, ShareGPT and long outputs 0.06-1.8), mixed in between (no public row)."""
    assert regime_of(10.0) == "prompt-heavy" and regime_of(320.0) == "prompt-heavy"
    assert regime_of(9.99) == "mixed" and regime_of(3.0) == "mixed"
    assert regime_of(2.99) == "output-heavy" and regime_of(1.1) == "output-heavy"
    assert regime_of(float("inf")) == "prompt-heavy"  # a prefill-only pool


def test_prompt_per_output_counts_each_pool_its_own_work(tmp_path: Path) -> None:
    """Unified pool u: calls of 1,000 + 500 prompt tokens of which 600 cached, 100 + 50 generated, and one still
    prefilling (30 outputs of a resumed call, no prompt computed yet): 900 / 180. A call prefilled on pool p and
    decoded on d counts its 2,000 computed prompt tokens to p (which generates nothing: infinite) and its 40 output
    tokens to d (which computes no prompt: 0); a call with no pool (300 prompt tokens, 20 outputs) counts nowhere."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from agentsim.analysis.tables import ParquetColumns

    table = pa.table({
        "pool": ["u", "u", "d", None, "u"], "prefill_pool": [None, None, "p", None, None],
        "prompt_tokens": [1000, 500, 2000, 300, 700], "cached_tokens": [600, 0, 0, 0, 0],
        "generated_tokens": [100, 50, 40, 20, 30], "first_token_s": [11.0, 12.0, 13.0, 13.5, None],
        "issue_s": [10.0, 11.0, 12.0, 13.0, 14.0],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "calls.parquet")
    calls = ParquetColumns(tmp_path / "calls.parquet")
    # the last call (700 prompt tokens, still prefilling at the horizon: computed none yet) adds its 30 outputs only
    assert prompt_per_output(calls) == {"u": 900 / 180, "p": float("inf"), "d": 0.0}
    # from 11 s on (a warm-up): the first call is out of the window
    assert prompt_per_output(calls, since_s=11.0) == {"u": 500 / 80, "p": float("inf"), "d": 0.0}


def test_a_run_of_a_regime_gets_its_regimes_figures_and_their_bias() -> None:
    """A class whose prompt-heavy rows (6) missed by 60% (the model high by 55%) and output-heavy rows (4) by 10%:
    a prompt-heavy pool is judged on the first, says so, and says which way its $/Mtok leans; an output-heavy pool
    has too few rows of its regime (4 < 5) and keeps the class's figures; without a run (validate, plan) the class
    speaks."""
    data = _table_data({"output_tok_s": 40.0, "tpot_s": 40.0, "ttft_s": None},
                       {"output_tok_s": 10, "tpot_s": 10, "ttft_s": 0})  # fmt: skip
    data["classes"][0]["measured"]["regimes"] = {"prompt-heavy": _figures(6, 60.0, bias=55.0),
                                                 "output-heavy": _figures(4, 10.0)}  # fmt: skip
    table = AccuracyTable.model_validate(data)
    heavy = pool_accuracy(*_pool(), table, prompt_per_output=25.0)
    assert heavy["regime"] == {"name": "prompt-heavy", "prompt_per_output": 25.0, "rows": 6, "applies": True,
                               "mape_pct": {"output_tok_s": 60.0, "tpot_s": 60.0, "ttft_s": None},
                               "n": {"output_tok_s": 6, "tpot_s": 6, "ttft_s": 0},
                               "bias_pct": {"output_tok_s": 55.0, "tpot_s": None, "ttft_s": None}}  # fmt: skip
    assert heavy["mape_pct"]["output_tok_s"] == 40.0  # the class's own stay in the entry
    (w,) = accuracy_warnings({"p": heavy}, goal_pct=15.0)
    assert "on its 6 prompt-heavy rows (>= 10 prompt tokens computed per output token; this pool 25)" in w["message"]
    assert "throughput 60.0%" in w["message"] and "ran +55% high: its tokens/s too high, $/Mtok too low" in w["message"]
    assert accuracy_cell(heavy) == "60.0% / 60.0% (6 prompt-heavy)"
    light = pool_accuracy(*_pool(), table, prompt_per_output=2.0)
    assert light["regime"]["name"] == "output-heavy" and not light["regime"]["applies"]
    assert figures_of(light).mape_pct["output_tok_s"] == 40.0 and accuracy_cell(light) == "40.0% / 40.0% (10)"
    (w,) = accuracy_warnings({"p": light}, goal_pct=15.0)
    assert "on its 10 rows the default model's MAPE was throughput 40.0%" in w["message"]
    assert "ran +" not in w["message"]  # no bias recorded
    # a pool that only prefills: prompt-heavy, with no ratio to write (JSON has no infinity)
    only = pool_accuracy(*_pool(), table, prompt_per_output=float("inf"))
    assert only["regime"]["name"] == "prompt-heavy" and only["regime"]["prompt_per_output"] is None
    json.dumps(only, allow_nan=False)
    (w,) = accuracy_warnings({"p": only}, goal_pct=15.0)
    assert "(>= 10 prompt tokens computed per output token; it only prefills)" in w["message"]
    mixed = pool_accuracy(*_pool(), table, prompt_per_output=5.0)
    assert mixed["regime"]["name"] == "mixed" and mixed["regime"]["rows"] == 0 and not mixed["regime"]["applies"]
    assert accuracy_cell(mixed) == "40.0% / 40.0% (10)"
    assert "regime" not in pool_accuracy(*_pool(), table)


def test_the_packaged_regimes_split_every_class_and_say_how_the_default_scenario_leans() -> None:
    """Every class's rows split into its regimes, none of them mixed; the built-in default scenario (agentic,
    prefixes cached) is prompt-heavy over its hour on its H200 pool, and its warning gives the dense Hopper
    prompt-heavy rows' figures."""
    table = load_accuracy()
    for c in table.classes:
        assert c.measured.regimes and sum(f.rows for f in c.measured.regimes.values()) == c.measured.rows
        assert "mixed" not in c.measured.regimes
    default = Path(agentsim.__file__).parent / "examples" / "default.yaml"
    scenario = agentsim.load_scenario(yaml.safe_load(default.read_text(encoding="utf-8")))
    result = agentsim.api.run(scenario)
    (entry,) = result.summary["accuracy"].values()
    assert entry["class"] == "dense_hopper"  # Llama-3.3-70B, dense, on H200
    cls = next(c for c in table.classes if c.id == entry["class"])
    heavy = cls.measured.regimes["prompt-heavy"]
    assert entry["regime"]["name"] == "prompt-heavy" and entry["regime"]["applies"]
    said = [w["message"] for w in result.summary["warnings"] if w["code"] == "model_accuracy"]
    assert said and f"on its {heavy.rows} prompt-heavy rows" in said[0]
    assert f"throughput {heavy.mape_pct['output_tok_s']:.1f}%" in said[0]


def _row(label: str, usd: float, cls: str | None, tok: float | None, tpot: float | None = None, *,
         hardware: str = "", ttft: float | None = None) -> Any:
    """A candidate that meets the SLOs at ``usd`` $/hour and $/Mtok, on a pool of class ``cls`` with these MAPEs
    (its hardware: ``hardware`` or its label)."""
    from agentsim.planning.plan.result import PlanRow

    entry: dict[str, Any] = {"basis": "roofline", "class": cls, "note": f"{cls} rows"}
    if cls is not None:
        mape = {"output_tok_s": tok, "tpot_s": tok if tpot is None else tpot, "ttft_s": ttft}
        entry |= {"label": cls, "in_rows": True, "rows": 10, "n": dict.fromkeys(mape, 10), "mape_pct": mape}
    return PlanRow(label, "m", hardware or label, 1, 1, "tp", "fp8", None, None, "vllm", "aggregated", 1, "meets",
                   usd_per_hour=usd, usd_per_mtok_output=usd, accuracy=[{"pool": "p", **entry}])  # fmt: skip


def test_a_plan_warns_when_its_ranking_is_inside_the_step_time_models_errors() -> None:
    """A candidate of other hardware costing more by less than the two models' errors added may swap places with
    the answer: every such candidate is named, not only the runner-up; a wider lead, or a candidate on the
    answer's own hardware, precision and preset (shared errors), is not. An error no public figure bounds is
    named as such. The answer's own class warns as a run's pool would."""
    from agentsim.planning.plan.result import ranking_warnings

    a = _row("a", 10.0, "x", 7.0)
    b = _row("b", 12.0, "y", 8.0, tpot=9.0)  # 20% dearer: outside 7 + 9 = 16%
    assert ranking_warnings([a, b]) == []
    c = _row("c", 11.5, "y", 8.0, tpot=9.0)  # 15% dearer: inside 16%
    d = _row("d", 10.5, "x", 7.0, hardware="a")  # the answer's hardware, precision and preset: exempt
    (w,) = ranking_warnings([a, d, b, c])
    assert "c (+15.0%; errors 7.0% + 9.0%)" in w["message"]
    assert " b (" not in w["message"] and " d (" not in w["message"]
    (u,) = ranking_warnings([a, _row("e", 30.0, None, None)])
    assert "e (+200.0%; its error unknown)" in u["message"]
    own = ranking_warnings([_row("a", 10.0, "x", 40.0), _row("f", 100.0, "y", 8.0)])
    assert [w["message"].startswith("answer a: pool p:") for w in own] == [True]
    assert a.model_error_pct == 7.0 and b.model_error_pct == 9.0 and _row("g", 1, None, None).model_error_pct is None


def test_the_ranking_follows_the_rank_metric_and_counts_ttft_for_a_ttft_slo() -> None:
    """Ranked by $/Mtok the lead is in $/Mtok; with a TTFT SLO the TTFT error joins the band."""
    from agentsim.planning.plan.result import ranking_warnings

    a, b = _row("a", 10.0, "x", 5.0, ttft=50.0), _row("b", 12.0, "y", 5.0, ttft=50.0)  # 20% dearer
    b.usd_per_mtok_output = 10.5  # 5% dearer per Mtok
    assert ranking_warnings([a, b]) == []  # 20% > 5 + 5
    assert len(ranking_warnings([a, b], "usd_per_mtok")) == 1  # 5% < 10
    warned = ranking_warnings([a, b], ttft=True)  # 20% < 50 + 50, and the answer's TTFT 50% > the goal
    assert any("b (+20.0%; errors 50.0% + 50.0%)" in w["message"] for w in warned)
    assert any(w["message"].startswith("answer a:") and "TTFT 50.0%" in w["message"] for w in warned)


def test_a_plan_row_carries_its_pools_accuracy_through_the_saved_plan(tmp_path: Path) -> None:
    """The search puts each candidate's pool entry on its row, its table has the class and the error, and a
    saved plan reads back with both, and with the warnings."""
    from agentsim.planning.plan import plan
    from agentsim.planning.plan.result import PlanResult

    data = {**TINY, "horizon_s": 20, "warmup_s": 2}
    result = plan(data, {"ttft_p50_s": 60.0}, hardware=["h100"], tp=[1], replications=2, max_replications=2,
                  max_replicas=2, workers=1)  # fmt: skip
    (row,) = result.rows
    assert (row.accuracy[0]["basis"], row.model_class) == ("roofline", "dense_hopper")  # the default, as given
    # judged on the regime of the answer's runs: their mean ratio of prompt tokens computed per output token
    (answer,) = [e for e in row.evaluations if e.replicas == row.replicas and not e.screening]
    ratio = answer.prompt_per_output["p"]
    assert row.accuracy[0]["regime"]["prompt_per_output"] == round(ratio, 2)
    scenario = agentsim.load_scenario(data)
    given = pool_accuracy(resolve(scenario).pools[0], scenario.cluster.pools[0], prompt_per_output=ratio)
    assert row.accuracy == [{"pool": "p", **given}]
    # its model error is the packaged dense Hopper figures of that regime (where 5 rows or more ran it), else the
    # class's: the larger of throughput and TPOT MAPE
    figures = packaged_figures("dense_hopper", ratio)
    assert row.model_error_pct == max(figures.mape_pct["output_tok_s"], figures.mape_pct["tpot_s"])
    table = result.to_table()
    assert table.column("model_class").to_pylist() == [row.model_class]
    assert table.column("model_error_pct").to_pylist() == [row.model_error_pct]
    back = PlanResult.load(result.save(tmp_path / "p.json"))
    assert back.rows[0].accuracy == row.accuracy and back.warnings == result.warnings


def test_a_plan_rows_model_error_is_its_regimes_where_that_applies() -> None:
    """A candidate judged prompt-heavy on 6 rows missing by 60% has a model error of 60, not its class's 40; with too
    few rows of its regime, the class's."""
    entry = {"basis": "roofline", "class": "c", "label": "c", "in_rows": True, "rows": 10, "note": "c rows",
             "mape_pct": {"output_tok_s": 40.0, "tpot_s": 30.0, "ttft_s": None},
             "n": {"output_tok_s": 10, "tpot_s": 10, "ttft_s": 0}}  # fmt: skip
    regime = {"name": "prompt-heavy", "prompt_per_output": 25.0, "rows": 6, "applies": True,
              "mape_pct": {"output_tok_s": 60.0, "tpot_s": 50.0, "ttft_s": None},
              "n": {"output_tok_s": 6, "tpot_s": 6, "ttft_s": 0}, "bias_pct": dict.fromkeys(METRICS)}  # fmt: skip
    row = _row("a", 1.0, "c", 40.0, 30.0)
    row.accuracy = [{"pool": "p", **entry, "regime": regime}]
    assert row.model_error_pct == 60.0
    row.accuracy = [{"pool": "p", **entry, "regime": regime | {"rows": 4, "applies": False}}]
    assert row.model_error_pct == 40.0


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


def _result(label: str, n: int, tokens_in: int, tokens_out: int, tok_s: float, ttft_ms: float, tpot_ms: float) -> str:
    """One ``vllm bench serve`` result as a gpustack page prints it, after a ``# label`` line when given."""
    return (f"    # {label}\n" if label else "") + (
        "    ============ Serving Benchmark Result ============\n"
        f"    Successful requests:                     {n}\n"
        f"    Total input tokens:                      {tokens_in}\n"
        f"    Total generated tokens:                  {tokens_out}\n"
        f"    Output token throughput (tok/s):         {tok_s}\n"
        f"    Mean TTFT (ms):                          {ttft_ms}\n"
        f"    Mean TPOT (ms):                          {tpot_ms}\n"
        "    ==================================================\n"
    )


def _experiment(section: str, command: str, *results: str) -> str:
    """A page section: its server command, then one results block holding ``results``."""
    return (f"### {section}\n\n??? info \"Serving script\"\n    ```bash\n    {command}\n    ```\n\n"
            f"??? info \"Benchmark result\"\n    ```\n{chr(10).join(results)}    ```\n\n")  # fmt: skip


PAGE = "# Optimizing X on H100\n\n### Engine Version\n\n- vLLM: v0.11.0\n- SGLang: v0.5.5\n\n" + _experiment(
    "1. Choosing the Inference Engine",
    "vllm serve Qwen/Qwen3-14B -tp 2",
    _result("a comment line before the result", 4, 1000, 402, 50.5, 120.25, 9.5),
    _result("--max-num-seqs=8", 4, 1000, 400, 60, 100, 8),
) + _experiment("2. Quantization in SGLang", "vllm serve Qwen/Qwen3-14B-FP8", _result("", 4, 1000, 400, 70, 90, 7))


def test_gpustack_rows_reads_each_result_with_its_server(capsys: pytest.CaptureFixture[str]) -> None:
    """Every result of a block with the server it ran against (a flag label replaces the command's flag), ISL and
    OSL as totals over requests, the engine versions; a result whose server is not the engine its section names is
    skipped, and said so."""
    rows = experiment_script("fidelity/gpustack_rows.py").rows(PAGE, "H100", "Qwen3-14B")
    assert [r["output_tok_s"] for r in rows] == ["50.5", "60"]
    first, second = rows
    assert (first["isl"], first["osl"], first["concurrency"], first["num_requests"]) == ("250.0", "100.5", "4.0", "4")
    assert (first["engine"], first["tp"], first["n_gpus"], first["precision"]) == ("vLLM", "2", "2", "bf16")
    assert first["engine_args"] == "-tp 2" and second["engine_args"] == "-tp 2 --max-num-seqs=8"
    assert (first["ttft_ms"], first["tpot_ms"], first["load"]) == ("120.25", "9.5", "burst")
    assert first["engine_version"] == "vLLM: v0.11.0 SGLang: v0.5.5"
    assert "is about SGLang, its server is vLLM" in capsys.readouterr().err


def test_gpustack_rows_reads_the_a100_pages_forms() -> None:
    """The A100 pages label a result ``# --max-num-batched-tokens 4096`` under a server that ran 8192: the row runs
    4096 only (the flag's value replaced, not the flag given twice, whose first value a parser would take); a result
    that prints "Maximum request concurrency: 4" ran 4 clients in a closed loop, not a burst of its 100 requests;
    gpt-oss's only release is MXFP4 (``fp4_checkpoint``); vLLM's ``--enable-expert-parallel`` spreads the experts
    over the tensor-parallel GPUs with tensor-parallel attention (the ``ep`` and ``dp_attention`` labels of
    moe.csv)."""
    script = experiment_script("fidelity/gpustack_rows.py")
    closed = _result("ShareGPT batch size 4", 100, 22946, 21691, 326.09, 61.91, 11.67).replace(
        "    Successful requests:                     100\n",
        "    Successful requests:                     100\n    Maximum request concurrency:             4\n",
    )
    page = "# X\n\n" + _experiment(
        "5. Max Number of Batched Tokens",
        "vllm serve openai/gpt-oss-20b --async-scheduling --max-num-batched-tokens 8192",
        _result("--max-num-batched-tokens 4096", 1000, 215300, 194200, 5179.92, 12371.6, 43.25),
        closed,
    ) + _experiment("6. Expert parallelism", "vllm serve Q/Qwen3-235B-A22B-FP8 -tp 4 --enable-expert-parallel",
                    _result("", 4, 1000, 400, 60, 100, 8))  # fmt: skip
    labelled, loop, ep = script.rows(page, "A100", "gpt-oss-20b", fp4_checkpoint=True)
    assert labelled["engine_args"] == "--async-scheduling --max-num-batched-tokens 4096"
    assert (labelled["load"], labelled["concurrency"], labelled["precision"]) == ("burst", "1000.0", "fp4")
    assert (loop["load"], loop["concurrency"], loop["num_requests"], loop["note"]) == ("closed", "4.0", "100", "")
    assert loop["engine_args"] == "--async-scheduling --max-num-batched-tokens 8192"
    assert (ep["precision"], ep["tp"], ep["ep"], ep["dp_attention"]) == ("fp8", "4", "4", "no")
    # a label replaces its flag in either form and under another name of the same flag, keeps a negative value
    # with its flag, and is refused with words that are no flags (prose would have become server flags)
    with_flag = script._with_flag
    assert with_flag(["--max-num-seqs=256", "-q"], "--max-num-seqs 128") == ["-q", "--max-num-seqs", "128"]
    assert with_flag(["--max-num-seqs", "256"], "--max-num-seqs=128") == ["--max-num-seqs=128"]
    assert with_flag(["-tp", "4", "--x", "4", "--y", "2"], "--tensor-parallel-size 8 --y 1") == [
        "--x", "4", "--tensor-parallel-size", "8", "--y", "1"]  # fmt: skip
    assert with_flag(["--seed", "-1", "--a"], "--seed 3") == ["--a", "--seed", "3"]
    assert with_flag(["ENV=1", "--a", "1"], "--enforce-eager") == ["ENV=1", "--a", "1", "--enforce-eager"]
    with pytest.raises(ValueError, match=r"'\(default' is no flag"):
        with_flag(["--a"], "--max-num-seqs 128 (default 256)")
    bad = closed.replace("concurrency:             4", "concurrency:             2.5")
    with pytest.raises(ValueError, match=r"Maximum request concurrency must be a positive whole number, got 2\.5"):
        script.rows("# X\n\n" + _experiment("1. E", "vllm serve Q/Q3", bad), "A100", "Qwen3-14B")
    worded = closed.replace("concurrency:             4", "concurrency:             four")
    with pytest.raises(ValueError, match=r"section '1\. E': Maximum request concurrency: 'four' is not a number"):
        script.rows("# X\n\n" + _experiment("1. E", "vllm serve Q/Q3", worded), "A100", "Qwen3-14B")
    # SGLang's and TensorRT-LLM's expert parallelism is a size (SGLang may name the model with --model)
    sizes = _experiment("1. SGLang", "python3 -m sglang.launch_server --model Q/Q3 --tp-size 8 --ep-size 4",
                        _result("", 4, 1000, 400, 60, 100, 8))  # fmt: skip
    (sized,) = script.rows("# X\n\n" + sizes, "H200", "Qwen3-235B-A22B")
    assert (sized["engine"], sized["tp"], sized["ep"], sized["dp_attention"]) == ("SGLang", "8", "4", "no")


def test_gpustack_rows_takes_the_precision_of_an_mxfp4_release_from_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line names the model; the script reads from the catalog that gpt-oss ships only in MXFP4
    (``fp4_checkpoint: mxfp4-experts``) and writes its rows as fp4, and a Qwen3 model's as bf16."""
    import csv as csv_module

    script = experiment_script("fidelity/gpustack_rows.py")
    page = tmp_path / "page.md"
    result = _result("", 4, 1000, 400, 60, 100, 8)
    page.write_text("# X\n\n" + _experiment("1. E", "vllm serve openai/gpt-oss-20b", result))
    for model, precision in (("gpt-oss-20b", "fp4"), ("Qwen3-14B", "bf16")):
        assert script.main([str(page), "--hardware", "A100", "--model", model, "--header"]) == 0
        (row,) = csv_module.DictReader(capsys.readouterr().out.splitlines())
        assert (row["model"], row["precision"], row["hardware"]) == (model, precision, "A100")


def test_fidelity_reports_a_row_the_modelled_cache_cannot_hold_instead_of_stopping(tmp_path: Path) -> None:
    """A served request longer than the modelled KV cache is a failure of the memory model: that row is reported
    as not simulated with both sizes; the others are simulated."""
    from agentsim.planning.calibrate.measurements import read_measurements
    from agentsim.planning.fidelity import run_fidelity

    head = "isl,osl,concurrency,output_tok_s,load,num_requests,hardware,model,n_gpus,tp,precision,engine\n"
    rows = "".join(f"{isl},10,1,50,burst,1,H100,Qwen3-32B,1,1,bf16,vLLM\n" for isl in (500, 39000))
    (tmp_path / "m.csv").write_text(head + rows)
    report = run_fidelity(read_measurements(tmp_path / "m.csv"))
    ok, failed = report.rows
    assert ok.error is None and ok.predicted.get("output_tok_s")
    assert failed.error is not None and "holds less than one request of this row (39,010 tokens)" in failed.error


def test_gpustack_rows_refuses_a_result_it_cannot_read_and_reads_precision_from_the_weights() -> None:
    """A result missing a figure, or with no requests, is refused naming its section and result; FP8 weights are
    an -FP8 checkpoint or --quantization fp8, not an FP8 KV cache."""
    script = experiment_script("fidelity/gpustack_rows.py")
    head = "# X\n\n"
    kv = _experiment("1. Choosing the Inference Engine", "vllm serve Qwen/Qwen3-14B --kv-cache-dtype fp8",
                     _result("", 4, 1000, 400, 60, 100, 8))  # fmt: skip
    quant = _experiment("2. Quantization in vLLM", "vllm serve Qwen/Qwen3-14B --quantization fp8",
                        _result("", 4, 1000, 400, 60, 100, 8))  # fmt: skip
    assert [r["precision"] for r in script.rows(head + kv + quant, "H100", "Qwen3-14B")] == ["bf16", "fp8"]
    no_tpot = kv.replace("    Mean TPOT (ms):                          8\n", "")
    with pytest.raises(ValueError, match=r"section '1\. Choosing the Inference Engine', result 1 .*Mean TPOT"):
        script.rows(head + no_tpot, "H100", "Qwen3-14B")
    no_requests = kv.replace("Successful requests:                     4", "Successful requests:                     0")
    with pytest.raises(ValueError, match="Successful requests must be a positive whole number"):
        script.rows(head + no_requests, "H100", "Qwen3-14B")
    # a figure that is no number, or no positive one, names its section and field
    unread = kv.replace("Mean TPOT (ms):                          8", "Mean TPOT (ms):                          N/A")
    with pytest.raises(ValueError, match=r"section '1\. Choosing the Inference Engine': Mean TPOT \(ms\): 'N/A' is"):
        script.rows(head + unread, "H100", "Qwen3-14B")
    tpot = "Mean TPOT (ms):                          "
    for bad in ("nan", "-5"):
        odd = kv.replace(f"{tpot}8", f"{tpot}{bad}")
        with pytest.raises(ValueError, match=r"result 1 .*Mean TPOT \(ms\) must be a positive finite number"):
            script.rows(head + odd, "H100", "Qwen3-14B")
    nameless = kv.replace("vllm serve Qwen/Qwen3-14B --kv-cache-dtype fp8", "vllm serve")
    with pytest.raises(ValueError, match="Choosing the Inference Engine': the vLLM server command names no model"):
        script.rows(head + nameless, "H100", "Qwen3-14B")


def test_sglang_rows_run_attention_data_parallel_only_with_a_dp_size() -> None:
    """SGLang v0.5.3 turns ``--enable-dp-attention`` off when ``--dp-size`` is 1, its default
    (``ServerArgs._handle_data_parallelism``: ``if self.dp_size == 1: self.enable_dp_attention = False``; the
    attention's TP size is ``tp_size // dp_size``, ``layers/dp_attention.py``). So a public SGLang row runs
    data-parallel attention exactly when its flags give a dp size above 1: its ``dp_attention`` label says so."""
    import csv
    import re

    def runs_dp_attention(args: str) -> bool:
        dp = re.search(r"(?:--dp|--dp-size|--data-parallel-size)[ =](\d+)", args)
        return "--enable-dp-attention" in args and dp is not None and int(dp.group(1)) > 1

    assert runs_dp_attention("--tp 8 --dp 8 --enable-dp-attention")
    assert runs_dp_attention("--tp-size 8 --enable-dp-attention --dp-size=4")
    assert not runs_dp_attention("--tp 8 --enable-dp-attention")
    assert not runs_dp_attention("--tp 8 --dp 1 --enable-dp-attention")
    assert not runs_dp_attention("--tp 8 --dp 8")
    data = Path(__file__).resolve().parents[1] / "experiments" / "fidelity" / "data"
    checked = 0
    for path in sorted(data.glob("*.csv")):
        for row in csv.DictReader(path.open(encoding="utf-8")):
            if row.get("engine") != "SGLang":
                continue
            args = row.get("engine_args") or ""
            assert row.get("dp_attention", "") in ("", "no", "yes"), (path.name, args)
            assert (row.get("dp_attention") == "yes") == runs_dp_attention(args), (path.name, args)
            checked += "--enable-dp-attention" in args
    assert checked == 7  # gpustack's DeepSeek-R1 page: `--tp 8 --enable-dp-attention`, no dp size


def test_the_experiment_reads_the_tree_copy_of_the_table_and_names_a_file_it_cannot(tmp_path: Path) -> None:
    """``run.py --accuracy`` rewrites the source tree's accuracy.yaml from what it reads there (``read_accuracy``):
    the same table as the packaged one in an editable install, and a file that cannot be read is named."""
    from agentsim.analysis.accuracy import read_accuracy
    from agentsim.yamlio import TextFileError

    tree = Path(__file__).resolve().parents[1] / "src" / "agentsim" / "catalog" / "accuracy.yaml"
    assert read_accuracy(tree) == load_accuracy()
    edited = tmp_path / "accuracy.yaml"  # the file given is the file read, not the packaged one again
    edited.write_text(tree.read_text(encoding="utf-8").replace("goal_pct: 15.0", "goal_pct: 12.5"), encoding="utf-8")
    assert read_accuracy(edited).goal_pct == 12.5 != load_accuracy().goal_pct
    with pytest.raises(TextFileError, match=r"missing\.yaml"):
        read_accuracy(tmp_path / "missing.yaml")
