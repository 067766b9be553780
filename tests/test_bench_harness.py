"""The benchmark harness read from a row's labels (planning/calibrate/bench.py): load modes, finite bursts measured
as the tools measure them, trtllm-bench's batch limits by hand, vLLM V0 defaults, server flags; and the exact
attention pairs of a step with several prompts (perf/roofline.py ``prefill_step_time``)."""

from __future__ import annotations

import math

import pytest

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf.memory import DoesNotFitError
from agentsim.perf.roofline import RooflinePerfModel
from agentsim.planning.calibrate import HarnessOptions, Measurement, pool_from_labels, simulate_points
from agentsim.planning.calibrate.bench import (
    SGLANG_AUTO_SPEC_STEPS,
    V0_SEQ_OVERHEAD_S,
    bench_load,
    engine_overrides,
    parse_engine_args,
    trtllm_bench_settings,
    vllm_version,
)
from agentsim.planning.calibrate.harness import plan_condition
from agentsim.planning.calibrate.measurements import CalibrationError
from agentsim.serving.presets import VLLM_NON_TORCH_MULTI_GB

CATALOG = load_catalog()
LINEAR = spec.LinearPerf(
    alpha_s=0.01, beta_s_per_prefill_token=1e-4, gamma_s_per_context_token=0.0, delta_s_per_seq=0.0
)


def test_load_modes_from_labels_and_columns() -> None:
    assert bench_load(Measurement(isl=10, osl=10, concurrency=4)).mode == "closed"
    assert bench_load(Measurement(isl=10, osl=10, qps=2.0)).finite is False
    finite = bench_load(Measurement(isl=10, osl=10, qps=2.0, num_requests=100))
    assert (finite.mode, finite.requests, finite.finite) == ("poisson", 100, True)
    burst = bench_load(Measurement(isl=10, osl=10, concurrency=500, labels={"load": "burst"}))
    assert (burst.mode, burst.requests) == ("burst", 500)
    assert bench_load(Measurement(isl=10, osl=10)).mode == "offline"
    trt = Measurement(isl=128, osl=128, labels={"source": "perf-overview.md (trtllm-bench throughput)"})
    assert bench_load(trt).requests == 30000  # NVIDIA's Perf Overview dataset size for 128/128
    with pytest.raises(CalibrationError, match="load"):
        bench_load(Measurement(isl=10, osl=10, labels={"load": "sometimes"}))


def test_a_burst_of_one_request_is_one_request_lifetime() -> None:
    """One request alone under a linear step model: TTFT = one prefill step, then osl - 1 decode steps; the
    burst's throughput is osl over the request's end-to-end time."""
    pool = spec.PoolSpec(name="p", deployment=spec.Deployment(model="llama-3.1-8b", hardware="h100"), perf=LINEAR)
    m = Measurement(isl=100, osl=11, concurrency=1, labels={"load": "burst"})
    (pred,) = simulate_points(pool, [m], CATALOG, HarnessOptions(admission="engine"))
    prefill = 0.01 + 100 * 1e-4
    e2e = prefill + 10 * 0.01
    assert pred["ttft_s"] == pytest.approx(prefill, rel=1e-9)
    assert pred["tpot_s"] == pytest.approx(0.01, rel=1e-9)
    assert pred["output_tok_s"] == pytest.approx(11 / e2e, rel=1e-9)


def test_a_burst_queues_behind_the_batch_limit() -> None:
    """Four requests at time 0 with room for two: the second pair starts when the first ends, so its TTFT
    includes a whole request lifetime, and the throughput counts the time to the last completion."""
    engine = spec.EngineSpec(max_num_seqs=2, max_batched_tokens=4096, chunked_prefill=True)
    dep = spec.Deployment(model="llama-3.1-8b", hardware="h100", engine=engine)
    pool = spec.PoolSpec(name="p", deployment=dep, perf=LINEAR)
    m = Measurement(isl=100, osl=11, labels={"load": "burst"}, num_requests=4)
    (pred,) = simulate_points(pool, [m], CATALOG, HarnessOptions(preset="scenario"))
    prefill = 0.01 + 200 * 1e-4  # both prompts in one step
    life = prefill + 10 * 0.01
    assert pred["ttft_s"] == pytest.approx((prefill + (life + prefill)) / 2, rel=1e-9)
    assert pred["output_tok_s"] == pytest.approx(44 / (2 * life), rel=1e-9)


