"""The KV a running sequence holds for sliding-window layers under vLLM (gpt-oss), beside its tokens' KV.

vLLM's hybrid KV-cache manager (``vllm/v1/core/kv_cache_utils.py``, ``single_type_kv_cache_manager.py``) groups
the layers by attention type into groups of equal layer count sharing one block pool; its ``SlidingWindowManager``
frees the blocks before the window, keeping at most ``cdiv(window - 1, block) + 1`` blocks per sequence
(``cdiv(length, block)`` while shorter). Every number here is worked out by hand from that rule.
"""

from __future__ import annotations

import math

import pytest

from agentsim import spec
from agentsim.catalog import ModelArch, load_catalog
from agentsim.perf.base import FunctionPerf
from agentsim.perf.memory import WindowKv, sliding_window_kv
from agentsim.resolve import resolve_engine
from agentsim.serving.admission import FCFS_PREEMPT, NO_EVICT, EngineConfig
from agentsim.serving.presets import fill_engine
from engine_harness import run_engine
from reference_engine import RefCall, run_reference

CATALOG = load_catalog()
WINDOW = 128  # gpt-oss's sliding window (HF config.json sliding_window)
BLOCK = 16  # vLLM's default block size
WINDOW_BLOCKS = math.ceil((WINDOW - 1) / BLOCK) + 1  # 8 + 1 = 9
WINDOW_TOKENS = WINDOW_BLOCKS * BLOCK  # 144


def filled(model: str, preset: str = "vllm", **engine: object) -> spec.Deployment:
    d = spec.Deployment.model_validate(
        {"model": model, "hardware": "h100", "precision": "fp4" if "gpt-oss" in model else "bf16",
         "engine": {"preset": preset, **engine}}
    )
    return fill_engine(d, CATALOG.get_hardware("h100"), CATALOG.get_model(d.model))


def test_gpt_oss_holds_nine_blocks_per_sequence_under_vllm() -> None:
    assert (WINDOW_BLOCKS, WINDOW_TOKENS) == (9, 144)
    for model in ("gpt-oss-120b", "gpt-oss-20b"):  # 18 + 18 and 12 + 12 layers: one group of each type
        m = CATALOG.get_model(model)
        assert sliding_window_kv(m, filled(model)) == WindowKv(WINDOW_TOKENS, WINDOW_BLOCKS)
    # 32-token blocks: cdiv(127, 32) + 1 = 5 blocks of 32 tokens
    m = CATALOG.get_model("gpt-oss-120b")
    assert sliding_window_kv(m, filled("gpt-oss-120b", block_size_tokens=32)) == WindowKv(5 * 32, 5)


def test_no_charge_without_windows_or_outside_vllm() -> None:
    assert sliding_window_kv(CATALOG.get_model("llama-3.1-8b"), filled("llama-3.1-8b")) == WindowKv(0, 0)
    m = CATALOG.get_model("gpt-oss-120b")
    for preset in ("sglang", "trtllm"):  # charged per token of capacity instead (tests/test_preset_kv.py)
        assert sliding_window_kv(m, filled("gpt-oss-120b", preset)) == WindowKv(0, 0)


