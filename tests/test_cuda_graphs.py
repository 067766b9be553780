"""Engines run without CUDA graphs (``engine.cuda_graphs: false``): vLLM's ``--enforce-eager``, SGLang's
``--disable-cuda-graph``, and vLLM V0's decode steps past ``max_seq_len_to_capture``. The host then launches every
kernel through the model's Python code, so the kernel floor takes the eager time per kernel. Checked: the preset
fill (every preset, an explicit ``kernel_latency_s`` winning), the floor by hand for Llama-3-8B at batch 1 (the
kernel count from the architecture), the benchmark harness reading the flags and V0's capture rule, and the plan's
command lines saying so."""

from __future__ import annotations

import shlex

import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf import RooflinePerfModel
from agentsim.perf.roofline import KERNEL_LATENCY_S
from agentsim.planning.calibrate import Measurement
from agentsim.planning.calibrate.bench import V0_MAX_SEQ_LEN_TO_CAPTURE, engine_overrides, parse_engine_args
from agentsim.planning.plan.emit import render
from agentsim.resolve import resolve_engine
from agentsim.serving.presets import EAGER_KERNEL_LATENCY_S, TRTLLM_KERNEL_LATENCY_S, fill_engine
from test_plan_emit import _documented_sglang, _vllm_parser

CATALOG = load_catalog()
H100 = CATALOG.get_hardware("h100")
LLAMA_8B = CATALOG.get_model("llama-3.1-8b")


def _deployment(preset: str, **engine: object) -> spec.Deployment:
    return spec.Deployment.model_validate(
        {"model": "llama-3.1-8b", "hardware": "h100", "engine": {"preset": preset, **engine}}
    )


@pytest.mark.parametrize(("preset", "graphs"), [("vllm", KERNEL_LATENCY_S), ("sglang", KERNEL_LATENCY_S),
                                                ("trtllm", TRTLLM_KERNEL_LATENCY_S)])  # fmt: skip
def test_every_preset_replays_graphs_and_eager_takes_the_eager_kernel_time(preset: str, graphs: float) -> None:
    default = fill_engine(_deployment(preset), H100, LLAMA_8B).engine
    assert default.cuda_graphs is True and default.kernel_latency_s == graphs
    eager = fill_engine(_deployment(preset, cuda_graphs=False), H100, LLAMA_8B).engine
    assert eager.cuda_graphs is False and eager.kernel_latency_s == EAGER_KERNEL_LATENCY_S
    # a scenario's own kernel time wins over both
    own = fill_engine(_deployment(preset, cuda_graphs=False, kernel_latency_s=5e-5), H100, LLAMA_8B).engine
    assert own.kernel_latency_s == 5e-5


def test_eager_floor_by_hand_for_llama_3_8b_at_batch_1() -> None:
    """Llama-3-8B: 32 layers of 5 attention kernels (fused add-norm, QKV GEMM, RoPE and KV write, attention, output
    GEMM) and 4 feed-forward kernels (add-norm, gate-up GEMM, SiLU-and-multiply, down GEMM), no collectives on one
    GPU, 4 outside the layers: 292 kernels. Eagerly at 32 us each a pass takes at least 9.344 ms, where the 16 GB
    of BF16 weights stream in 4.8 ms even at the peak 3.35 TB/s; with graphs the floor (10 us each: 2.92 ms) does
    not bind."""
    kernels = 32 * (5 + 4) + 4
    deployment = {"model": "llama-3.1-8b", "hardware": "h100", "engine": {"preset": "vllm", "cuda_graphs": False}}
    perf_spec = {"kind": "roofline", "overhead_s": 0.0, "overhead_s_per_seq": 0.0}
    pool = spec.PoolSpec.model_validate({"name": "p", "deployment": deployment, "perf": perf_spec})
    model = CATALOG.get_model("llama-3.1-8b")
    eager_pool, _, _ = resolve_engine(pool, model, H100)
    graphs_pool, _, _ = resolve_engine(
        pool.model_copy(update={"deployment": _deployment("vllm")}), model, H100
    )
    def perf(p: spec.PoolSpec) -> RooflinePerfModel:
        assert isinstance(p.perf, spec.RooflinePerf)
        return RooflinePerfModel(H100, model, p.deployment, p.perf)

    eager, graphs = perf(eager_pool), perf(graphs_pool)
    assert eager.kernel_floor_s == pytest.approx(kernels * 32e-6, rel=1e-12)
    assert eager.step_time(0, 1, 300) == pytest.approx(kernels * 32e-6, rel=1e-12)  # no overheads set
    weights_s = 2.0 * model.params_b * 1e9 / (H100.hbm_tb_s * 1e12)  # at the peak: less than any real stream
    assert weights_s < eager.step_time(0, 1, 300)
    assert graphs.step_time(0, 1, 300) > kernels * KERNEL_LATENCY_S  # above its floor: the weights bind
    assert graphs.step_time(0, 1, 300) < eager.step_time(0, 1, 300)


def test_the_harness_reads_the_flags() -> None:
    assert parse_engine_args("--enforce-eager --num-scheduler-step 15") == {"cuda_graphs": False}
    assert parse_engine_args("--tp 8 --disable-cuda-graph")["cuda_graphs"] is False
    assert parse_engine_args("--enforce-eager=true")["cuda_graphs"] is False
    assert parse_engine_args("--enforce-eager=false")["cuda_graphs"] is True
    assert parse_engine_args("--no-enforce-eager")["cuda_graphs"] is True
    assert "cuda_graphs" not in parse_engine_args("--max-model-len 91680 --num-scheduler-step 1")