def test_trtllm_bench_settings_by_hand() -> None:
    """Llama-3.1-8B FP8 on one H100, 128/128: 80 GiB (79.6 here) minus 8.03 GB of weights, x 0.9, over 64 KiB
    of FP8 KV per token x 256 tokens gives ~3,900 requests -> batch 4096 (rounded up to 256), tokens 2 x 4096."""
    model, hw = CATALOG.get_model("llama-3.1-8b"), CATALOG.get_hardware("h100")
    gib = 2.0**30
    per_token = 2 * 32 * 8 * 128 * 1.0 / gib
    requests = 0.9 * (hw.hbm_bytes / gib - model.params_b * 1e9 / gib) / (per_token * 256)
    assert 3500 < requests < 4096
    bs, tokens = trtllm_bench_settings(model, hw, tp=1, pp=1, precision="fp8", kv_bytes=1.0, isl=128, osl=128)
    assert (bs, tokens) == (4096, 8192)
    # A long prompt: the batch is small and max_num_tokens is raised to ISL + batch (no chunked prefill).
    bs, tokens = trtllm_bench_settings(model, hw, tp=1, pp=1, precision="fp8", kv_bytes=1.0, isl=20000, osl=2000)
    assert bs == 64 and tokens == 20000 + 64


def test_trtllm_rows_get_the_tools_batch_limits() -> None:
    m = Measurement(
        isl=128,
        osl=2048,
        labels={
            "model": "Llama-3.1-8B",
            "hardware": "H100",
            "precision": "FP8",
            "engine": "TensorRT-LLM v1.0",
            "source": "trtllm-bench throughput",
        },
    )
    pool = pool_from_labels(m, CATALOG)
    plan = plan_condition(pool, m, CATALOG, HarnessOptions())
    assert plan.finite and plan.engine.chunked_prefill is False
    assert plan.engine.max_num_seqs == 512 and plan.engine.max_batched_tokens == 2048  # ~390 requests of 2176


def test_vllm_versions_and_v0_defaults() -> None:
    assert vllm_version({"engine": "vLLM", "engine_version": "0.6.3.post2.dev308"}) == (0, 6)
    assert vllm_version({"engine": "vLLM", "engine_version": "vLLM: v0.11.0 SGLang: v0.5.3"}) == (0, 11)
    assert vllm_version({"engine": "SGLang", "engine_version": "0.5.3"}) is None
    m = Measurement(isl=10, osl=10, labels={"engine": "vLLM", "engine_version": "0.6.3"})
    long_ctx = engine_overrides(m, CATALOG.get_model("llama-3.1-405b"))  # 131k context: chunked, 512 tokens
    assert long_ctx == {
        "max_num_seqs": 256,
        "chunked_prefill": True,
        "max_batched_tokens": 512,
        "step_overhead_s_per_seq": V0_SEQ_OVERHEAD_S,
    }
    new = Measurement(isl=10, osl=10, labels={"engine": "vLLM", "engine_version": "0.11.0"})
    assert engine_overrides(new, CATALOG.get_model("llama-3.1-405b")) == {}