def test_unequal_layer_counts_follow_vllms_grouping() -> None:
    """Group size: the smaller type's layer count, or the larger's when it is under 1.5x the smaller. A pool
    block holds a group's layers; a capacity token is one token of every full-attention layer."""
    raw = CATALOG.get_model("gpt-oss-120b").model_dump()
    # 36 layers, 12 sliding: 24 full, group 12 (24 >= 1.5 x 12), one sliding group of 12 layers. Its 9 blocks
    # hold 9 x 16 tokens of 12 layers = 9 x 16 x 12 / 24 = 72 tokens of the 24 full-attention layers.
    third = ModelArch.model_validate({**raw, "sliding_window_layers": 12})
    assert sliding_window_kv(third, filled("gpt-oss-120b")) == WindowKv(9 * 16 * 12 // 24, 9)
    # 30 sliding of 36 (5:1): group 6, five sliding groups of 9 blocks each, block = 16 tokens of 6 layers = 16
    # capacity tokens: 5 x 9 x 16 = 720.
    five = ModelArch.model_validate({**raw, "sliding_window_layers": 30})
    assert sliding_window_kv(five, filled("gpt-oss-120b")) == WindowKv(5 * 9 * 16, 9)
    # 17 sliding, 19 full: 19 < 1.5 x 17, group 19 (the sliding group padded): 9 x 16 x 19 / 19 = 144.
    near = ModelArch.model_validate({**raw, "sliding_window_layers": 17})
    assert sliding_window_kv(near, filled("gpt-oss-120b")) == WindowKv(144, 9)


def test_resolve_gives_the_engine_the_window() -> None:
    def engine(preset: str) -> EngineConfig:
        d = spec.Deployment.model_validate(
            {"model": "gpt-oss-120b", "hardware": "h100", "precision": "fp4", "engine": {"preset": preset}}
        )
        _, _, e = resolve_engine(
            spec.PoolSpec(name="p", deployment=d), CATALOG.get_model("gpt-oss-120b"), CATALOG.get_hardware("h100")
        )
        return e

    vllm = engine("vllm")
    assert (vllm.window_tokens, vllm.window_blocks) == (WINDOW_TOKENS, WINDOW_BLOCKS)
    for preset in ("sglang", "trtllm"):
        assert (engine(preset).window_tokens, engine(preset).window_blocks) == (0, 0)


def test_shorter_sequences_hold_their_own_blocks() -> None:
    e = EngineConfig(block_size_tokens=BLOCK, window_tokens=WINDOW_TOKENS, window_blocks=WINDOW_BLOCKS)
    assert e.window_charge(1) == 16  # one block
    assert e.window_charge(40) == 3 * 16  # cdiv(40, 16) = 3 blocks
    assert e.window_charge(128) == 8 * 16  # the window itself: 8 blocks
    assert e.window_charge(129) == 9 * 16  # from here the cap: cdiv(127, 16) + 1 = 9
    assert e.window_charge(100_000) == WINDOW_TOKENS
    assert EngineConfig(block_size_tokens=BLOCK).window_charge(100_000) == 0
    # A block worth half a block of capacity (the 12-of-36 grouping above): 72 tokens for 9 blocks, 8 per block.
    half = EngineConfig(block_size_tokens=BLOCK, window_tokens=72, window_blocks=9)
    assert half.window_charge(40) == 3 * 8
    assert half.window_charge(1000) == 72


STEP = FunctionPerf(lambda p, d, c: 1.0)  # every step takes one second


@pytest.mark.parametrize("admission", [FCFS_PREEMPT, NO_EVICT])
def test_a_replica_admits_n_such_sequences_and_not_n_plus_one(admission: int) -> None:
    """Six calls of 400 prompt + 2 output tokens at t = 0 (a sequence reaches 401 tokens in KV: 26 blocks, over
    the window), every step one second. Each holds its 400 prompt tokens and the 144 window tokens from
    admission. vLLM's fcfs-preempt admits while ``400 + 144`` are free: capacity ``5 x 544 + 543`` admits five;
    the sixth waits for them to finish (prefill 0-1, decode 1-2) and is admitted at t = 2. Guaranteed-no-evict
    also keeps back the future decode tokens, one per call: the sixth needs ``544 + 1 + 5`` beside the five's
    ``5 x 544``. One more token of capacity admits the sixth at t = 0; without the window the same capacity
    admits all six at once (6 x 400 tokens fit)."""
    per_call = 400 + WINDOW_TOKENS
    sixth = per_call if admission == FCFS_PREEMPT else per_call + 1 + 5
    capacity = 5 * per_call + sixth - 1
    arrivals: list[tuple[float, int, int, int | None]] = [(0.0, 400, 2, None)] * 6

    def admitted(window: bool, cap: int) -> list[float | None]:
        engine = EngineConfig(
            admission=admission,
            max_batched_tokens=8192,
            prefix_caching=False,
            block_size_tokens=BLOCK,
            window_tokens=WINDOW_TOKENS if window else 0,
            window_blocks=WINDOW_BLOCKS if window else 0,
        )
        calls, rep = run_engine(arrivals, STEP, engine, cap)
        ref = [RefCall(t, p, o, parent) for t, p, o, parent in arrivals]
        run_reference(ref, STEP, engine, cap)
        for c, r in zip(calls, ref, strict=True):
            assert (c.first_token_s, c.done_s) == (r.first_token_s, r.done_s)
        assert rep.kv.private == 0  # the window's tokens are freed with the calls' KV
        return [c.admitted_s for c in calls]

    assert admitted(True, capacity) == [0.0] * 5 + [2.0]
    assert admitted(True, capacity + 1) == [0.0] * 6
    assert admitted(False, capacity) == [0.0] * 6


def test_a_call_too_large_counts_its_window() -> None:
    from agentsim.serving.replica import CallTooLarge

    engine = EngineConfig(block_size_tokens=BLOCK, window_tokens=WINDOW_TOKENS, window_blocks=WINDOW_BLOCKS)
    with pytest.raises(CallTooLarge, match="144 held for sliding-window layers"):
        run_engine([(0.0, 1000, 100, None)], STEP, engine, 1100 + WINDOW_TOKENS - 1)
    calls, _ = run_engine([(0.0, 1000, 100, None)], STEP, engine, 1100 + WINDOW_TOKENS)
    assert calls[0].done_s is not None
