"""Calibration through the simulator and the fidelity report: measurement readers, reproducing a benchmark
condition, the Nelder-Mead search, recovering known linear coefficients from synthetic measurements, perf YAML
round trips, hold-out selection, the CLI commands, and user catalog files named by a scenario."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from agentsim import spec
from agentsim.api import run
from agentsim.catalog import load_catalog
from agentsim.cli import app
from agentsim.errors import ScenarioError
from agentsim.planning.calibrate import (
    CalibrationError,
    HarnessOptions,
    Measurement,
    calibrate,
    catalog_id,
    condition_engine,
    condition_scenario,
    for_presets,
    kv_tokens,
    load_perf_engine,
    load_perf_fitted_for,
    load_perf_yaml,
    nelder_mead,
    pool_from_labels,
    read_measurements,
    simulate_points,
    with_perf,
    write_perf_yaml,
)
from agentsim.planning.fidelity import PerfOverride, group_key, pick_calibration_rows, run_fidelity

CATALOG = load_catalog()
DATA = Path(__file__).parent / "data" / "perf"
TRUE = spec.LinearPerf(
    alpha_s=0.005, beta_s_per_prefill_token=5e-5, gamma_s_per_context_token=1e-6, delta_s_per_seq=2e-4
)
POOL = spec.PoolSpec(name="p", deployment=spec.Deployment(model="llama-3.1-8b", hardware="h100"), perf=TRUE)
FAST = HarnessOptions(waves=2, warmup_waves=0.5, admission="engine")


# --------------------------------------------------------------------------- reading measurements


def test_generic_csv_with_units_and_load_text(tmp_path: Path) -> None:
    f = tmp_path / "m.csv"
    f.write_text(
        "ISL,OSL,concurrency_or_qps,output_tok_s,ttft_ms,tpot_ms,hardware\n"
        "1000,200,32,1500,250,20,H200\n"
        "1000,200,2.5 qps,400,,18,H200\n"
        "1000,200,offline (max load),5000,,,H200\n",
        encoding="utf-8",
    )
    a, b, c = read_measurements(f)
    assert (a.isl, a.osl, a.concurrency, a.qps) == (1000, 200, 32, None)
    assert a.ttft_s == pytest.approx(0.25) and a.tpot_s == pytest.approx(0.02) and a.output_tok_s == 1500
    assert a.labels == {"hardware": "H200"}
    assert (b.concurrency, b.qps, b.ttft_s) == (None, 2.5, None)
    assert c.offline and c.load == "offline"


def test_trtllm_rows_read_as_offline_with_labels() -> None:
    ms = read_measurements(DATA / "trtllm_slice.csv")
    assert len(ms) == 6 and all(m.offline for m in ms)
    assert ms[0].output_tok_s == 3803 and ms[0].labels["hardware"] == "H200"
    assert group_key(ms[0]).startswith("H200 | Llama-3.3-70B-Instruct | 1 | FP8")


def test_vllm_benchmark_serving_json(tmp_path: Path) -> None:
    doc = {
        "backend": "vllm",
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "num_prompts": 200,
        "request_rate": "inf",
        "max_concurrency": 16,
        "completed": 200,
        "total_input_tokens": 204800,
        "total_output_tokens": 25600,
        "output_throughput": 2100.5,
        "mean_ttft_ms": 85.0,
        "mean_tpot_ms": 7.5,
    }
    f = tmp_path / "vllm.json"
    f.write_text(json.dumps(doc), encoding="utf-8")
    (m,) = read_measurements(f)
    assert (m.isl, m.osl, m.concurrency, m.qps) == (1024, 128, 16, None)
    assert (m.output_tok_s, m.ttft_s, m.tpot_s, m.num_requests) == (2100.5, 0.085, 0.0075, 200)
    assert catalog_id(m.labels["model"], CATALOG.models) == "llama-3.1-8b"
    lines = tmp_path / "vllm.jsonl"
    lines.write_text(json.dumps(doc) + "\n" + json.dumps(doc | {"request_rate": 4.0}) + "\n", encoding="utf-8")
    _, rated = read_measurements(lines)
    assert (rated.qps, rated.concurrency) == (4.0, None)


def test_aiperf_and_genai_perf_exports(tmp_path: Path) -> None:
    metric = {"unit": "ms"}
    aiperf = {
        "input_sequence_length": {"unit": "tokens", "avg": 550.0},
        "output_sequence_length": {"unit": "tokens", "avg": 96.85},
        "output_token_throughput": {"unit": "tokens/sec", "avg": 1274.6},
        "time_to_first_token": metric | {"avg": 1588.8},
        "inter_token_latency": {"unit": "ns", "avg": 51.76e6},
        "input_config": {"endpoint": {"model_names": ["openai/gpt-oss-120b"]}, "loadgen": {"concurrency": 100}},
    }
    f = tmp_path / "profile_export_aiperf.json"
    f.write_text(json.dumps(aiperf), encoding="utf-8")
    (m,) = read_measurements(f)
    assert (m.isl, m.osl, m.concurrency) == (550, 96.85, 100)
    assert m.ttft_s == pytest.approx(1.5888) and m.tpot_s == pytest.approx(0.05176)
    assert catalog_id(m.labels["model"], CATALOG.models) == "gpt-oss-120b"
    genai = {k: v for k, v in aiperf.items() if k != "input_config"} | {"input_config": {"request_rate": 3.0}}
    g = tmp_path / "profile_export_genai_perf.json"
    g.write_text(json.dumps(genai), encoding="utf-8")
    assert read_measurements(g)[0].qps == 3.0
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(CalibrationError, match="neither a vLLM"):
        read_measurements(bad)


def test_pools_from_published_labels() -> None:
    ms = read_measurements(DATA / "trtllm_slice.csv")
    dense = pool_from_labels(ms[0], CATALOG).deployment
    assert (dense.model, dense.hardware, dense.tp, dense.precision, dense.ep) == ("llama-3.3-70b", "h200", 1, "fp8", 1)
    moe = pool_from_labels(ms[-1], CATALOG).deployment
    # TensorRT-LLM's MoE recipe: expert parallelism with attention data parallelism over the 8 GPUs
    assert (moe.model, moe.tp, moe.ep, moe.data_parallel_attention) == ("qwen3-235b-a22b", 8, 8, True)
    plain = pool_from_labels(ms[-1], CATALOG, moe="tp").deployment
    assert (plain.ep, plain.data_parallel_attention) == (1, False)
    assert catalog_id("H100 SXM", CATALOG.hardware) == "h100"
    assert catalog_id("TPU v5e", CATALOG.hardware) is None


# --------------------------------------------------------------------------- reproducing a condition


def test_condition_scenarios() -> None:
    closed = condition_scenario(POOL, Measurement(isl=512, osl=64, concurrency=8), CATALOG, FAST)
    w = closed.workload[0]
    assert isinstance(w, spec.WorkloadSpec) and isinstance(w.arrivals, spec.Closed)
    assert w.arrivals.agents == 8 and w.arrivals.think_s == spec.Constant(value=0.0)
    assert isinstance(w.profile, spec.FixedProfile) and w.profile.prompt_tokens == spec.Constant(value=512)
    assert 0 < closed.warmup_s < closed.horizon_s
    open_loop = condition_scenario(POOL, Measurement(isl=512, osl=64, qps=5.0), CATALOG, FAST)
    w = open_loop.workload[0]
    assert isinstance(w, spec.WorkloadSpec) and w.arrivals == spec.Poisson(rate_per_s=5.0)
    assert open_loop.horizon_s - open_loop.warmup_s >= FAST.min_requests / 5.0
    # The deprecated --admission no-evict is the guaranteed-no-evict policy; offline keeps more agents than the
    # batch the engine can hold with every output token reserved (10 of 1000 tokens in 10k of KV)
    pool = replace_engine(POOL, kv_capacity_tokens=10_000, max_num_seqs=256)
    offline = condition_scenario(pool, Measurement(isl=900, osl=100), CATALOG, replace(FAST, admission="no-evict"))
    engine = offline.cluster.pools[0].deployment.engine
    assert engine.admission == "guaranteed-no-evict" and engine.max_num_seqs == 256
    w = offline.workload[0]
    # one replica's batch of 10 (10,000 KV tokens / 1,000 reserved each) plus max(8, batch / 4) waiting to refill it
    assert isinstance(w, spec.WorkloadSpec) and isinstance(w.arrivals, spec.Closed)
    assert w.arrivals.agents == 10 + max(8, 10 // 4)
    # A row whose engine label names an engine runs under that engine's preset, unless --preset says otherwise
    trt = Measurement(isl=900, osl=100, labels={"engine": "TensorRT-LLM v1.0"})
    auto = replace(FAST, admission="auto")
    assert condition_scenario(POOL, trt, CATALOG, auto).cluster.pools[0].deployment.engine.preset == "trtllm"
    assert condition_scenario(POOL, trt, CATALOG, FAST).cluster.pools[0].deployment.engine.preset == "vllm"
    forced = condition_scenario(POOL, trt, CATALOG, replace(FAST, preset="sglang"))
    assert forced.cluster.pools[0].deployment.engine.preset == "sglang"


def replace_engine(pool: spec.PoolSpec, **engine: object) -> spec.PoolSpec:
    d = pool.deployment
    new = d.model_copy(update={"engine": spec.EngineSpec.model_validate(d.engine.model_dump() | engine)})
    return pool.model_copy(update={"deployment": new})


def test_closed_loop_throughput_is_the_response_time_law() -> None:
    m = Measurement(isl=256, osl=32, concurrency=4)
    (pred,) = simulate_points(POOL, [m], CATALOG, FAST)
    s = condition_scenario(POOL, m, CATALOG, FAST)
    summary = run(s, catalog=CATALOG).summary
    assert pred["output_tok_s"] == pytest.approx(4 * 32 / summary["call_e2e_s"]["mean"])
    # and it agrees with counting tokens in the window to within a step's worth of tokens
    assert pred["output_tok_s"] == pytest.approx(summary["output_tokens_per_s"], rel=0.1)
    # a single sequence: TTFT is one prefill step, TPOT one decode step at its context
    (solo,) = simulate_points(POOL, [Measurement(isl=1000, osl=16, concurrency=1)], CATALOG, FAST)
    assert solo["ttft_s"] == pytest.approx(0.005 + 5e-5 * 1000)
    # the 15 decode steps after the first token read contexts 1000, ..., 1014: 1007 on average
    assert solo["tpot_s"] == pytest.approx(0.005 + 2e-4 + 1e-6 * 1007, rel=1e-9)


# --------------------------------------------------------------------------- the search


def test_nelder_mead_finds_the_minimum_of_a_valley() -> None:
    def rosenbrock(x: np.ndarray) -> float:
        return float((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)

    x, fx, evals = nelder_mead(rosenbrock, [-1.2, 1.0], step=0.5, max_evals=2000, xtol=1e-8, ftol=1e-14)
    assert x == pytest.approx([1.0, 1.0], abs=1e-4) and fx < 1e-8 and evals <= 2000
    x, _, _ = nelder_mead(lambda v: float(np.sum((v - 3.0) ** 2)), [0.0, 0.0, 0.0], max_evals=600)
    assert x == pytest.approx([3.0, 3.0, 3.0], abs=1e-3)


def test_nelder_mead_budget_is_a_hard_cap_and_keeps_the_best_point() -> None:
    """Every evaluation is a simulation: never more than ``max_evals``, the restart's first vertex is not
    evaluated twice, and the result is the best point evaluated, whatever budget cut the search."""

    def rosenbrock(x: np.ndarray) -> float:
        return float((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)

    for budget in range(5, 120, 7):
        seen: list[tuple[float, bytes]] = []

        def f(x: np.ndarray, seen: list[tuple[float, bytes]] = seen) -> float:
            seen.append((rosenbrock(x), x.tobytes()))
            return seen[-1][0]

        x, fx, evals = nelder_mead(f, [-1.2, 1.0], max_evals=budget)
        assert evals == len(seen) <= budget
        assert len({b for _, b in seen}) == len(seen)
        assert fx == min(v for v, _ in seen) == rosenbrock(x)


def test_calibration_recovers_known_linear_coefficients(tmp_path: Path) -> None:
    """Synthetic measurements simulated with known coefficients and a 30 ms front end; a fit from a start 20-35%
    off (the front end from calibrate's 20 ms) recovers each to within 5% (2% without the front end; five
    coefficients stall the simplex a little earlier). The conditions identify them: TTFT at two prompt lengths
    (front end + alpha, beta), TPOT at two contexts (alpha, gamma), and a batch of 16 (delta)."""
    conditions = [
        Measurement(isl=2048, osl=64, concurrency=1),
        Measurement(isl=128, osl=64, concurrency=1),
        Measurement(isl=128, osl=64, concurrency=16),
    ]
    engine = spec.EngineSpec(frontend_s=0.03)
    truth = POOL.model_copy(update={"deployment": POOL.deployment.model_copy(update={"engine": engine})})
    predicted = simulate_points(truth, conditions, CATALOG, FAST)
    measured = [replace(m, **p) for m, p in zip(conditions, predicted, strict=True)]
    start = spec.LinearPerf(
        alpha_s=0.0065, beta_s_per_prefill_token=4e-5, gamma_s_per_context_token=1.3e-6, delta_s_per_seq=1.6e-4
    )
    result = calibrate(measured, POOL.model_copy(update={"perf": start}), catalog=CATALOG, options=FAST, max_evals=300)
    # measured TTFT: the default fit adds the engine's front end to the linear coefficients
    assert result.params == (
        "alpha_s", "beta_s_per_prefill_token", "gamma_s_per_context_token", "delta_s_per_seq", "frontend_s"
    )
    for name in result.params:
        truth_value = 0.03 if name == "frontend_s" else getattr(TRUE, name)
        assert result.value(name) == pytest.approx(truth_value, rel=0.05), name
    assert result.value("frontend_s", start=True) == 0.0  # what the start predictions ran with (the preset's)
    assert result.pool.deployment.engine.frontend_s == result.value("frontend_s")
    assert result.mape("tpot_s") < 1.0 < result.mape("tpot_s", start=True)
    out = write_perf_yaml(result, tmp_path / "perf.yaml", measurements_file="synthetic")
    perf, match = load_perf_yaml(out)
    assert perf == result.perf and match == {}
    # the front end fitted with the perf travels with it: fidelity --perf applies both
    engine = load_perf_engine(out)
    assert engine == {"frontend_s": pytest.approx(result.value("frontend_s"), rel=1e-5)}
    again = simulate_points(with_perf(POOL, perf, engine), measured[:1], CATALOG, FAST)[0]
    assert again["ttft_s"] == pytest.approx(result.points[0].predicted["ttft_s"], rel=1e-4)
    doc = yaml.safe_load(out.read_text())
    assert len(doc["residuals"]) == 3 and doc["fit"]["parameters"] == list(result.params)


def test_calibration_recovers_a_known_kernel_latency(tmp_path: Path) -> None:
    """Where the kernel floor binds (Qwen3-8B FP8 on one H100 decoding one or two sequences: 472 kernels at 10 us
    outlast the ~3 ms weight read), TPOT is the floor and identifies ``kernel_latency_s``: measurements simulated
    at 14 us are fitted from the preset's 10 us to within 2%, and the fitted value travels with the perf."""
    from agentsim.perf.roofline import KERNEL_LATENCY_S

    dep = spec.Deployment(model="qwen3-8b", hardware="h100", precision="fp8")
    # FAST's window holds about one call of one sequence: a slower candidate leaves none completed in it unless
    # the harness extends the horizon (a missing TPOT would count as a miss and stall the search below 14 us)
    options = FAST
    conditions = [Measurement(isl=128, osl=64, concurrency=1), Measurement(isl=128, osl=64, concurrency=2)]
    truth = spec.PoolSpec(name="p", deployment=dep, perf=spec.RooflinePerf(kernel_latency_s=14e-6))
    predicted = simulate_points(truth, conditions, CATALOG, options)
    measured = [replace(m, tpot_s=p["tpot_s"]) for m, p in zip(conditions, predicted, strict=True)]
    pool = truth.model_copy(update={"perf": spec.RooflinePerf()})
    result = calibrate(measured, pool, catalog=CATALOG, options=options, params=["kernel_latency_s"], max_evals=40)
    assert result.value("kernel_latency_s", start=True) == KERNEL_LATENCY_S  # the search starts at the preset's
    assert result.value("kernel_latency_s") == pytest.approx(14e-6, rel=0.02)
    assert result.pool.perf.kernel_latency_s == result.value("kernel_latency_s")
    # one fitted kernel time cannot serve rows that launch kernels differently
    eager = replace(measured[0], labels={**measured[0].labels, "engine_args": "--enforce-eager"})
    with pytest.raises(CalibrationError, match=r"kernel_latency_s over rows .* 10 us, 32 us"):
        calibrate([measured[1], eager], pool, catalog=CATALOG, options=options, params=["kernel_latency_s"])
    # By default it is fitted beside mfu, mbu and the step overhead where the rows share one engine mode and the
    # floor binds on one of them; not where the step outlasts the kernels even at twice their time (Llama-3.1-8B
    # on one H100 decoding 256 sequences: ~20 ms of GPU work a step against 292 kernels, 5.8 ms at 20 us)
    same = calibrate(measured, pool, catalog=CATALOG, options=options, max_evals=2)
    # 2 search evaluations, the start, the fit, and two probes (the kernel floor, the per-sequence cost)
    assert same.params == ("mfu", "mbu", "overhead_s", "kernel_latency_s") and same.evaluations == 6
    mixed = calibrate([measured[1], eager], pool, catalog=CATALOG, options=options, max_evals=2)
    assert mixed.params == ("mfu", "mbu", "overhead_s")
    # the fitted time is for engines with CUDA graphs (10 us preset): an eager row keeps its own 32 us, through
    # the perf YAML too; dataflow hardware has no floor to fit
    yaml_path = write_perf_yaml(same, tmp_path / "kernel.yaml", measurements_file="synthetic")
    assert load_perf_fitted_for(yaml_path) == {"kernel_latency_s": KERNEL_LATENCY_S}
    doc = yaml.safe_load(yaml_path.read_text())
    assert doc["fit"]["preset"] == {"kernel_latency_s": KERNEL_LATENCY_S}
    edited = tmp_path / "edited.yaml"
    for bad in (-1e-5, 0.5, float("nan"), "10us", None):  # a hand-edited preset is refused, the field named
        doc["fit"]["preset"]["kernel_latency_s"] = bad
        edited.write_text(yaml.safe_dump(doc))
        with pytest.raises(CalibrationError, match=r"fit\.preset\.kernel_latency_s"):
            load_perf_fitted_for(edited)
    del doc["fit"]["preset"]  # a file written before fit.preset: a fitted kernel time is for its start
    for bad in (0.0, -1e-5, 0.5, float("nan"), "10us", None):
        doc["fit"]["start"]["kernel_latency_s"] = bad
        edited.write_text(yaml.safe_dump(doc))
        with pytest.raises(CalibrationError, match=r"fit\.start\.kernel_latency_s"):
            load_perf_fitted_for(edited)
    doc["fit"]["start"]["kernel_latency_s"] = KERNEL_LATENCY_S
    edited.write_text(yaml.safe_dump(doc))
    assert load_perf_fitted_for(edited) == {"kernel_latency_s": KERNEL_LATENCY_S}
    eager_engine = condition_engine(same.pool, eager, options, CATALOG)
    graphs_fit = {"kernel_latency_s": KERNEL_LATENCY_S}
    assert for_presets(same.pool, graphs_fit, eager_engine, CATALOG).perf.kernel_latency_s is None
    graphs_engine = condition_engine(same.pool, measured[0], options, CATALOG)
    assert for_presets(same.pool, graphs_fit, graphs_engine, CATALOG) == same.pool
    sn40l = pool.model_copy(update={"deployment": dep.model_copy(update={"hardware": "sn40l"})})
    with pytest.raises(CalibrationError, match="dataflow hardware has no kernel floor"):
        calibrate(measured, sn40l, catalog=CATALOG, options=options, params=["kernel_latency_s"])
    batch = Measurement(isl=128, osl=64, concurrency=256, tpot_s=0.012)
    unbound = calibrate([batch], POOL.model_copy(update={"perf": spec.RooflinePerf()}), catalog=CATALOG,
                        options=options, max_evals=2)  # fmt: skip
    assert unbound.params == ("mfu", "mbu", "overhead_s") and unbound.perf.kernel_latency_s is None