def test_server_flags() -> None:
    args = parse_engine_args("-tp 2 -pp 2 --async-scheduling --max-num-batched-tokens 16384 --max-num-seqs 64")
    assert args["pp"] == 2 and args["max_batched_tokens"] == 16384 and args["max_num_seqs"] == 64
    assert args["step_overhead_s"] < 0.002
    spec_args = parse_engine_args("--speculative-algorithm EAGLE3 --speculative-num-steps 3")["speculative"]
    assert spec_args == {"method": "eagle", "draft_tokens": 3, "acceptance": 0.75}
    assert parse_engine_args("--no-enable-chunked-prefill") == {"chunked_prefill": False}
    assert parse_engine_args("--max-num-seqs=256.0") == {"max_num_seqs": 256}
    # SGLang's --chunked-prefill-size -1 turns chunked prefill off (its --help); any other value is the chunk
    assert parse_engine_args("--chunked-prefill-size -1") == {"chunked_prefill": False}
    assert parse_engine_args("--chunked-prefill-size 4096") == {"max_batched_tokens": 4096}
    for bad in ("auto", "0", "-1", "1.5", "inf", "nan"):  # not a count: refused with the flag named, not ignored
        with pytest.raises(CalibrationError, match="--max-num-seqs"):
            parse_engine_args(f"--max-num-seqs {bad}")
        with pytest.raises(CalibrationError, match="--pipeline-parallel-size"):
            parse_engine_args(f"--pipeline-parallel-size={bad}")


def test_memory_flags() -> None:
    """vLLM's --gpu-memory-utilization is a fraction of the total memory; TensorRT-LLM's
    --kv_cache_free_gpu_mem_fraction a fraction of what the weights leave free (the trtllm preset's KV rule)."""
    assert parse_engine_args("--gpu-memory-utilization 0.85") == {"gpu_memory_utilization": 0.85}
    trt = parse_engine_args("--kv_cache_free_gpu_mem_fraction 0.93")
    assert trt == {"kv_memory": "of-free", "gpu_memory_utilization": 0.93}
    for bad in ("1.5", "0", "nan", "half"):  # not a fraction: refused with the flag named, not ignored
        with pytest.raises(CalibrationError, match="--kv_cache_free_gpu_mem_fraction"):
            parse_engine_args(f"--kv_cache_free_gpu_mem_fraction {bad}")
    with pytest.raises(CalibrationError, match="--gpu-memory-utilization"):
        parse_engine_args("--gpu-memory-utilization 90")
    with pytest.raises(CalibrationError, match="--kv-cache-free-gpu-mem-fraction '2'"):  # the flag as written
        parse_engine_args("--kv-cache-free-gpu-mem-fraction=2")


def test_trtllm_batch_flags_are_per_attention_dp_rank() -> None:
    """TensorRT-LLM's --max_batch_size and --max_num_tokens are per rank ("Max batch size in each rank",
    trtllm-bench's docs): NVIDIA's DeepSeek-R1 max-throughput recipe runs 896 per rank at concurrency 7168 on 8
    attention-DP ranks; under attention TP one batch spans the 8 GPUs. The row keeps the flags; the engine the
    replica runs takes them per rank."""
    from agentsim.planning.calibrate import condition_engine
    from agentsim.planning.calibrate.harness import kv_tokens
    from agentsim.resolve import resolve_engine

    flags = "--max_batch_size 896 --max_num_tokens 2048"
    labels = {"model": "DeepSeek-R1", "hardware": "B200", "precision": "fp4", "engine": "TensorRT-LLM", "tp": "8"}
    model, hw = CATALOG.get_model("deepseek-r1"), CATALOG.get_hardware("b200")
    for dpa, ranks in (("yes", 8), ("no", 1)):
        m = Measurement(
            isl=1024, osl=2048, concurrency=7168, labels={**labels, "dp_attention": dpa, "engine_args": flags}
        )
        pool = pool_from_labels(m, CATALOG)
        engine = condition_engine(pool, m, HarnessOptions(), CATALOG)
        assert (engine.max_num_seqs, engine.max_batched_tokens) == (896, 2048)
        pool = pool.model_copy(update={"deployment": pool.deployment.model_copy(update={"engine": engine})})
        _, _, config = resolve_engine(pool, model, hw)
        assert (config.max_num_seqs, config.max_batched_tokens) == (896 * ranks, 2048 * ranks)
        assert config.attention_ranks == ranks
    # the free fraction sizes the cache: 0.93 of the same free memory holds 0.93 / 0.9 of the tokens
    sized = []
    for frac in ("0.9", "0.93"):
        args = f"--kv_cache_free_gpu_mem_fraction {frac}"
        m = Measurement(isl=1024, osl=2048, concurrency=8, labels={**labels, "engine_args": args})
        pool = pool_from_labels(m, CATALOG)
        engine = condition_engine(pool, m, HarnessOptions(), CATALOG)
        assert engine.kv_memory == "of-free"
        pool = pool.model_copy(update={"deployment": pool.deployment.model_copy(update={"engine": engine})})
        sized.append(kv_tokens(pool, CATALOG))
    assert sized[1] / sized[0] == pytest.approx(0.93 / 0.9, rel=1e-3)


