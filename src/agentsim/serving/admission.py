"""Admission policies: which waiting call a replica lets in, and what it gives up when KV runs out.

Three engines, three answers (``docs/DESIGN.md``, Engine presets, gives the sources):

* **fcfs-preempt** (vLLM V1; TensorRT-LLM's ``MAX_UTILIZATION`` behaves the same way): admit FCFS while the
  token budget, ``max_num_seqs`` and free KV allow, reserving only the prompt; prefill chunks and decodes share
  every step. When the next step's decode tokens do not fit, the newest running call is preempted by recompute.
* **new-token-ratio** (SGLang): a call is admitted only if its prompt, its own future output (clipped at
  :data:`RESERVE_CLIP_TOKENS`) and ``ratio x`` the clipped future output of every running call fit. The ratio
  starts at 0.7, decays linearly to 0.098 over 600 decode steps and is reset after a retraction to
  ``min(1, (decoded + 20 n) / max_new)`` of the calls left. Prefill batches run before the decode batch (decodes
  wait while a prefill batch runs). When a decode step does not fit, the call with the fewest generated tokens
  (ties: the longest prompt) is retracted by recompute.
* **guaranteed-no-evict** (TensorRT-LLM's default): a call is admitted only if the free KV covers its whole prompt
  and output, after the future decode tokens of every admitted call; nothing is ever evicted.

The replica (:mod:`agentsim.serving.replica`) keeps the running sums these rules need in O(1) per event; this
module holds the resolved engine configuration it receives and the rules themselves, as functions of plain
numbers and calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from agentsim.serving.call import Call

FCFS_PREEMPT: Final = 0
NEW_TOKEN_RATIO: Final = 1
NO_EVICT: Final = 2

ADMISSION_CODES: Final = {
    "fcfs-preempt": FCFS_PREEMPT,
    "max-utilization": FCFS_PREEMPT,
    "new-token-ratio": NEW_TOKEN_RATIO,
    "guaranteed-no-evict": NO_EVICT,
}
"""Scenario names of the policies; TensorRT-LLM's MAX_UTILIZATION pauses (recomputes) the last-started call, as
vLLM preempts the newest one, so they share a code."""

# SGLang v0.5.5 (srt/environ.py, managers/schedule_policy.py, global_config).
INIT_NEW_TOKEN_RATIO: Final = 0.7
MIN_NEW_TOKEN_RATIO_FACTOR: Final = 0.14
NEW_TOKEN_RATIO_DECAY_STEPS: Final = 600
RESERVE_CLIP_TOKENS: Final = 4096
RETRACT_DECODE_STEPS: Final = 20


class EngineConfig:
    """The engine a replica runs, every knob resolved (``agentsim.resolve`` fills the preset's values in)."""

    def __init__(
        self,
        admission: int = FCFS_PREEMPT,
        max_num_seqs: int = 256,
        max_batched_tokens: int = 8192,
        chunked_prefill: bool = True,
        prefix_caching: bool = True,
        block_size_tokens: int = 16,
        init_new_token_ratio: float = INIT_NEW_TOKEN_RATIO,
        frontend_s: float = 0.0,
        window_tokens: int = 0,
        window_blocks: int = 0,
        attention_ranks: int = 1,
    ) -> None:
        self.admission = admission
        self.frontend_s = frontend_s  # before a call reaches the queue (serving.cluster.Cluster.route)
        self.max_num_seqs = max_num_seqs
        self.max_batched_tokens = max_batched_tokens
        self.chunked_prefill = chunked_prefill
        self.prefix_caching = prefix_caching
        self.block_size_tokens = block_size_tokens
        self.init_new_token_ratio = init_new_token_ratio
        # KV a running call holds for the model's sliding-window layers (vLLM: agentsim.perf.memory.sliding_window_kv)
        self.window_tokens = window_tokens
        self.window_blocks = window_blocks
        # data-parallel attention ranks, each scheduling its own share of the token budget (serving.replica)
        self.attention_ranks = attention_ranks
        self.min_new_token_ratio = init_new_token_ratio * MIN_NEW_TOKEN_RATIO_FACTOR
        self.new_token_ratio_decay = (init_new_token_ratio - self.min_new_token_ratio) / NEW_TOKEN_RATIO_DECAY_STEPS

    def __repr__(self) -> str:
        return (
            f"EngineConfig(admission={self.admission}, max_num_seqs={self.max_num_seqs}, "
            f"max_batched_tokens={self.max_batched_tokens}, chunked_prefill={self.chunked_prefill}, "
            f"prefix_caching={self.prefix_caching}, block_size_tokens={self.block_size_tokens}, "
            f"frontend_s={self.frontend_s}, window_tokens={self.window_tokens}, window_blocks={self.window_blocks}, "
            f"attention_ranks={self.attention_ranks})"
        )

    def window_charge(self, length: int) -> int:
        """KV tokens a call whose sequence reaches ``length`` tokens holds for the sliding-window layers, from its
        admission until its KV is freed: ``window_tokens``, or the share of its ``cdiv(length, block)`` blocks
        when fewer than ``window_blocks`` (0 without sliding-window layers). Charged whole from admission: a
        sequence shorter than the window early in its life is over-charged by at most ``window_blocks - 1``
        blocks (vLLM allocates them as the sequence grows)."""
        blocks = self.window_blocks
        if blocks == 0:
            return 0
        block = self.block_size_tokens
        own = (length + block - 1) // block
        if own >= blocks:
            return self.window_tokens
        return -(-(self.window_tokens * own) // blocks)

    def new_token_ratio(self, start: float, steps: int) -> float:
        """SGLang's ratio ``steps`` decode steps after it was set to ``start`` (one closed form, so that any
        engine stepping through the same decode steps gets the same float)."""
        return max(self.min_new_token_ratio, start - self.new_token_ratio_decay * steps)


def ratio_reserve(ratio: float, clipped_future: int) -> int:
    """Tokens SGLang holds back for the running calls: ``ratio x`` their clipped future output, rounded up."""
    return math.ceil(ratio * clipped_future)


def retract_victim(decoding: Iterable[Call], step: int) -> Call:
    """The decoding call SGLang retracts first: fewest generated tokens, ties the longest prompt, then the
    newest (highest id). ``step`` is the replica's decode step counter (a call's tokens so far are
    ``generated + step - s0``)."""
    best: Call | None = None
    best_key = (0, 0, 0)
    for c in decoding:
        key = (c.generated + step - c.s0, -c.prompt, -c.id)
        if best is None or key < best_key:
            best, best_key = c, key
    assert best is not None, "retraction needs a decoding call"
    return best


def reset_ratio(config: EngineConfig, decoding: Iterable[Call], step: int) -> float:
    """SGLang's ratio after a retraction, from the calls still decoding: ``min(1, (decoded + 20 n) / max_new)``
    (``max_new``: each call's output length); the initial ratio when none is left."""
    decoded = 0
    max_new = 0
    n = 0
    for c in decoding:
        decoded += c.generated + step - c.s0
        max_new += c.output
        n += 1
    if max_new == 0:
        return config.init_new_token_ratio
    return min(1.0, (decoded + RETRACT_DECODE_STEPS * n) / max_new)


def clipped_future(running: Iterable[Call], step: int, decode_phase: int) -> int:
    """Sum over ``running`` calls of their output still to come, each clipped at :data:`RESERVE_CLIP_TOKENS`
    (the slow path of the replica's running sum, used while a call has more than that left)."""
    total = 0
    for c in running:
        left = c.output - c.generated
        if c.phase == decode_phase:
            left -= step - c.s0
        total += min(left, RESERVE_CLIP_TOKENS)
    return total