def test_calibration_fits_the_per_sequence_cost_where_the_rows_tell_it(tmp_path: Path) -> None:
    """Llama-3.1-8B on one H100: at 256 sequences the vllm preset's 130 us each is ~33 ms of a ~55 ms step, and
    measurements simulated at 300 us identify it beside a row at one sequence (fitted alone from the preset's 130 us
    to within 2%). By default it is fitted beside mfu, mbu and the step overhead, from the preset's cost, only where
    the rows tell it from the step overhead: not from one row, nor from rows that all run 256 sequences (each moves
    with both costs alike), nor over rows whose presets charge different costs (vLLM V0 and V1), which an explicit
    request is refused for, naming the costs."""
    from agentsim.serving.presets import VLLM_SEQ_OVERHEAD_S

    conditions = [
        Measurement(isl=128, osl=64, concurrency=1),
        Measurement(isl=128, osl=64, concurrency=256),
        Measurement(isl=512, osl=64, concurrency=256),
    ]
    truth = POOL.model_copy(update={"perf": spec.RooflinePerf(overhead_s_per_seq=300e-6)})
    predicted = simulate_points(truth, conditions, CATALOG, FAST)
    measured = [replace(m, tpot_s=p["tpot_s"]) for m, p in zip(conditions, predicted, strict=True)]
    pool = POOL.model_copy(update={"perf": spec.RooflinePerf()})
    pair = measured[:2]
    alone = calibrate(pair, pool, catalog=CATALOG, options=FAST, params=["overhead_s_per_seq"], max_evals=40)
    assert alone.value("overhead_s_per_seq", start=True) == VLLM_SEQ_OVERHEAD_S
    assert alone.value("overhead_s_per_seq") == pytest.approx(300e-6, rel=0.02)
    assert alone.presets == {"overhead_s_per_seq": VLLM_SEQ_OVERHEAD_S}
    # started from the user's own 200 us, the fit is still for rows charged the preset's 130 us
    mine = pool.model_copy(update={"perf": spec.RooflinePerf(overhead_s_per_seq=200e-6)})
    own = calibrate(pair, mine, catalog=CATALOG, options=FAST, params=["overhead_s_per_seq"], max_evals=2)
    assert own.value("overhead_s_per_seq", start=True) == 200e-6
    assert own.presets == {"overhead_s_per_seq": VLLM_SEQ_OVERHEAD_S}
    # with the step overhead free too, the pair tells the two apart: both come back (the preset's 2 ms, 300 us)
    two = calibrate(pair, pool, catalog=CATALOG, options=FAST, params=["overhead_s", "overhead_s_per_seq"],
                    max_evals=60)  # fmt: skip
    assert two.value("overhead_s") == pytest.approx(2e-3, rel=0.02)
    assert two.value("overhead_s_per_seq") == pytest.approx(300e-6, rel=0.02)
    both = calibrate(pair, pool, catalog=CATALOG, options=FAST, max_evals=2)
    assert both.params == ("mfu", "mbu", "overhead_s", "overhead_s_per_seq")
    assert both.value("overhead_s_per_seq", start=True) == VLLM_SEQ_OVERHEAD_S
    saved = write_perf_yaml(both, tmp_path / "seq.yaml", measurements_file="synthetic")  # for fidelity --perf
    assert load_perf_fitted_for(saved) == {"overhead_s_per_seq": VLLM_SEQ_OVERHEAD_S}
    engines_own = pool.model_copy(update={"deployment": pool.deployment.model_copy(
        update={"engine": spec.EngineSpec(step_overhead_s_per_seq=VLLM_SEQ_OVERHEAD_S)})})  # fmt: skip
    assert "overhead_s_per_seq" not in calibrate(pair, engines_own, catalog=CATALOG, options=FAST, max_evals=2).params
    one = calibrate(measured[1:2], pool, catalog=CATALOG, options=FAST, max_evals=2)
    assert "overhead_s_per_seq" not in one.params
    assert one.evaluations == 5  # 2 searched, the start, the fit, the kernel floor's probe: one row is not probed
    alike = calibrate(measured[1:], pool, catalog=CATALOG, options=FAST, max_evals=2)  # both rows run 256 sequences
    assert "overhead_s_per_seq" not in alike.params
    v0 = replace(measured[0], labels={"engine": "vLLM", "engine_version": "0.6.3"})
    mixed = calibrate([v0, measured[1]], pool, catalog=CATALOG, options=FAST, max_evals=2)
    assert "overhead_s_per_seq" not in mixed.params
    with pytest.raises(CalibrationError, match=r"overhead_s_per_seq over rows .*\(130 us, 450 us"):
        calibrate([v0, measured[1]], pool, catalog=CATALOG, options=FAST, params=["overhead_s_per_seq"])