def test_speculation_named_without_steps_takes_sglangs_auto_choice() -> None:
    """SGLang's ``auto_choose_speculative_params`` picks 5 draft steps for architectures it does not name (Qwen3):
    a row giving the algorithm alone drafts 5 tokens; given steps win; DeepSeek (MLA) rows are not defaulted, and
    without a default the algorithm alone means no speculation (the old reading)."""
    assert SGLANG_AUTO_SPEC_STEPS == 5
    alone = "--speculative-algorithm EAGLE3 --speculative-draft-model-path Tengyunw/qwen3_8b_eagle3"
    labels = {"engine": "SGLang", "engine_args": alone}
    qwen = engine_overrides(Measurement(isl=10, osl=10, labels=labels), CATALOG.get_model("qwen3-8b"))
    assert qwen["speculative"] == {"method": "eagle", "draft_tokens": 5, "acceptance": 0.75}
    given = {**labels, "engine_args": alone + " --speculative-num-steps 2"}
    assert engine_overrides(Measurement(isl=10, osl=10, labels=given), CATALOG.get_model("qwen3-8b"))[
        "speculative"
    ]["draft_tokens"] == 2
    r1 = engine_overrides(Measurement(isl=10, osl=10, labels=labels), CATALOG.get_model("deepseek-r1"))
    assert "speculative" not in r1
    assert "speculative" not in parse_engine_args(alone)


def test_prefill_pairs_of_several_prompts_are_counted_per_prompt() -> None:
    """Eight 2048-token prompts in one step attend within their own prompts: 8 x 2048^2 / 2 pairs, an eighth of
    one 16384-token prompt's; one prompt alone reproduces step_time exactly."""
    dep = spec.Deployment(model="llama-3.1-70b", hardware="h100", tp=4, precision="fp8")
    r = RooflinePerfModel(CATALOG.get_hardware("h100"), CATALOG.get_model("llama-3.1-70b"), dep)
    one = r.prefill_step_time(16384, 0, 0, 0, 16384 * 16384 / 2)
    assert one == pytest.approx(r.step_time(16384, 0, 0), rel=1e-12)
    many = r.prefill_step_time(16384, 0, 0, 0, 8 * 2048 * 2048 / 2)
    pairs_s = r.pair_prefill_s * (16384 * 16384 / 2 - 8 * 2048 * 2048 / 2)
    assert one - many == pytest.approx(pairs_s, rel=1e-9)
    assert math.isclose(r.prefill_step_time(0, 64, 64 * 1000, 0, 0), r.step_time(0, 64, 64 * 1000), rel_tol=1e-12)


