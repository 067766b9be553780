"""Tasks are DAGs of calls.

Every workload, synthetic or replayed, becomes the same shape: a :class:`TaskTemplate` holding
:class:`CallTemplate` rows. A call waits for its dependencies (``deps``, indices of earlier calls in the same
task), then for its ``gap_s`` (tool execution, human think time), then is sent. A multi-step chain is call ``k``
depending on call ``k-1``; a fan-out is several chains depending on one call; a join is one call depending on
the last call of each chain.

Prefix identity: the cacheable prefix of a call is the *prompt of another call* in the same task
(``prefix_parent``, usually the previous step: the context only grew), or the task root (``-1``):
the
workload's shared system prompt when there is one (``TaskTemplate.shared_prefix_tokens > 0``), else nothing.
Replayed traces may instead name the prompt by block hashes (``hash_ids``, one per ``block_tokens`` tokens, as
Mooncake traces do: equal leading ids mean a shared prefix); the engine then caches and matches blocks.
The engine turns these links into a prefix tree per replica (:mod:`agentsim.serving.kvcache`).
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = -1
"""``prefix_parent`` value meaning "the task root" (shared system prompt, or no prefix)."""


@dataclass(slots=True)
class CallTemplate:
    """One LLM call of a task, before it runs."""

    prompt_tokens: int
    output_tokens: int
    deps: tuple[int, ...] = ()
    gap_s: float = 0.0
    prefix_parent: int = ROOT
    hash_ids: tuple[int, ...] | None = None  # block hashes of the prompt (replayed traces); see TaskTemplate
    gap_is_tool: bool = False  # the gap is a tool call (runs on the cluster's tool pool, if any), not think time


@dataclass(slots=True, frozen=True)
class TaskTemplate:
    """One agent task: its calls in topological order (every dep index is smaller than the call's)."""

    workload: str
    calls: tuple[CallTemplate, ...]
    shared_prefix_tokens: int = 0
    block_tokens: int = 0  # tokens per hash block when calls carry ``hash_ids`` (Mooncake: 512)

    def validate(self) -> None:
        """Raise ValueError if the DAG or the prefix links are malformed."""
        if not self.calls:
            raise ValueError("a task needs at least one call")
        for i, c in enumerate(self.calls):
            if c.prompt_tokens < 1 or c.output_tokens < 1:
                raise ValueError(f"call {i}: prompt and output tokens must be >= 1")
            if c.gap_s < 0:
                raise ValueError(f"call {i}: gap_s must be >= 0")
            for d in c.deps:
                if not 0 <= d < i:
                    raise ValueError(f"call {i}: dependency {d} is not an earlier call")
            if c.prefix_parent != ROOT:
                if not 0 <= c.prefix_parent < i:
                    raise ValueError(f"call {i}: prefix_parent {c.prefix_parent} is not an earlier call")
                if self.calls[c.prefix_parent].prompt_tokens > c.prompt_tokens:
                    raise ValueError(f"call {i}: its prefix is longer than its prompt")
            elif self.shared_prefix_tokens > c.prompt_tokens:
                raise ValueError(f"call {i}: the shared prefix is longer than its prompt")
            if c.hash_ids is not None:
                if self.block_tokens < 1:
                    raise ValueError(f"call {i}: hash_ids need the task's block_tokens")
                if len(c.hash_ids) != -(-c.prompt_tokens // self.block_tokens):
                    raise ValueError(
                        f"call {i}: {len(c.hash_ids)} hash ids for {c.prompt_tokens} prompt tokens in blocks of "
                        f"{self.block_tokens} (expected ceil(prompt / block))"
                    )