def test_a_fitted_per_sequence_cost_is_only_for_rows_charged_the_same_preset_cost() -> None:
    """A cost fitted on vLLM V1 rows (130 us at the start) replaces the preset's on a V1 row; a V0 row keeps V0's
    cost (450 us), in the harness's pools (``fidelity --perf``) as in the holdout's."""
    from agentsim.planning.calibrate.bench import V0_SEQ_OVERHEAD_S
    from agentsim.planning.calibrate.harness import preset_value
    from agentsim.serving.presets import VLLM_SEQ_OVERHEAD_S

    fitted = POOL.model_copy(update={"perf": spec.RooflinePerf(overhead_s_per_seq=200e-6)})
    v1 = Measurement(isl=128, osl=64, concurrency=8, labels={"engine": "vLLM", "engine_version": "0.11.0"})
    v0 = Measurement(isl=128, osl=64, concurrency=8, labels={"engine": "vLLM", "engine_version": "0.6.3"})
    v1_engine, v0_engine = (condition_engine(fitted, m, FAST, CATALOG) for m in (v1, v0))
    assert preset_value(fitted, v1_engine, CATALOG, "step_overhead_s_per_seq") == VLLM_SEQ_OVERHEAD_S
    assert preset_value(fitted, v0_engine, CATALOG, "step_overhead_s_per_seq") == V0_SEQ_OVERHEAD_S
    v1_fit = {"overhead_s_per_seq": VLLM_SEQ_OVERHEAD_S}
    assert for_presets(fitted, v1_fit, v1_engine, CATALOG) == fitted
    assert for_presets(fitted, v1_fit, v0_engine, CATALOG).perf.overhead_s_per_seq is None
    assert for_presets(fitted, {}, v0_engine, CATALOG) == fitted
    override = PerfOverride(fitted.perf, fitted_for=v1_fit)
    report = run_fidelity([replace(v1, tpot_s=0.01), replace(v0, tpot_s=0.01)], pool=POOL, overrides=[override],
                          catalog=CATALOG, options=FAST)  # fmt: skip
    costs = [r.pool.perf.overhead_s_per_seq for r in report.rows if r.pool is not None]
    assert costs == [200e-6, None]