def test_a_row_on_more_gpus_than_one_instance_runs_several_replicas() -> None:
    """8 GPUs at TP4 are two instances (dstack's two TP4 vLLM servers on 8 MI300X); a burst of 2n requests on
    them is two bursts of n side by side: the same latencies, twice one instance's throughput."""
    labels = {"model": "Llama-3.1-8B", "hardware": "H100", "n_gpus": "8", "tp": "4"}
    assert pool_from_labels(Measurement(isl=10, osl=10, labels=labels), CATALOG).replicas == 2
    assert pool_from_labels(Measurement(isl=10, osl=10, labels={**labels, "tp": "8"}), CATALOG).replicas == 1
    assert pool_from_labels(Measurement(isl=10, osl=10, labels={**labels, "tp": "1", "pp": "2"}), CATALOG).replicas == 4
    assert pool_from_labels(Measurement(isl=10, osl=10, labels={**labels, "tp": "3"}), CATALOG).replicas == 1
    one = spec.PoolSpec(name="p", deployment=spec.Deployment(model="llama-3.1-8b", hardware="h100", tp=4), perf=LINEAR)
    two = one.model_copy(update={"replicas": 2})
    opts = HarnessOptions(admission="engine")
    (a,) = simulate_points(one, [Measurement(isl=100, osl=11, labels={"load": "burst"}, num_requests=3)], CATALOG, opts)
    (b,) = simulate_points(two, [Measurement(isl=100, osl=11, labels={"load": "burst"}, num_requests=6)], CATALOG, opts)
    assert b["output_tok_s"] == pytest.approx(2 * a["output_tok_s"], rel=1e-9)
    assert b["ttft_s"] == pytest.approx(a["ttft_s"], rel=1e-9)
    assert b["tpot_s"] == pytest.approx(a["tpot_s"], rel=1e-9)


def test_trtllm_bench_rows_carry_no_per_sequence_cost() -> None:
    """trtllm-serve streams every request through its HTTP server (the preset's per-sequence cost);
    trtllm-bench has no server, so its rows run without one, whatever their load."""
    from agentsim.planning.calibrate import condition_engine
    from agentsim.resolve import resolve_engine
    from agentsim.serving.presets import TRTLLM_BENCH_SEQ_OVERHEAD_S, TRTLLM_SEQ_OVERHEAD_S

    labels = {"model": "Llama-3.1-8B", "hardware": "H100", "precision": "FP8", "engine": "TensorRT-LLM"}
    served = Measurement(isl=128, osl=128, concurrency=64, labels={**labels, "load": "closed"})
    bench = Measurement(isl=128, osl=128, concurrency=64, labels={**labels, "source": "trtllm-bench throughput"})
    for m, want in ((served, TRTLLM_SEQ_OVERHEAD_S), (bench, TRTLLM_BENCH_SEQ_OVERHEAD_S)):
        pool = pool_from_labels(m, CATALOG)
        engine = condition_engine(pool, m, HarnessOptions(), CATALOG)
        pool = pool.model_copy(update={"deployment": pool.deployment.model_copy(update={"engine": engine})})
        resolved, _, _ = resolve_engine(pool, CATALOG.get_model("llama-3.1-8b"), CATALOG.get_hardware("h100"))
        assert resolved.deployment.engine.step_overhead_s_per_seq == want
    assert TRTLLM_BENCH_SEQ_OVERHEAD_S == 0.0 < TRTLLM_SEQ_OVERHEAD_S


def test_v0_server_without_chunked_prefill_gets_v0s_unchunked_budget() -> None:
    """dstack's MI300X servers ran vLLM 0.6 with --enable-chunked-prefill=False and 1024 sequences: V0 then
    takes the context length as the step budget (SchedulerConfig), not the 512 tokens of its chunked default."""
    model = CATALOG.get_model("llama-3.1-405b")
    args = "--enable-chunked-prefill=False --max-num-seqs 1024"
    labels = {"engine": "vLLM", "engine_version": "0.6.3", "engine_args": args}
    out = engine_overrides(Measurement(isl=10, osl=10, labels=labels), model)
    assert out["chunked_prefill"] is False and out["max_num_seqs"] == 1024
    assert out["max_batched_tokens"] == max(model.max_context_tokens, 2048)
    chunked = {**labels, "engine_args": "--enable-chunked-prefill --max-num-batched-tokens 512 --max-num-seqs 512"}
    out = engine_overrides(Measurement(isl=10, osl=10, labels=chunked), model)
    assert (out["chunked_prefill"], out["max_batched_tokens"], out["max_num_seqs"]) == (True, 512, 512)


