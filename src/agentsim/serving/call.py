"""The runtime state of one call (one LLM request) as it moves through a replica.

A :class:`Call` is created by the agent layer when its dependencies and gap are over, routed to a replica, and
filled in by the engine: timestamps, cached tokens, preemptions and its share of the replica's busy time (from
which its dollars and joules follow). Timestamps stay ``None`` until they happen, never 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from agentsim.serving.kvcache import Node

# Phases of a call inside a replica.
WAITING: Final = 0
PREFILL: Final = 1
DECODE: Final = 2
DONE: Final = 3
LOADING: Final = 4  # admitted, its prefix being reloaded from a lower KV tier (serving/tiers.py)

STABLE_KEY_BASE: Final = 2**61
"""Cache key of a call's stable part (see :attr:`Call.stable`): ``STABLE_KEY_BASE + id``, apart from call ids."""


class ReplicaId:
    """What a call knows of a replica that serves it: the pool's name and the replica's cluster-wide index.
    :class:`~agentsim.serving.replica.Replica` extends it; the base lives here so that this module, below the
    engine, need not import it (no type cycle between the call and the replica)."""

    def __init__(self, pool: str, index: int) -> None:
        self.pool = pool
        self.index = index


class Call:
    """One LLM request: ``prompt`` tokens in (part of them possibly cached), ``output`` tokens out."""

    __slots__ = (
        "acc0",
        "accm0",
        "admitted_s",
        "block_tokens",
        "blocks",
        "busy_share_s",
        "cached",
        "chunk",
        "computed",
        "done_s",
        "epoch",
        "first_token_s",
        "generated",
        "held",
        "id",
        "index",
        "issue_s",
        "kv0",
        "kv_ready",
        "kv_transfer_s",
        "load",
        "memo_from",
        "memo_kv",
        "mixed_share_s",
        "model",
        "nodes",
        "output",
        "owner",
        "parent",
        "park",
        "phase",
        "preemptions",
        "prefill_busy_s",
        "prefill_mixed_s",
        "prefill_replica",
        "prompt",
        "reasoning",
        "reload_s",
        "reloaded",
        "replica",
        "root_key",
        "root_len",
        "s0",
        "share_key",
        "stable",
        "target",
        "window",
        "workload",
    )

    def __init__(
        self,
        id: int,
        prompt: int,
        output: int,
        issue_s: float,
        *,
        owner: Any = None,
        index: int = 0,
        workload: int = 0,
        parent: Call | None = None,
        root_key: int | None = None,
        root_len: int = 0,
        blocks: tuple[int, ...] | None = None,
        block_tokens: int = 0,
        reasoning: int = 0,
        stable: int = 0,
        model: int = 0,
    ) -> None:
        self.id = id
        self.prompt = prompt
        self.output = output
        self.issue_s = issue_s
        self.admitted_s: float | None = None  # first admission into a batch (queueing ends)
        self.owner = owner  # the agent-layer object told of first token and completion (a running task)
        self.index = index  # position in its task
        self.workload = workload
        self.parent = parent  # the call whose prompt is this call's cacheable prefix
        self.root_key = root_key  # key of the shared system-prompt node, if any
        self.root_len = root_len
        # Replayed traces name the prompt's prefix by block hashes (Mooncake ``hash_ids``): block i covers
        # tokens [i*block_tokens, (i+1)*block_tokens) and its hash identifies the whole prefix up to it.
        self.blocks = blocks
        self.block_tokens = block_tokens
        self.reasoning = reasoning  # of the output tokens, generated first and not delivered
        # The part of the prompt that later calls extending this one share, when less than the whole prompt (0):
        # it is cached as a node of its own under ``share_key`` (workload/profiles.py, keep_reasoning: last).
        self.stable = stable
        self.share_key = id if stable == 0 else STABLE_KEY_BASE + id
        self.model = model  # index of the model it calls: only replicas serving it take it
        # KV offload (serving/tiers.py): prompt tokens reloaded from each lower tier at its (last) admission,
        # and the time it waited for them.
        self.reloaded: list[int] | None = None
        self.reload_s = 0.0
        self.park = False  # a tool call follows: KV offload on_tool_wait moves its context out when it ends
        self.replica: ReplicaId | None = None  # where it is (or was last) served
        self.first_token_s: float | None = None
        self.done_s: float | None = None
        self.cached = 0  # prompt tokens served from the prefix cache at the (last) admission
        self.preemptions = 0
        self.busy_share_s = 0.0  # this call's share of its replica's busy seconds
        self.mixed_share_s = 0.0  # ... of which in steps that computed prompt tokens (more power)
        self.phase = WAITING
        self.epoch = 0  # bumped on preemption: invalidates stale heap entries
        self.generated = 0
        self.target = prompt  # tokens to prefill: the prompt, plus generated tokens after a preemption
        self.computed = 0
        self.chunk = 0
        self.held = 0  # tokens of this call covered by cache nodes it references
        self.window = 0  # KV tokens held for sliding-window layers while its KV is held (EngineConfig.window_charge)
        self.nodes: list[Node] = []
        self.s0 = 0  # replica step counter when decode (re)started
        self.kv0 = 0  # KV tokens of this call when decode (re)started
        self.acc0 = 0.0  # replica's per-token busy-time accumulator when decode (re)started
        self.accm0 = 0.0  # the same for prompt-computing steps
        self.load = 0  # tokens this call adds to its replica's outstanding load (set on submit)
        # Disaggregated serving: prefilled elsewhere, KV sent over the link, decoded here.
        self.kv_ready = False
        self.prefill_replica: ReplicaId | None = None
        self.prefill_busy_s = 0.0  # busy share on the prefill replica (priced at its pool's rate)
        self.prefill_mixed_s = 0.0  # ... of which in prompt-computing steps
        self.kv_transfer_s: float | None = None
        # Prefix lookup memo (Replica._find): on cache ``memo_kv``, every ancestor between this call and
        # ``memo_from`` is finished and uncached, so can never be cached there again; lookups resume there.
        self.memo_kv: object = None
        self.memo_from: Call | None = None


class CallListener:
    """What a replica tells about its calls, at the simulated time ``now`` (from a clock event): the agent layer
    (:class:`agentsim.engine.agents.Agents`) moves its tasks on. A compiled base class rather than two callables: the
    replica's calls to it are direct native calls, once or twice per simulated call."""

    def on_first_token(self, call: Call, now: float) -> None:
        """``call`` produced its first token."""

    def on_done(self, call: Call, now: float) -> None:
        """``call`` produced its last token."""


class Callbacks(CallListener):
    """A listener made of two functions (tests and scripts that drive replicas directly)."""

    def __init__(
        self,
        on_first_token: Callable[[Call, float], None],
        on_done: Callable[[Call, float], None],
    ) -> None:
        self.first_token_fn = on_first_token
        self.done_fn = on_done

    def on_first_token(self, call: Call, now: float) -> None:
        self.first_token_fn(call, now)

    def on_done(self, call: Call, now: float) -> None:
        self.done_fn(call, now)


BLOCK_KEY_BASE: Final = -(2**62)
"""Cache keys of hash-identified blocks are ``BLOCK_KEY_BASE + hash``: apart from call ids (>= 0) and
workload system-prompt keys (small negatives)."""