def test_calibration_rejects_what_it_cannot_fit() -> None:
    m = [Measurement(isl=128, osl=16, concurrency=1, tpot_s=0.01)]
    table = spec.TablePerf(points=[spec.TablePoint(prefill_tokens=0, decode_seqs=1, context_tokens=0, step_s=0.01)])
    with pytest.raises(CalibrationError, match="roofline or linear"):
        calibrate(m, POOL.model_copy(update={"perf": table}), catalog=CATALOG)
    with pytest.raises(CalibrationError, match="cannot fit mfu"):
        calibrate(m, POOL, catalog=CATALOG, params=["mfu"])
    with pytest.raises(CalibrationError, match="none of"):
        calibrate([Measurement(isl=128, osl=16, concurrency=1)], POOL, catalog=CATALOG)


# --------------------------------------------------------------------------- fidelity


def test_fidelity_reports_errors_and_unrunnable_rows() -> None:
    ms = read_measurements(DATA / "trtllm_slice.csv")[3:5]  # H200 Llama-3.3-70B 500/2000, H100 Llama-3.1-70B TP1
    huge = Measurement(isl=128, osl=128, labels={**ms[1].labels, "model": "Llama-3.1-405B"})  # 406 GB on one H100
    report = run_fidelity([ms[0], huge], catalog=CATALOG, options=FAST)
    ok, failed = report.rows
    assert ok.error is None and ok.error_pct("output_tok_s") is not None
    assert report.mape("output_tok_s") == pytest.approx(abs(ok.error_pct("output_tok_s") or 0))
    # 405.9 GB of fp8 weights on one H100: refused, with the numbers
    assert failed.error is not None and "does not fit: weights 405.9 GB" in failed.error
    # 70.6 GB of fp8 weights leave vLLM's rule 3.8 GB of KV on one H100 (0.9 x 79.22 GiB - weights - 0.19 GB outside
    # PyTorch - its sampler's 2.0 GB): 11,472 tokens of 327,680 bytes; TensorRT-LLM's rule (90% of what the weights
    # and the same reserve leave: 11.0 GB) about three times that, which makes room for a larger batch
    tight = run_fidelity(ms[1:], catalog=CATALOG, options=FAST)
    rule = run_fidelity(ms[1:], catalog=CATALOG, options=replace(FAST, kv_free_fraction=0.9))
    assert tight.rows[0].error is None and rule.rows[0].error is None
    assert tight.rows[0].pool is not None and rule.rows[0].pool is not None
    device = 79.22 * 2**30
    weights, per_token = 70.6e9, 2 * 80 * 8 * 128 * 2
    sampler = 3.5 * 4 * 1024 * 128_256 + 2 * 8192 * (8192 + 2 * 1024)
    vllm_tokens = (0.9 * device - weights - 0.19e9 - sampler) / per_token
    assert kv_tokens(tight.rows[0].pool, CATALOG) == pytest.approx(vllm_tokens, abs=16)  # whole 16-token blocks
    trtllm_tokens = 0.9 * (device - weights - 0.19e9 - sampler) / per_token
    assert kv_tokens(rule.rows[0].pool, CATALOG, free_fraction=0.9) == pytest.approx(trtllm_tokens, abs=16)
    assert (rule.rows[0].predicted["output_tok_s"] or 0) > 1.2 * (tight.rows[0].predicted["output_tok_s"] or 0)
    # a perf override applies to the rows its labels select
    slower = PerfOverride(spec.RooflinePerf(mfu=0.25, mbu=0.35), {"hardware": "H200"})
    report2 = run_fidelity(ms[:1], overrides=[slower], catalog=CATALOG, options=FAST)
    assert (report2.rows[0].predicted["output_tok_s"] or 0) < (ok.predicted["output_tok_s"] or 0)