def test_an_offline_v0_benchmark_steps_its_whole_max_model_len() -> None:
    """vLLM 0.5-0.6's ``benchmark_throughput.py`` declares ``--enable-chunked-prefill`` as ``store_true`` and passes
    the unset flag to ``LLM(...)`` as ``False``, so V0's long-context default (chunked, 512 tokens) does not apply:
    dstack's offline runs with ``--max-model-len 91680`` stepped, and profiled, 91,680 tokens at once. A server of
    the same version without the flag keeps the long-context default."""
    model = CATALOG.get_model("llama-3.1-405b-fbgemm")
    offline = "vLLM (offline benchmark_throughput)"
    labels = {"engine": offline, "engine_version": "0.6.3", "engine_args": "--max-model-len 91680"}
    out = engine_overrides(Measurement(isl=10, osl=10, labels=labels), model)
    assert (out["chunked_prefill"], out["max_batched_tokens"]) == (False, 91_680)
    assert "max_model_len" not in out  # read for the budget, not an engine knob
    served = engine_overrides(Measurement(isl=10, osl=10, labels={**labels, "engine": "vLLM"}), model)
    assert (served["chunked_prefill"], served["max_batched_tokens"]) == (True, 512)
    short = {**labels, "engine_args": "--max-model-len 1024"}
    assert engine_overrides(Measurement(isl=10, osl=10, labels=short), model)["max_batched_tokens"] == 2048
    # V1 (0.8 and later): the flag changes no knob
    v1 = {"engine": "vLLM", "engine_version": "0.10.2", "engine_args": "--max-model-len 32768"}
    assert engine_overrides(Measurement(isl=10, osl=10, labels=v1), model) == {}


def test_a_vllm_row_holds_at_least_the_context_it_started_with() -> None:
    """vLLM refuses to start when its KV cache cannot hold one sequence of ``--max-model-len`` (V0
    ``raise_if_cache_size_invalid``, V1 ``check_enough_kv_cache_memory``), so a published run with the flag had at
    least that many tokens: dstack's H100 405B offline run profiled 91,680 tokens, which the memory model says
    leaves less than 91,680 tokens of KV; the harness takes the flag as the bound. A larger modelled capacity
    (the 8B model) is left alone."""
    def row(model: str, args: str) -> Measurement:
        labels = {
            "model": model, "hardware": "H100 SXM5 80GB", "n_gpus": "8", "tp": "8", "precision": "fp8",
            "engine": "vLLM (offline benchmark_throughput)", "engine_version": "0.6.3.post2", "engine_args": args,
        }
        return Measurement(isl=32784, osl=2048, concurrency=4, labels={**labels, "load": "burst"})

    def bound(m: Measurement) -> int | None:
        return plan_condition(pool_from_labels(m, CATALOG), m, CATALOG, HarnessOptions()).engine.kv_capacity_tokens

    assert bound(row("Llama-3.1-405B-FBGEMM-FP8", "--max-model-len 91680")) == 91_680
    # without the flag V0 profiles the model's whole 131,072-token window unchunked: the residual and normed input
    # (2 x 16,384) and the TP8 shard's gate-up and activation (3 x 53,248 / 8) in 16 bits per token, 13.8 GB a GPU,
    # plus the memory outside PyTorch of a multi-GPU run, leave no room for a KV cache, and the row cannot run
    # (vLLM would fail at start-up as well)
    reserve = VLLM_NON_TORCH_MULTI_GB + 2 * (2 * 16384 + 3 * 53248 / 8) * 131_072 / 1e9
    with pytest.raises(DoesNotFitError, match=rf"activation reserve {reserve:.1f} GB"):
        bound(row("Llama-3.1-405B-FBGEMM-FP8", ""))
    assert bound(row("Llama-3.1-8B", "--max-model-len 91680")) is None