def test_a_v0_row_reaches_the_engine_eager_through_the_harness() -> None:
    """dstack's H100 sweep at 32,784-token prompts (vLLM 0.6.3, no eager flag): the harness's engine, resolved with
    its preset, runs the kernel floor at the eager time per kernel."""
    from agentsim.planning.calibrate import HarnessOptions, pool_from_labels
    from agentsim.planning.calibrate.harness import plan_condition

    labels = {"model": "Llama-3.1-405B", "hardware": "H100", "precision": "fp8", "engine": "vLLM", "tp": "8",
              "engine_version": "0.6.3.post2", "load": "burst", "engine_args": "--max-model-len 91680"}  # fmt: skip
    for isl, kernel_s in ((32784, EAGER_KERNEL_LATENCY_S), (2048, KERNEL_LATENCY_S)):
        m = Measurement(isl=isl, osl=2048, concurrency=4, labels=labels)
        pool = pool_from_labels(m, CATALOG)
        plan = plan_condition(pool, m, CATALOG, HarnessOptions())
        pool = pool.model_copy(update={"deployment": pool.deployment.model_copy(update={"engine": plan.engine})})
        resolved, _, _ = resolve_engine(pool, CATALOG.get_model("llama-3.1-405b"), H100)
        assert resolved.deployment.engine.kernel_latency_s == kernel_s
        assert isinstance(resolved.perf, spec.RooflinePerf) and resolved.perf.kernel_latency_s == kernel_s


def test_a_curve_is_shaped_by_the_eager_floor() -> None:
    """A measured curve's shaping roofline takes the engine's kernel time (beyond its points)."""
    curve = {"kind": "curve", "points": [{"concurrency": 1, "output_tokens_per_s": 100.0},
                                         {"concurrency": 8, "output_tokens_per_s": 700.0}]}
    pool = spec.PoolSpec.model_validate({"name": "p", "deployment": _deployment("vllm", cuda_graphs=False),
                                         "perf": curve})  # fmt: skip
    resolved, _, _ = resolve_engine(pool, CATALOG.get_model("llama-3.1-8b"), H100)
    assert isinstance(resolved.perf, spec.CurvePerf)
    assert resolved.perf.roofline.kernel_latency_s == EAGER_KERNEL_LATENCY_S


def test_v0_runs_decode_steps_past_its_captured_length_eagerly() -> None:
    """vLLM V0 replays a decode step's CUDA graph only when every sequence is within ``max_seq_len_to_capture``
    (8192 unless set): dstack's 32,784-token prompts run eagerly, its 2,048 + 2,048 do not, nor any V1 row."""
    assert V0_MAX_SEQ_LEN_TO_CAPTURE == 8192
    model = CATALOG.get_model("llama-3.1-405b")
    v0 = {"engine": "vLLM", "engine_version": "0.6.3"}

    def eager(isl: float, osl: float, labels: dict[str, str]) -> bool:
        return engine_overrides(Measurement(isl=isl, osl=osl, labels=labels), model).get("cuda_graphs") is False

    assert eager(32784, 2048, v0)
    assert not eager(2048, 2048, v0)  # at most 4,096 tokens
    # one request: eager when more than half of its decode steps pass 8192
    assert eager(7000, 4000, v0) and not eager(6000, 4000, v0)
    # four at independent positions: a step is within 8192 when all four are, 0.5455 ** 4 = 9% of steps at
    # 6,000 + 4,000 (f = 2,192 / 4,000 = 0.548 < 2 ** (-1 / 4) = 0.841)
    assert engine_overrides(Measurement(isl=6000, osl=4000, concurrency=4, labels=v0), model)["cuda_graphs"] is False
    assert "cuda_graphs" not in engine_overrides(Measurement(isl=4000, osl=4000, concurrency=4, labels=v0), model)
    assert not eager(32784, 2048, {**v0, "engine_args": "--max-seq-len-to-capture 40000"})
    assert eager(128, 128, {**v0, "engine_args": "--enforce-eager"})
    assert not eager(32784, 2048, {"engine": "vLLM", "engine_version": "0.11.0"})  # V1: no such rule


def test_the_plan_says_eager_in_its_command_lines() -> None:
    from agentsim.planning.plan.result import PlanResult, PlanRow, SloEstimate

    row = PlanRow(label="h100 tp1", model="llama-3.1-8b", hardware="h100", tp=1, pp=1, parallel="tp",
                  precision="bf16", kv_precision=None, max_num_seqs=64, preset=None, topology="aggregated",
                  gpus_per_replica=1, status="meets", replicas=2, gpus=2, usd_per_hour=4.0,
                  slos={"ttft_p99_s": SloEstimate(1.0, 0.9, 1.1, "meets")})  # fmt: skip
    for graphs, vllm_flag, sglang_flag in ((False, True, True), (None, False, False)):
        engine = {} if graphs is None else {"cuda_graphs": graphs}
        scenario = {"name": "x", "cluster": {"pools": [{"deployment": {"engine": engine}}]}}
        result = PlanResult({"ttft_p99_s": 2.0}, 0.9, 3, 10, 64, [1, 2], [row], scenario=scenario,
                            model="llama-3.1-8b", agentsim_version="0.1.0")  # fmt: skip
        vllm = [shlex.split(line) for line in render(result, "vllm").splitlines() if line and line[0] != "#"]
        sglang = [shlex.split(line) for line in render(result, "sglang").splitlines() if line and line[0] != "#"]
        assert vllm and sglang
        assert all(("--enforce-eager" in words) == vllm_flag for words in vllm)
        assert all(("--disable-cuda-graph" in words) == sglang_flag for words in sglang)
        # the documented flags parse (vLLM's own parser when installed)
        assert all(_vllm_parser().parse_args(words[2:]).enforce_eager == vllm_flag for words in vllm)
        assert all(_documented_sglang().parse_args(words[3:]).disable_cuda_graph == sglang_flag for words in sglang)