def test_holdout_rows_span_the_prefill_decode_range() -> None:
    shapes = [(128, 128), (128, 2048), (128, 4096), (1000, 1000), (2048, 128), (5000, 500), (20000, 2000)]
    ms = [Measurement(isl=i, osl=o) for i, o in shapes]
    assert pick_calibration_rows(ms, 3) == [2, 3, 4]  # most decode-heavy, middle, most prefill-heavy
    assert pick_calibration_rows(ms, 0) == [] and pick_calibration_rows(ms, 10) == list(range(7))


# --------------------------------------------------------------------------- CLI


def test_cli_calibrate_then_fidelity(tmp_path: Path) -> None:
    conditions = [Measurement(isl=1024, osl=16, concurrency=1), Measurement(isl=128, osl=32, concurrency=8)]
    predicted = simulate_points(POOL, conditions, CATALOG, FAST)
    rows = "isl,osl,concurrency,ttft_ms,tpot_ms,output_tok_s\n" + "".join(
        f"{m.isl:g},{m.osl:g},{m.concurrency:g},{1e3 * (p['ttft_s'] or 0)},{1e3 * (p['tpot_s'] or 0)},"
        f"{p['output_tok_s']}\n"
        for m, p in zip(conditions, predicted, strict=True)
    )
    points = tmp_path / "points.csv"
    points.write_text(rows, encoding="utf-8")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "workload": [{"profile": "chat"}],
                "cluster": {
                    "pools": [
                        {
                            "name": "p",
                            "deployment": {"model": "llama-3.1-8b", "hardware": "h100"},
                            "perf": {
                                "kind": "linear",
                                "alpha_s": 0.006,
                                "delta_s_per_seq": 1e-4,
                                "beta_s_per_prefill_token": 5e-5,
                                "gamma_s_per_context_token": 1e-6,
                            },
                        }
                    ]
                },
            }
        ),
        encoding="utf-8",
    )
    runner = CliRunner()
    out = tmp_path / "perf.yaml"
    common = ["--scenario", str(scenario), "--preset", "scenario", "--waves", "2"]
    result = runner.invoke(
        app,
        ["calibrate", str(points), *common, "--params", "alpha_s,delta_s_per_seq", "--max-evals", "40", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "fitted: alpha_s" in result.stdout and out.is_file()
    perf, _ = load_perf_yaml(out)
    assert isinstance(perf, spec.LinearPerf) and perf.alpha_s == pytest.approx(0.005, rel=0.05)
    result = runner.invoke(app, ["fidelity", str(points), *common, "--perf", str(out), "--no-plot", "--rows"])
    assert result.exit_code == 0, result.output
    assert "MAPE" in result.stdout and "tpot_s" in result.stdout
    bad = runner.invoke(app, ["fidelity", str(points), "--where", "hardware"])
    assert bad.exit_code == 2 and "column=value" in bad.output
    # the harness flags of old still work, as overrides, with a deprecation warning
    old = [*common[:2], "--admission", "engine", "--waves", "2", "--perf", str(out), "--no-plot"]
    result = runner.invoke(app, ["fidelity", str(points), *old])
    assert result.exit_code == 0 and "--admission is deprecated" in result.output
    assert runner.invoke(app, ["fidelity", str(points), "--preset", "tgi"]).exit_code == 2


def test_cli_fidelity_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "f.png"
    result = CliRunner().invoke(
        app,
        [
            "fidelity",
            str(DATA / "trtllm_slice.csv"),
            "--where",
            "hardware=H200",
            "--where",
            "n_gpus=1",
            "--waves",
            "2",
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert png.is_file() and png.stat().st_size > 1000


# --------------------------------------------------------------------------- user catalog files


def test_scenario_catalog_files_extend_the_catalog(tmp_path: Path) -> None:
    h100 = CATALOG.get_hardware("h100").model_dump()
    price = CATALOG.get_price("h100").model_dump()
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        yaml.safe_dump(
            {
                "hardware": {"h100-lowpower": h100 | {"tdp_w": 500.0, "source": "my lab"}},
                "prices": {"h100-lowpower": price | {"source": "my quote"}},
            }
        ),
        encoding="utf-8",
    )
    base = {
        "horizon_s": 30,
        "workload": [{"profile": "chat", "arrivals": {"kind": "poisson", "rate_per_s": 0.5}}],
        "cluster": {"pools": [{"name": "p", "deployment": {"model": "llama-3.1-8b", "hardware": "h100-lowpower"}}]},
    }
    s = spec.Scenario.model_validate(base | {"catalog": [str(mine)]})
    assert run(s).summary["calls_completed"] > 0
    with pytest.raises(ScenarioError, match="unknown hardware 'h100-lowpower'"):
        run(spec.Scenario.model_validate(base))
    with pytest.raises(ScenarioError, match=r"catalog\[0\]: .*cannot read"):
        run(spec.Scenario.model_validate(base | {"catalog": [str(tmp_path / "nope.yaml")]}))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(base | {"catalog": [str(mine)]}), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(scenario)])
    assert result.exit_code == 0, result.output
    assert "h100-lowpower" in result.stdout
    shown = CliRunner().invoke(app, ["catalog", "--catalog", str(mine)])
    assert shown.exit_code == 0 and "h100-lowpower" in shown.stdout
    assert math.isfinite(CATALOG.get_hardware("h100").tdp_w)
